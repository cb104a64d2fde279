"""The multi-stage schedule: consecutive stages of growing max response length in one run,
each moving on after its step count or, with ``advance: truncation``, as soon as its rollouts
stop hitting the length limit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from or1.core.config import StagesConfig
from or1.core.errors import ConfigError
from or1.core.hookspecs import hookimpl
from or1.core.interfaces import StageScheduler
from or1.core.types import TRUNCATION_MODES, Stage


@dataclass
class StageSpec:
    name: str = "stage"
    """The stage's name in logs and plots."""
    steps: int = 100
    """RL steps of this stage (with ``stages.advance=truncation``: at most, but for the last
    stage, which also takes the steps earlier stages left)."""
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
    advance: str = "steps"
    """When a stage gives way to the next: ``steps``, after its ``steps``; ``truncation``, once
    the step's truncated fraction (``response/truncated_frac``) has stayed below
    ``advance_threshold`` for ``advance_patience`` steps in a row, or after its ``steps``,
    whichever comes first."""
    advance_threshold: float = 0.05
    """``advance: truncation``: a step counts towards moving on when fewer than this fraction
    of its samples hit the stage's max response length."""
    advance_patience: int = 3
    """``advance: truncation``: consecutive steps below ``advance_threshold`` that end a
    stage (the next starts at the following step)."""


ADVANCE_MODES = ("steps", "truncation")
TRUNCATED_FRAC = "response/truncated_frac"
"""The step metric ``advance: truncation`` follows: the share of the step's samples (every
engine's, every refill round's) that stopped at the max response length, reduced over the
ranks, so every rank takes the same decision."""


class Schedule(StageScheduler):
    """With ``advance: steps``, stage ``i`` covers steps ``[sum(steps[:i]), sum(steps[:i+1]))``.
    With ``advance: truncation``, a stage that is not the last ends after the step that makes
    ``advance_patience`` consecutive steps of it with a truncated fraction below
    ``advance_threshold``, and at the latest after its ``steps``; the steps it leaves go to
    the last stage (the run's length, ``total_steps``, stays the sum of the ``steps``). For a
    step not taken yet ``stage_at`` answers as if no stage ended early from now on. In
    both modes the last stage also covers any step past the end (when
    ``trainer.total_steps`` is larger). State (``advance: truncation``): the start step of
    every stage begun so far and the count of consecutive steps below the threshold."""

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
        if cfg.advance not in ADVANCE_MODES:
            raise ConfigError(
                f"stages.advance={cfg.advance} is not one of {', '.join(ADVANCE_MODES)}"
            )
        if not 0.0 <= cfg.advance_threshold <= 1.0:
            raise ConfigError(
                f"stages.advance_threshold={cfg.advance_threshold} must lie in [0, 1] (a "
                "fraction of the step's samples)"
            )
        if cfg.advance_patience < 1:
            raise ConfigError(f"stages.advance_patience={cfg.advance_patience} must be >= 1")

    def __init__(self, cfg: Any, ctx: Any = None) -> None:
        self.check_config(cfg)
        self.specs = list(cfg.stages)
        self.advance = str(cfg.advance)
        self.threshold = float(cfg.advance_threshold)
        self.patience = int(cfg.advance_patience)
        self.starts = [0]  # the start step of every stage begun so far
        self.below = 0  # consecutive steps of the current stage below the threshold

    def _planned_starts(self) -> list[int]:
        """Every stage's start step: those begun as they began, the rest after the full
        ``steps`` of the stage before."""
        starts = list(self.starts)
        while len(starts) < len(self.specs):
            starts.append(starts[-1] + self.specs[len(starts) - 1].steps)
        return starts

    def stage_at(self, step: int) -> Stage:
        starts = self._planned_starts()
        i = max(j for j, start in enumerate(starts) if start <= step or j == 0)
        s = self.specs[i]
        return Stage(
            index=i,
            name=s.name,
            start_step=starts[i],
            steps=s.steps,
            max_response_length=s.max_response_length,
            micro_batch_tokens=s.micro_batch_tokens,
            truncation=s.truncation,
            reset_optimizer=s.reset_optimizer,
            reset_entropy=s.reset_entropy,
            reset_data=s.reset_data,
        )

    def observe(self, step: int, metrics: Mapping[str, float]) -> None:
        if self.advance != "truncation":
            return
        stage = self.stage_at(step)
        if stage.index < len(self.starts) - 1:
            return  # a step of a stage already left (never sent by the trainer)
        if stage.index >= len(self.starts):  # reached: the stage before used all its steps
            self.starts = self._planned_starts()[: stage.index + 1]
            self.below = 0
        if stage.index == len(self.specs) - 1:
            return  # the last stage runs to the end of the run
        if TRUNCATED_FRAC not in metrics:
            raise KeyError(f"stages.advance=truncation needs the step metric {TRUNCATED_FRAC}")
        self.below = self.below + 1 if metrics[TRUNCATED_FRAC] < self.threshold else 0
        if self.below >= self.patience:
            self.starts.append(step + 1)
            self.below = 0

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.specs)

    def state_dict(self) -> dict[str, Any]:
        if self.advance != "truncation":
            return {}  # a fixed schedule: nothing to keep
        return {"starts": list(self.starts), "below": self.below}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.advance == "truncation" and state:
            self.starts = [int(s) for s in state["starts"]]
            self.below = int(state["below"])


@hookimpl
def or1_register(register: Any) -> None:
    register("stages", "schedule", Schedule, ScheduleConfig)
