"""``filter=reward_band``: keep the groups whose mean reward lies in a band."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from or1.core.config import FilterConfig
from or1.core.interfaces import OnlineFilter
from or1.core.types import Group


@dataclass
class RewardBandConfig(FilterConfig):
    """Keep a group when ``min_mean <= mean(rewards) <= max_mean`` (the defaults keep all)."""

    name: str = "reward_band"
    min_mean: float = 0.0
    max_mean: float = 1.0


class RewardBandFilter(OnlineFilter):
    """The online counterpart of offline pass-rate filtering: drops the groups that are too
    easy (mean reward above ``max_mean``) or too hard (below ``min_mean``) for the current
    policy. Whole groups only; with ``refill`` the trainer samples more prompts."""

    def __init__(self, cfg: Any, ctx: Any = None) -> None:
        self.min_mean = float(cfg.min_mean)
        self.max_mean = float(cfg.max_mean)
        self.refill = bool(cfg.refill)
        if self.min_mean > self.max_mean:
            from or1.core.errors import ConfigError

            raise ConfigError(
                f"filter.min_mean={self.min_mean} is above filter.max_mean={self.max_mean}"
            )

    def keep(self, groups: Sequence[Group]) -> list[bool]:
        means = [sum(g.rewards) / len(g.rewards) for g in groups]
        return [self.min_mean <= m <= self.max_mean for m in means]
