"""The proportional-integral entropy controller (``entropy=pi``): a hand-computed sequence
of coefficients, the anti-windup at both bounds, and its state across a checkpoint."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from or1.core.errors import ConfigError
from or1_plugins.entropy.controllers import PIEntropy, PIEntropyConfig

# target 0.1, kp 2, ki 1, coefficient in [0, 0.28]; err = 0.1 - e, held = 2 err + I_{k-1}
ENTROPIES = [0.05] * 6 + [0.15, 0.2, 0.1]
# k  e     err    held (saturated?)        I_k    c_k = clip(2 err + I_k)
# 1  0.05  0.05   0.10                     0.05   0.15
# 2  0.05  0.05   0.15                     0.10   0.20
# 3  0.05  0.05   0.20                     0.15   0.25
# 4  0.05  0.05   0.25                     0.20   0.30 -> 0.28 (clipped)
# 5  0.05  0.05   0.30 >= 0.28, err > 0    0.20   0.28 (the integral holds)
# 6  0.05  0.05   0.30 (the same)          0.20   0.28
# 7  0.15  -0.05  0.10                     0.15   0.05 (off the cap at once)
# 8  0.20  -0.10  -0.05 <= 0, err < 0      0.15   -0.05 -> 0 (inactive; the integral holds)
# 9  0.10  0.00   0.15                     0.15   0.15 (at the target: the integral's share)
COEFS = [0.15, 0.20, 0.25, 0.28, 0.28, 0.28, 0.05, 0.0, 0.15]
INTEGRALS = [0.05, 0.10, 0.15, 0.20, 0.20, 0.20, 0.15, 0.15, 0.15]


def controller(**kw) -> PIEntropy:
    base = {"target": 0.1, "kp": 2.0, "ki": 1.0, "coef_min": 0.0, "coef_max": 0.28} | kw
    return PIEntropy(OmegaConf.structured(PIEntropyConfig(**base)))


def run(ctl: PIEntropy, entropies: list[float]) -> list[tuple[float, bool, float]]:
    seen = []
    for e in entropies:
        coef, active = ctl.coefficient(e)
        assert ctl.coefficient(e) == (coef, active)  # pure
        ctl.update(e)
        assert ctl.coef == coef  # the step's coefficient is the one kept
        seen.append((coef, active, ctl.integral))
    return seen


def test_coefficients_by_hand_with_anti_windup():
    seen = run(controller(), ENTROPIES)
    assert [c for c, _, _ in seen] == pytest.approx(COEFS, abs=1e-12)
    assert [i for _, _, i in seen] == pytest.approx(INTEGRALS, abs=1e-12)
    assert [a for _, a, _ in seen] == [True] * 7 + [False, True]


def test_without_saturation_the_integral_is_the_sum_of_the_errors():
    # bounds out of reach: c_k = kp * err_k + ki * sum(err_1..k)
    ctl = controller(kp=1.0, ki=0.5, coef_min=-10.0, coef_max=10.0)
    errors = [0.1 - e for e in ENTROPIES]
    seen = run(ctl, ENTROPIES)
    for k, (coef, _, integral) in enumerate(seen):
        assert integral == pytest.approx(sum(errors[: k + 1]), abs=1e-12)
        assert coef == pytest.approx(errors[k] + 0.5 * sum(errors[: k + 1]), abs=1e-12)


def test_state_round_trip_continues_the_sequence_and_reset_starts_over():
    first = controller()
    run(first, ENTROPIES[:5])
    state = first.state_dict()
    assert state == pytest.approx({"integral": 0.2, "coef": 0.28})
    resumed = controller()
    resumed.load_state_dict(state)
    assert [c for c, _, _ in run(resumed, ENTROPIES[5:])] == pytest.approx(COEFS[5:], abs=1e-12)
    resumed.reset()
    assert resumed.state_dict() == {"integral": 0.0, "coef": 0.0}
    assert [c for c, _, _ in run(resumed, ENTROPIES[:3])] == pytest.approx(COEFS[:3], abs=1e-12)


@pytest.mark.parametrize(
    "kw, needle",
    [
        ({"kp": -1.0}, "entropy.kp=-1.0"),
        ({"ki": -0.1}, "entropy.ki=-0.1"),
        ({"coef_min": 0.5, "coef_max": 0.1}, "entropy.coef_min=0.5"),
        ({"estimator": "other"}, "entropy.estimator=other"),
    ],
)
def test_bad_settings_are_config_errors(kw, needle):
    with pytest.raises(ConfigError, match=needle):
        controller(**kw)


def test_the_pi_config_group_composes():
    from tests.test_presets import compose_with

    cfg = compose_with(["entropy=pi"])
    assert cfg.entropy.name == "pi" and cfg.entropy.target == 0.08
    assert (cfg.entropy.kp, cfg.entropy.ki, cfg.entropy.coef_max) == (2.0, 0.5, 1.0)
