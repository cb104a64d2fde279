"""An example third-party or1 plugin: one module, two hook points.

or1 finds this module through the ``or1`` entry point in this package's ``pyproject.toml`` and
calls its registration hooks once per process; each hook only *describes* components (a name, a
factory and a config schema), nothing is built here.
"""

from __future__ import annotations

from or1.core.hookspecs import Register, hookimpl

from .filter import RewardBandConfig, RewardBandFilter
from .verifier import CloseNumberConfig, CloseNumberVerifier

__all__ = ["CloseNumberConfig", "CloseNumberVerifier", "RewardBandConfig", "RewardBandFilter"]


@hookimpl
def or1_register(register: Register) -> None:
    register("verifier", "close_number", CloseNumberVerifier, CloseNumberConfig)
    register("filter", "reward_band", RewardBandFilter, RewardBandConfig)
