"""Entropy controllers: the OR1 adaptive controller, a proportional-integral one, a constant
coefficient, and none."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from or1.core.config import EntropyConfig
from or1.core.errors import ConfigError
from or1.core.hookspecs import hookimpl
from or1.core.interfaces import EntropyController

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
class PIEntropyConfig(EntropyConfig):
    """The proportional-integral controller; the defaults suit the tiny CPU tasks (per-token
    entropies of a few hundredths of a nat, coefficients up to 1), not the 7B recipe's scale."""

    name: str = "pi"
    target: float = 0.08
    """Target entropy (nats per token); the error of a step is ``target - entropy``."""
    kp: float = 2.0
    """Proportional gain: coefficient per nat of this step's error."""
    ki: float = 0.5
    """Integral gain: coefficient per nat of the summed errors of every step so far."""
    coef_min: float = 0.0
    """Lower bound of the coefficient."""
    coef_max: float = 1.0
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


class PIEntropy(EntropyController):
    """A proportional-integral controller on the entropy error, with anti-windup. At step
    ``k``, with measured entropy ``e_k`` and error ``err_k = target - e_k``:
    ``c_k = clip(kp * err_k + ki * I_k, coef_min, coef_max)``, where ``I_k`` is the sum of the
    errors of steps ``1..k`` except those of steps that came while the controller was
    saturated: when ``kp * err_k + ki * I_{k-1}`` already lies at or beyond a bound and
    ``err_k`` pushes further that way, ``I_k = I_{k-1}`` (the integral stops growing while
    clipped, so it does not wind up and the coefficient leaves the bound as soon as the error
    changes sign). The bonus is active whenever ``c_k != 0``: unlike the adaptive rule, the
    integral holds a steady coefficient also while the entropy sits at or above the target.
    State: the integral and the last coefficient."""

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        _check_estimator(cfg)
        for key in ("target", "kp", "ki"):
            if getattr(cfg, key) < 0:
                raise ConfigError(f"entropy.{key}={getattr(cfg, key)} must be >= 0")
        if cfg.coef_min > cfg.coef_max:
            raise ConfigError(f"entropy.coef_min={cfg.coef_min} must be <= coef_max={cfg.coef_max}")

    def __init__(self, cfg: Any, ctx: Any = None) -> None:
        self.check_config(cfg)
        self.estimator = str(cfg.estimator)
        self.cfg = cfg
        self.integral, self.coef = 0.0, 0.0

    def _step(self, entropy: float) -> tuple[float, float]:
        """``(I_k, c_k)`` for measured entropy ``entropy``, from the current integral."""
        cfg = self.cfg
        err = cfg.target - entropy
        held = cfg.kp * err + cfg.ki * self.integral  # the output if the integral stood still
        saturated = (held >= cfg.coef_max and err > 0) or (held <= cfg.coef_min and err < 0)
        integral = self.integral if saturated else self.integral + err
        coef = min(max(cfg.kp * err + cfg.ki * integral, cfg.coef_min), cfg.coef_max)
        return integral, coef

    def coefficient(self, entropy: float) -> tuple[float, bool]:
        _, coef = self._step(entropy)
        return coef, coef != 0.0

    def update(self, entropy: float) -> None:
        self.integral, self.coef = self._step(entropy)

    def reset(self) -> None:
        self.integral, self.coef = 0.0, 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"integral": self.integral, "coef": self.coef}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.integral, self.coef = float(state["integral"]), float(state["coef"])


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
def or1_register(register: Any) -> None:
    register("entropy", "adaptive", AdaptiveEntropy, AdaptiveEntropyConfig)
    register("entropy", "pi", PIEntropy, PIEntropyConfig)
    register("entropy", "constant", ConstantEntropy, ConstantEntropyConfig)
    register("entropy", "none", NoEntropy, NoEntropyConfig)
