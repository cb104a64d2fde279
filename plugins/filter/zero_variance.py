"""Online filters: keep every group, or drop groups whose rewards do not vary."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from or1.core.config import FilterConfig
from or1.core.hookspecs import hookimpl
from or1.core.interfaces import OnlineFilter
from or1.core.types import Group


@dataclass
class ZeroVarianceConfig(FilterConfig):
    name: str = "zero_variance"
    tolerance: float = 1e-6
    """A group is dropped when ``max(r) - min(r) <= tolerance`` (all its rewards equal)."""


@dataclass
class NoFilterConfig(FilterConfig):
    name: str = "none"


class ZeroVarianceFilter(OnlineFilter):
    """Drops a group when ``max(r) - min(r) <= tolerance`` (all correct or all wrong): its
    GRPO advantages are all zero and it would only dilute the token mean."""

    def __init__(self, cfg: Any, ctx: Any = None) -> None:
        self.tolerance = float(cfg.tolerance)
        self.refill = bool(cfg.refill)

    def keep(self, groups: Sequence[Group]) -> list[bool]:
        return [max(g.rewards) - min(g.rewards) > self.tolerance for g in groups]


class NoFilter(OnlineFilter):
    def __init__(self, cfg: Any, ctx: Any = None) -> None:
        self.refill = False

    def keep(self, groups: Sequence[Group]) -> list[bool]:
        return [True] * len(groups)


@hookimpl
def or1_register(register: Any) -> None:
    register("filter", "zero_variance", ZeroVarianceFilter, ZeroVarianceConfig)
    register("filter", "none", NoFilter, NoFilterConfig)
