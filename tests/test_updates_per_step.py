"""Several optimiser steps per rollout batch (``trainer.updates_per_step``): the split into
mini-batches of whole groups (in one process and across two), the step's metrics from its
updates, and the updates themselves against the sampling policy's log-probs, each normalised
by its own mini-batch, with the reference learner (numbers by hand) and the Megatron learner
at data-parallel size 2 (equal to the reference)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from or1.core.errors import ConfigError
from or1.core.interfaces import BuildContext
from or1.rl.learner_step import EntropyCoefficient
from or1.rl.mini_batches import combine_updates, sequential_updates, split_groups
from or1_plugins.entropy.controllers import ConstantEntropy, ConstantEntropyConfig
from or1_plugins.learner.torch.learner import TorchLearner, TorchLearnerConfig
from or1_plugins.loss.or1 import OR1Loss, OR1LossConfig
from tests.megatron_jobs import UPDATE_BATCHES, launch
from tests.megatron_jobs import make_batch as megatron_batch
from tests.test_learner import make_batch


def constant_coef(coef: float, mask: torch.Tensor) -> EntropyCoefficient:
    controller = ConstantEntropy(OmegaConf.structured(ConstantEntropyConfig(coef=coef)))
    return EntropyCoefficient(controller, mask)


def torch_learner(model: Path, lr: float) -> TorchLearner:
    cfg = OmegaConf.structured(TorchLearnerConfig(lr=lr))
    return TorchLearner(cfg, BuildContext(model, model, model, 0, None))


def test_groups_split_into_consecutive_runs_of_whole_groups():
    groups = ["g0", "g1", "g2", "g3", "g4"]  # the split looks at the count and order only
    assert split_groups(groups, 1) == [groups]
    assert split_groups(groups, 2) == [["g0", "g1", "g2"], ["g3", "g4"]]
    assert split_groups(groups, 3) == [["g0", "g1"], ["g2", "g3"], ["g4"]]
    assert split_groups(groups, 5) == [[g] for g in groups]
    assert split_groups(groups, 8) == [[g] for g in groups]  # never an empty update
    with pytest.raises(ConfigError, match="trainer.updates_per_step=0"):
        split_groups(groups, 0)


def test_two_ranks_split_the_step_in_the_global_order(tmp_path):
    # rank 0 kept 3 groups, rank 1 kept 2: globally r0g0 r0g1 r0g2 r1g0 r1g1
    out = launch("split_groups", 2, tmp_path, groups_per_rank=[3, 2], updates=2)
    assert out["parts"] == [  # mini-batches: the first three groups, the last two
        [["r0g0", "r0g1", "r0g2"], []],
        [[], ["r1g0", "r1g1"]],
    ]
    out = launch("split_groups", 2, tmp_path, groups_per_rank=[3, 2], updates=3)
    assert out["parts"] == [  # sizes 2, 2, 1: mini-batch 1 spans both ranks
        [["r0g0", "r0g1"], ["r0g2"], []],
        [[], ["r1g0"], ["r1g1"]],
    ]


def test_step_metrics_are_token_weighted_means_of_the_updates():
    first = {
        "loss/pg": 0.5,
        "loss/clipfrac": 0.0,
        "grad_norm": 2.0,
        "train/nonfinite": 0.0,
        "learner/micro_batches": 1.0,
        "learner/lr": 1e-3,
        "learner/fused_old_logprobs": 1.0,
        "mismatch/ratio_max": 1.5,
        "mismatch/kl": 0.02,
    }
    second = {
        "loss/pg": -0.25,
        "loss/clipfrac": 0.4,
        "grad_norm": 5.0,
        "train/nonfinite": 1.0,
        "learner/micro_batches": 2.0,
        "learner/lr": 2e-3,
        "learner/fused_old_logprobs": 0.0,
        "mismatch/ratio_max": 1.25,
    }  # no mismatch/kl: a mini-batch without sampling log-probs
    out = combine_updates([first, second], [30.0, 10.0])  # 3/4 and 1/4 of the tokens
    assert out["loss/pg"] == pytest.approx(0.75 * 0.5 + 0.25 * -0.25)  # 0.3125
    assert out["loss/clipfrac"] == pytest.approx(0.1)
    assert out["grad_norm"] == pytest.approx(0.75 * 2.0 + 0.25 * 5.0)  # 2.75
    assert out["mismatch/kl"] == pytest.approx(0.02)  # over the update that has it
    assert out["train/nonfinite"] == 1.0 and out["mismatch/ratio_max"] == 1.5  # maxima
    assert out["learner/micro_batches"] == 3.0 and out["learner/lr"] == 2e-3
    assert out["learner/fused_old_logprobs"] == 0.0 and out["train/updates"] == 2.0


def test_updates_use_the_sampling_policy_and_their_own_token_mean(tiny_model):
    """Two mini-batches, lr large enough that update 1 moves the policy: update 1's PPO ratio
    is 1 (loss = minus the token-mean advantage of mini-batch 1); update 2's ratios are
    against the log-probs taken before update 1, its loss and clip fraction as computed here
    by hand from the policy after update 1, over mini-batch 2's own tokens."""
    batches = [make_batch([5, 9, 7], seed=1), make_batch([6, 11, 4], seed=2)]
    learner = torch_learner(tiny_model, lr=0.05)
    loss = OR1Loss(OmegaConf.structured(OR1LossConfig()))  # clip 0.2 on both sides
    coef = constant_coef(0.01, batches[0].response_mask)
    metrics = sequential_updates(learner, loss, coef, batches)

    ref = torch_learner(tiny_model, lr=0.05)  # the same start, the same updates by hand
    copies = [make_batch([5, 9, 7], seed=1), make_batch([6, 11, 4], seed=2)]
    (old1, h1), (old2, h2) = (ref.compute_logprobs(b) for b in copies)
    assert torch.equal(batches[1].old_logprobs, old2)  # taken before any update
    m1, m2 = copies[0].response_mask, copies[1].response_mask
    entropy = ((h1 * m1).sum() + (h2 * m2).sum()) / (m1.sum() + m2.sum())
    assert coef.e_k == pytest.approx(float(entropy), rel=1e-6)

    pg1 = -float((copies[0].advantages * m1).sum() / m1.sum())
    assert metrics["update/1/loss/pg"] == pytest.approx(pg1, rel=1e-5, abs=1e-7)
    assert metrics["update/1/loss/approx_kl"] == pytest.approx(0.0, abs=1e-7)

    copies[0].old_logprobs = old1
    ref.train_step(copies[0], loss, 0.01)
    mid, _ = ref.compute_logprobs(copies[1])  # the policy update 2 starts from
    ratio = torch.exp(mid - old2)
    adv = copies[1].advantages
    plain, clipped = -adv * ratio, -adv * ratio.clamp(0.8, 1.2)
    pg2 = float((torch.maximum(plain, clipped) * m2).sum() / m2.sum())
    clipfrac = float(((clipped > plain).float() * m2).sum() / m2.sum())
    assert clipfrac > 0  # off-policy: the clip matters
    assert metrics["update/2/loss/pg"] == pytest.approx(pg2, rel=1e-4, abs=1e-6)
    assert metrics["update/2/loss/clipfrac"] == pytest.approx(clipfrac, abs=1e-6)
    assert metrics["update/2/loss/approx_kl"] > 1e-4

    t1, t2 = float(m1.sum()), float(m2.sum())
    step_pg = (t1 * metrics["update/1/loss/pg"] + t2 * metrics["update/2/loss/pg"]) / (t1 + t2)
    assert metrics["loss/pg"] == pytest.approx(step_pg, rel=1e-6)
    assert metrics["train/updates"] == 2.0 and metrics["learner/micro_batches"] == 2.0


@pytest.mark.slow  # several or1 processes: make test-slow
def test_megatron_data_parallel_updates_equal_the_reference_learner(tiny_model, tmp_path):
    """TP=1 x DP=2 (two processes, gloo), each rank training its share of both mini-batches:
    the same per-update losses, step metrics and resulting log-probs as the reference
    learner on the whole mini-batches in one process (the mini-batch normaliser is summed
    over the data-parallel ranks)."""
    got = launch("updates", 2, tmp_path, model_path=str(tiny_model), tp=1)
    ref = torch_learner(tiny_model, lr=1e-3)
    vocab = ref.model.config.vocab_size
    batches = [megatron_batch(lengths, vocab, seed=seed) for lengths, seed in UPDATE_BATCHES]
    loss = OR1Loss(OmegaConf.structured(OR1LossConfig()))
    coef = constant_coef(0.01, batches[0].response_mask)
    expect = sequential_updates(ref, loss, coef, batches)
    assert got["e_k"] == pytest.approx(coef.e_k, rel=1e-4)
    for key in (
        "update/1/loss/pg",
        "update/2/loss/pg",
        "update/2/loss/approx_kl",
        "update/1/loss/entropy",
        "loss/pg",
        "loss/entropy",
        "grad_norm",
    ):
        assert got["metrics"][key] == pytest.approx(expect[key], rel=1e-4, abs=1e-6), key
    assert got["metrics"]["train/updates"] == 2.0
    for batch, logp in zip(batches, got["logp_after"], strict=True):
        assert float((ref.compute_logprobs(batch)[0] - logp).abs().max()) <= 1e-4
