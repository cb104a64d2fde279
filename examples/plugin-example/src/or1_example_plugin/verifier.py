"""``verifier=close_number``: partial credit for numeric answers."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from or1.core.config import VerifierConfig
from or1.core.interfaces import RewardVerifier
from or1.core.types import Score

NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


@dataclass
class CloseNumberConfig(VerifierConfig):
    """``rel_tolerance``: an answer off by ``rel_tolerance * max(|truth|, 1)`` or more earns 0;
    ``after_think``: read only the text after the last ``</think>`` when there is one."""

    name: str = "close_number"
    rel_tolerance: float = 0.1
    after_think: bool = True


def truth_value(ground_truth: Any) -> float | None:
    """The number in a row's ``reward_model.ground_truth``: a number, a numeric string, a JSON
    list of those or a list (its first element). None when there is no number."""
    if isinstance(ground_truth, str) and ground_truth.strip().startswith("["):
        try:
            ground_truth = json.loads(ground_truth)
        except ValueError:
            return None
    if isinstance(ground_truth, list | tuple):
        ground_truth = ground_truth[0] if ground_truth else None
    if isinstance(ground_truth, bool) or ground_truth is None:
        return None
    try:
        return float(ground_truth)
    except (TypeError, ValueError):
        return None


class CloseNumberVerifier(RewardVerifier):
    """A dense reward for numeric tasks: the last number ``p`` in the response earns
    ``max(0, 1 - |p - g| / (rel_tolerance * max(|g|, 1)))`` against the ground truth ``g``
    (1 exactly when ``p == g``). Statuses: ``correct`` (``p == g``), ``wrong`` (any other
    number, partial credit included), ``no_answer`` (no number), ``error`` (the row's ground
    truth is not a number)."""

    def __init__(self, cfg: Any, ctx: Any = None) -> None:
        self.rel_tolerance = float(cfg.rel_tolerance)
        self.after_think = bool(cfg.after_think)
        if self.rel_tolerance <= 0:
            from or1.core.errors import ConfigError

            raise ConfigError(f"verifier.rel_tolerance={self.rel_tolerance} must be > 0")

    def score(self, response: str, row: dict[str, Any]) -> Score:
        truth = truth_value((row.get("reward_model") or {}).get("ground_truth"))
        if truth is None:
            return Score(0.0, "error", "ground truth is not a number")
        text = response.rsplit("</think>", 1)[-1] if self.after_think else response
        numbers = NUMBER.findall(text)
        if not numbers:
            return Score(0.0, "no_answer", "no number in the response")
        answer = float(numbers[-1])
        if answer == truth:
            return Score(1.0, "correct")
        scale = self.rel_tolerance * max(abs(truth), 1.0)
        return Score(
            max(0.0, 1.0 - abs(answer - truth) / scale), "wrong", f"{answer:g} vs {truth:g}"
        )
