"""The multi-stage schedule: consecutive stages of growing max response length in one run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from or1.config import StagesConfig
from or1.errors import ConfigError
from or1.hookspecs import hookimpl
from or1.interfaces import StageScheduler
from or1.types import TRUNCATION_MODES, Stage


@dataclass
class StageSpec:
    name: str = "stage"
    """The stage's name in logs and plots."""
    steps: int = 100
    """RL steps of this stage."""
    max_response_length: int = 64
    """Response token budget of the stage's rollouts (the context-length stage)."""
    micro_batch_tokens: int = 0  # 0: the whole batch in one micro-batch
    truncation: str = "none"  # none | mask_after | mask_before
    reset_optimizer: bool = False
    """True: forget the optimiser's moments when this stage starts."""
    reset_entropy: bool = False
    """True: restart the entropy controller when this stage starts."""
    reset_data: bool = False
    """True: restart the data order (a new epoch) when this stage starts."""


@dataclass
class ScheduleConfig(StagesConfig):
    name: str = "schedule"
    stages: list[StageSpec] = field(default_factory=lambda: [StageSpec()])
    """The stages in order; see the items below."""


class Schedule(StageScheduler):
    """Stage ``i`` covers steps ``[sum(steps[:i]), sum(steps[:i+1]))``; the last stage also
    covers any step past the end (when ``trainer.total_steps`` is larger)."""

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        specs = list(cfg.stages)
        if not specs:
            raise ConfigError("stages.stages is empty: give at least one stage")
        for i, s in enumerate(specs):
            where = f"stages.stages[{i}]"
            if s.steps < 1:
                raise ConfigError(f"{where}.steps={s.steps} must be >= 1")
            if s.max_response_length < 1:
                raise ConfigError(
                    f"{where}.max_response_length={s.max_response_length} must be >= 1"
                )
            if s.micro_batch_tokens < 0:
                raise ConfigError(
                    f"{where}.micro_batch_tokens={s.micro_batch_tokens} must be >= 0 (0: one "
                    "micro-batch)"
                )
            if s.truncation not in TRUNCATION_MODES:
                raise ConfigError(
                    f"{where}.truncation={s.truncation} is not one of {', '.join(TRUNCATION_MODES)}"
                )
            if i and s.max_response_length <= specs[i - 1].max_response_length:
                raise ConfigError(
                    f"{where}.max_response_length={s.max_response_length} must be larger than the "
                    f"previous stage's {specs[i - 1].max_response_length}"
                )

    def __init__(self, cfg: Any, ctx: Any = None) -> None:
        self.check_config(cfg)
        specs = list(cfg.stages)
        self.stages: list[Stage] = []
        start = 0
        for i, s in enumerate(specs):
            self.stages.append(
                Stage(
                    index=i,
                    name=s.name,
                    start_step=start,
                    steps=s.steps,
                    max_response_length=s.max_response_length,
                    micro_batch_tokens=s.micro_batch_tokens,
                    truncation=s.truncation,
                    reset_optimizer=s.reset_optimizer,
                    reset_entropy=s.reset_entropy,
                    reset_data=s.reset_data,
                )
            )
            start += s.steps

    def stage_at(self, step: int) -> Stage:
        for stage in self.stages:
            if step < stage.start_step + stage.steps:
                return stage
        return self.stages[-1]

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)


@hookimpl
def or1_register_stage_schedulers(register: Any) -> None:
    register("schedule", Schedule, ScheduleConfig)
