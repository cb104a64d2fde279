"""Entropy controllers: the OR1 adaptive controller, a constant coefficient, and none."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from or1.config import EntropyConfig
from or1.errors import ConfigError
from or1.hookspecs import hookimpl
from or1.interfaces import EntropyController

ESTIMATORS = ("full_vocab", "sampled_nll")


@dataclass
class AdaptiveEntropyConfig(EntropyConfig):
    name: str = "adaptive"
    target: float = 0.2
    """Target entropy (nats per token): the bonus is active while the entropy is below it."""
    delta: float = 1e-4
    """Step of the coefficient per RL step: up while below the target, down above it."""
    coef_init: float = 0.0
    """The coefficient at the first step (and after a stage's ``reset_entropy``)."""
    coef_min: float = 0.0
    """Lower bound of the coefficient."""
    coef_max: float = 0.005
    """Upper bound of the coefficient."""


@dataclass
class ConstantEntropyConfig(EntropyConfig):
    name: str = "constant"
    coef: float = 0.0
    """The entropy bonus coefficient of every step."""


@dataclass
class NoEntropyConfig(EntropyConfig):
    name: str = "none"


def _check_estimator(cfg: Any) -> str:
    if cfg.estimator not in ESTIMATORS:
        raise ConfigError(
            f"entropy.estimator={cfg.estimator} is not one of {', '.join(ESTIMATORS)}"
        )
    return str(cfg.estimator)


class AdaptiveEntropy(EntropyController):
    """Skywork-OR1's controller. With coefficient ``c_k`` and measured entropy ``e_k``:
    the loss uses ``c_k * [e_k < target]``; then ``c_{k+1} = clip(c_k + delta)`` if
    ``e_k < target`` else ``clip(c_k - delta)``, clipped to ``[coef_min, coef_max]``."""

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        _check_estimator(cfg)
        for key in ("target", "delta"):
            if getattr(cfg, key) < 0:
                raise ConfigError(f"entropy.{key}={getattr(cfg, key)} must be >= 0")
        if not cfg.coef_min <= cfg.coef_init <= cfg.coef_max:
            raise ConfigError(
                f"entropy.coef_init={cfg.coef_init} must lie in [coef_min={cfg.coef_min}, coef_max={cfg.coef_max}]"
            )

    def __init__(self, cfg: Any, ctx: Any = None) -> None:
        self.check_config(cfg)
        self.estimator = str(cfg.estimator)
        self.cfg = cfg
        self.coef = float(cfg.coef_init)

    def coefficient(self, entropy: float) -> tuple[float, bool]:
        return self.coef, entropy < self.cfg.target

    def update(self, entropy: float) -> None:
        step = self.cfg.delta if entropy < self.cfg.target else -self.cfg.delta
        self.coef = min(max(self.coef + step, self.cfg.coef_min), self.cfg.coef_max)

    def reset(self) -> None:
        self.coef = float(self.cfg.coef_init)

    def state_dict(self) -> dict[str, Any]:
        return {"coef": self.coef}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.coef = float(state["coef"])


class ConstantEntropy(EntropyController):
    """A fixed coefficient, always active."""

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        _check_estimator(cfg)

    def __init__(self, cfg: Any, ctx: Any = None) -> None:
        self.estimator = _check_estimator(cfg)
        self.coef = float(cfg.coef)

    def coefficient(self, entropy: float) -> tuple[float, bool]:
        return self.coef, self.coef != 0.0

    def update(self, entropy: float) -> None:
        return None


class NoEntropy(ConstantEntropy):
    """No entropy term (entropy is still measured and logged)."""

    def __init__(self, cfg: Any, ctx: Any = None) -> None:
        self.estimator = _check_estimator(cfg)
        self.coef = 0.0


@hookimpl
def or1_register_entropy_controllers(register: Any) -> None:
    register("adaptive", AdaptiveEntropy, AdaptiveEntropyConfig)
    register("constant", ConstantEntropy, ConstantEntropyConfig)
    register("none", NoEntropy, NoEntropyConfig)
