"""The learning-rate schedule (or1/rl/lr_schedule.py): rates worked out by hand, the
reference learner stepping at them, a skipped step not advancing, and a resumed learner
continuing the curve where the saved one stopped."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from omegaconf import OmegaConf

from or1.core.errors import ConfigError
from or1.rl.lr_schedule import LrSchedule, check_lr_schedule
from or1_plugins.loss.or1 import OR1Loss, OR1LossConfig
from tests.test_learner import make_batch, make_learner


def rates(n: int, **kw) -> list[float]:
    schedule = LrSchedule(peak=1e-3, **kw)
    return [schedule.rate(i) for i in range(n)]


def test_warm_up_then_constant():
    # update n of a 4-update warm-up runs at peak x (n + 1) / 4; then the peak for good
    assert rates(7, warmup=4) == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3, 1e-3])
    assert rates(3) == [1e-3] * 3


def test_linear_decay_to_the_floor_and_stays():
    # warm-up 2, then 4 updates from 1e-3 down to 0.1 x 1e-3 = 1e-4 in steps of 2.25e-4
    expect = [5e-4, 1e-3, 1e-3, 7.75e-4, 5.5e-4, 3.25e-4, 1e-4, 1e-4, 1e-4]
    assert rates(9, kind="linear", warmup=2, decay=4, min_ratio=0.1) == pytest.approx(expect)


def test_cosine_decay():
    # no warm-up, 4 updates to 0: 1e-3 x (1 + cos(pi t)) / 2 at t = 0, 1/4, 1/2, 3/4, 1
    half = 1e-3 / 2
    expect = [1e-3, half * (1 + math.sqrt(0.5)), half, half * (1 - math.sqrt(0.5)), 0.0, 0.0]
    assert rates(6, kind="cosine", decay=4) == pytest.approx(expect, abs=1e-18)
    # with a floor of a fifth: the midpoint is halfway between 1e-3 and 2e-4
    assert LrSchedule(1e-3, "cosine", 0, 4, 0.2).rate(2) == pytest.approx(6e-4)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ({"lr_schedule": "cosin"}, "learner.lr_schedule=cosin is not one of constant, linear"),
        ({"lr": 0.0}, "learner.lr=0.0 must be > 0"),
        ({"lr_warmup_steps": -1}, "learner.lr_warmup_steps=-1 must be >= 0"),
        ({"min_lr_ratio": 1.5}, "learner.min_lr_ratio=1.5 must be in [0, 1]"),
        ({"lr_schedule": "cosine"}, "learner.lr_decay_steps=0 must be >= 1"),
    ],
)
def test_bad_schedule_keys_are_config_errors_naming_the_key(keys, message):
    cfg = OmegaConf.create({"lr": 1e-3} | keys)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_lr_schedule(cfg)


def take_steps(learner, n: int, seed: int = 0, nan: bool = False) -> list[dict[str, float]]:
    loss = OR1Loss(OmegaConf.structured(OR1LossConfig()))
    out = []
    for i in range(n):
        batch = make_batch([6, 9, 5], seed=seed + i)
        batch.old_logprobs, _ = learner.compute_logprobs(batch)
        if nan:
            batch.advantages = batch.advantages * float("nan")
        out.append(learner.train_step(batch, loss, 0.0))
    return out


def test_the_reference_learner_steps_at_the_schedule_and_resumes_on_it(tiny_model):
    """lr 1e-3, warm-up 2, linear to 0 over 4: updates at 5e-4, 1e-3, 1e-3, 7.5e-4, 5e-4,
    2.5e-4. A non-finite step in between runs at the current rate but does not count; a
    learner loaded from the state after 3 updates takes the 4th at 7.5e-4, and its weights
    after 3 more equal those of the learner that never stopped."""
    schedule = {"lr_schedule": "linear", "lr_warmup_steps": 2, "lr_decay_steps": 4}
    torch.manual_seed(0)
    learner = make_learner(tiny_model, **schedule)
    first = take_steps(learner, 3)
    skipped = take_steps(learner, 1, nan=True)[0]
    assert skipped["train/nonfinite"] == 1.0 and skipped["learner/lr"] == pytest.approx(7.5e-4)
    state = copy.deepcopy(learner.state_dict())  # as a checkpoint holds it (no shared moments)
    assert state["lr_updates"] == 3
    resumed = make_learner(tiny_model, **schedule)
    resumed.load_state_dict(state)
    rest = take_steps(learner, 3, seed=3)
    again = take_steps(resumed, 3, seed=3)
    seen = [m["learner/lr"] for m in first + rest]
    assert seen == pytest.approx([5e-4, 1e-3, 1e-3, 7.5e-4, 5e-4, 2.5e-4], rel=1e-12)
    assert [m["learner/lr"] for m in again] == pytest.approx(seen[3:], rel=1e-12)
    for (name, a), (_, b) in zip(learner.named_weights(), resumed.named_weights(), strict=True):
        assert torch.equal(a, b), name
    # a state saved before the schedule existed (no "lr_updates") starts the curve over
    old = make_learner(tiny_model, **schedule)
    old.load_state_dict({k: v for k, v in state.items() if k != "lr_updates"})
    assert take_steps(old, 1)[0]["learner/lr"] == pytest.approx(5e-4, rel=1e-12)


def test_a_stage_change_keeps_the_place_on_the_schedule(tiny_model):
    learner = make_learner(tiny_model, lr_schedule="cosine", lr_decay_steps=2)
    take_steps(learner, 1)
    learner.reset_optimizer()
    assert take_steps(learner, 1)[0]["learner/lr"] == pytest.approx(5e-4, rel=1e-12)
