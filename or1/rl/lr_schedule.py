"""The learning rate of each learner update: linear warm-up, then constant, linear or cosine
decay to ``min_lr_ratio x lr`` (the ``learner.lr_*`` keys of
:class:`or1.core.config.LearnerConfig`). Every learner counts its own optimiser steps (as
verl and Megatron do: a step skipped for a non-finite loss or gradient does not count), sets
the rate on its optimiser before the step, and keeps the count in its checkpoint so a
resumed run continues the same curve. Imports no torch."""

from __future__ import annotations

import math
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass
from typing import Any

from or1.core.errors import ConfigError

KINDS = ("constant", "linear", "cosine")
"""The accepted ``learner.lr_schedule`` values."""


def check_lr_schedule(cfg: Any) -> None:
    """The learner section's schedule keys: a known ``lr_schedule``, ``lr > 0``,
    ``lr_warmup_steps >= 0``, ``min_lr_ratio`` in [0, 1] and, for a decaying schedule,
    ``lr_decay_steps >= 1``; one ConfigError naming the key."""
    kind = cfg.get("lr_schedule", "constant")
    if kind not in KINDS:
        raise ConfigError(f"learner.lr_schedule={kind} is not one of {', '.join(KINDS)}")
    if not cfg.lr > 0:
        raise ConfigError(f"learner.lr={cfg.lr} must be > 0")
    warmup = cfg.get("lr_warmup_steps", 0)
    if warmup < 0:
        raise ConfigError(f"learner.lr_warmup_steps={warmup} must be >= 0")
    ratio = cfg.get("min_lr_ratio", 0.0)
    if not 0.0 <= ratio <= 1.0:
        raise ConfigError(f"learner.min_lr_ratio={ratio} must be in [0, 1]")
    decay = cfg.get("lr_decay_steps", 0)
    if kind != "constant" and decay < 1:
        raise ConfigError(
            f"learner.lr_decay_steps={decay} must be >= 1 with learner.lr_schedule={kind} "
            "(the updates over which the rate falls to min_lr_ratio x lr)"
        )


@dataclass(frozen=True)
class LrSchedule:
    """``rate(n)``: the learning rate of update ``n`` (0 for the first).

    Warm-up (``warmup`` updates): ``peak x (n + 1) / warmup``, so the first update already
    moves and update ``warmup - 1`` runs at the peak. After it, with ``t = min(1, (n -
    warmup) / decay)`` and ``low = min_ratio x peak``: constant ``peak``; linear ``peak -
    (peak - low) t``; cosine ``low + (peak - low)(1 + cos(pi t)) / 2``; both stay at ``low``
    once ``t`` reaches 1."""

    peak: float
    kind: str = "constant"
    warmup: int = 0
    decay: int = 0
    min_ratio: float = 0.0

    @classmethod
    def of(cls, cfg: Any) -> LrSchedule:
        """The schedule a learner config section describes (checked first)."""
        check_lr_schedule(cfg)
        return cls(
            peak=float(cfg.lr),
            kind=str(cfg.get("lr_schedule", "constant")),
            warmup=int(cfg.get("lr_warmup_steps", 0)),
            decay=int(cfg.get("lr_decay_steps", 0)),
            min_ratio=float(cfg.get("min_lr_ratio", 0.0)),
        )

    def rate(self, n: int) -> float:
        if n < self.warmup:
            return self.peak * (n + 1) / self.warmup
        if self.kind == "constant":
            return self.peak
        t = min(1.0, (n - self.warmup) / self.decay)
        low = self.min_ratio * self.peak
        if self.kind == "linear":
            return self.peak - (self.peak - low) * t
        return low + (self.peak - low) * 0.5 * (1.0 + math.cos(math.pi * t))


class LrCounter:
    """A learner's place on its :class:`LrSchedule`, used by
    :func:`or1.rl.learner_step.finish_step`: before each optimiser step :meth:`apply` sets
    the rate of step :attr:`updates` on the parameter groups; :meth:`advance` moves past a
    step that was taken. :attr:`updates` goes into the learner's checkpoint (:meth:`load`
    restores it). Resetting the optimiser (a stage change) keeps the place."""

    def __init__(self, schedule: LrSchedule) -> None:
        self.schedule, self.updates = schedule, 0

    def apply(self, param_groups: Iterable[MutableMapping[str, Any]]) -> None:
        lr = self.schedule.rate(self.updates)
        for group in param_groups:
            group["lr"] = lr

    def advance(self) -> None:
        self.updates += 1

    def load(self, updates: int) -> None:
        self.updates = int(updates)
