"""The response token budget of sampling outside a training step: one rule for every caller.

A training step samples up to its stage's ``max_response_length``. Evaluation, ``or1-filter``
and the ``difficulty`` data pass take an explicit ``max_tokens`` when one is set, else the
length of a stage of the run's schedule.
"""

from __future__ import annotations

from typing import Literal

from or1.core.interfaces import StageScheduler


def response_budget(
    max_tokens: int | None, stages: StageScheduler, stage: Literal["first", "last"]
) -> int:
    """``max_tokens`` when set (> 0), else the ``max_response_length`` of the schedule's
    ``first`` stage (what the run trains on first: ``or1-filter``, the ``difficulty`` stage)
    or its ``last`` stage (evaluation: the same budget at every validation of a run, so its
    start and end accuracy compare)."""
    if max_tokens:
        return int(max_tokens)
    step = 0 if stage == "first" else max(stages.total_steps - 1, 0)
    return int(stages.stage_at(step).max_response_length)
