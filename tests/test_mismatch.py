"""Rollout/learner mismatch: the ``mismatch/*`` metrics on hand-made numbers, the sampling
log-probs' journey into the batch, the ``tis`` and ``seq_mask`` corrections with their
losses computed independently, ``none`` bit-identical to the uncorrected loss, and real runs
(the reference learner, ``or1-train`` for two steps; the Megatron learner's, reduced over
its ranks: ``tests/test_megatron.py``).

Direction: per token ``d = old - rollout`` (the learner's pre-update log-prob minus the
engine's sampling log-prob), ratio ``r = exp(d) = pi_learner / pi_sampler`` and k3
``= r - d - 1``, whose token mean estimates KL(sampler || learner) without bias (the tokens
are the sampler's)."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from or1.core.errors import ConfigError
from or1.core.interfaces import PolicyLoss
from or1.core.types import Completion, Group, LossTotals, Prompt, TrainBatch
from or1.rl.batch import SequenceRow, rows_to_batch, sequence_rows
from or1.rl.dp_balance import _decode, _encode
from or1.rl.learner_step import MismatchSums, backward_micro_batch
from or1_plugins.loss.or1 import OR1Loss, OR1LossConfig, ppo_clip_loss, token_weights
from tests.conftest import FAST_RUN, read_jsonl, run_cli

LN15, LN2, LN3, LN4 = math.log(1.5), math.log(2), math.log(3), math.log(4)


def k3(d: float) -> float:
    return math.exp(d) - d - 1.0


def loss_of(**kw) -> OR1Loss:
    return OR1Loss(OmegaConf.structured(OR1LossConfig(**kw)))


def hand_batch() -> TrainBatch:
    """Two rows of 5 positions; response tokens at positions 2-4 of row 0 and 3-4 of row 1,
    where ``old - rollout`` is ln 1.5, ln 3, -ln 4 | 0, and a last token of row 1 that does
    not enter the loss (mask 0) with a difference of 5; the prompt positions differ too."""
    old = torch.tensor([[0.0, -0.3, -1.0, -0.5, -2.0], [0.0, -0.2, -0.7, -0.4, -0.1]])
    d = torch.tensor([[0.0, 0.0, LN15, LN3, -LN4], [0.0, 0.0, 0.0, 0.0, 5.0]])
    rollout = old - d
    rollout[:, :2] = 0.0  # the batch's sampling log-probs are 0 outside the responses
    rollout[1, 2] = 0.0
    mask = torch.tensor([[0, 0, 1, 1, 1], [0, 0, 0, 1, 0]], dtype=torch.float32)
    ids = torch.ones(2, 5, dtype=torch.long)
    batch = TrainBatch(ids, torch.ones_like(ids), mask, mask * 0.5, [5, 5])
    batch.old_logprobs, batch.rollout_logprobs = old, rollout
    return batch


def test_mismatch_metrics_of_a_hand_made_batch():
    got = MismatchSums.of(hand_batch()).metrics()
    # four tokens: d = ln 1.5, ln 3, -ln 4, 0; ratios 1.5, 3, 1/4, 1; k3 = r - d - 1:
    # 1.5 - 0.405465 - 1 = 0.094535, 3 - 1.098612 - 1 = 0.901388, 1/4 + 1.386294 - 1 = 0.636294
    assert got["mismatch/kl"] == pytest.approx((0.094535 + 0.901388 + 0.636294) / 4, abs=1e-6)
    assert got["mismatch/kl"] == pytest.approx((k3(LN15) + k3(LN3) + k3(-LN4)) / 4, rel=1e-6)
    assert got["mismatch/logprob_abs_diff_mean"] == pytest.approx(
        (0.405465 + 1.098612 + 1.386294) / 4, abs=1e-6
    )
    assert got["mismatch/ratio_max"] == pytest.approx(3.0, rel=1e-6)  # not the masked e^5
    # 3 and 1/4 leave [0.5, 2]; 1.5 and 1 do not
    assert got["mismatch/ratio_outside_frac"] == 0.5


def test_the_direction_is_learner_over_sampler():
    swapped = hand_batch()
    swapped.old_logprobs, swapped.rollout_logprobs = swapped.rollout_logprobs, swapped.old_logprobs
    got = MismatchSums.of(swapped).metrics()  # now d = -ln 1.5, -ln 3, ln 4, 0
    assert got["mismatch/ratio_max"] == pytest.approx(4.0, rel=1e-6)
    assert got["mismatch/kl"] == pytest.approx((k3(-LN15) + k3(-LN3) + k3(LN4)) / 4, rel=1e-6)
    # and the k3 mean over tokens the sampler drew estimates KL(sampler || learner):
    g = torch.Generator().manual_seed(0)
    sampler = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    learner = torch.tensor([0.3, 0.3, 0.4], dtype=torch.float64)
    tokens = torch.multinomial(sampler, 200_000, replacement=True, generator=g)
    rollout, old = sampler.log()[tokens][None], learner.log()[tokens][None]
    mask = torch.ones_like(old, dtype=torch.float32)
    ids = torch.ones_like(mask, dtype=torch.long)
    batch = TrainBatch(ids, ids, mask, mask, [ids.shape[1]])
    batch.old_logprobs, batch.rollout_logprobs = old, rollout
    kl_sampler_learner = float((sampler * (sampler / learner).log()).sum())  # 0.2773
    kl_learner_sampler = float((learner * (learner / sampler).log()).sum())  # 0.3466
    got = MismatchSums.of(batch).metrics()["mismatch/kl"]
    assert got == pytest.approx(kl_sampler_learner, abs=0.006)  # ~4 standard errors
    assert abs(got - kl_learner_sampler) > 0.05


def test_ranks_combine_by_token_counts_not_means_of_means():
    batch = hand_batch()
    whole = MismatchSums.of(batch)
    parts = [MismatchSums.of(batch.select([0])), MismatchSums.of(batch.select([1]))]
    assert parts[0].tokens == 3 and parts[1].tokens == 1
    combined = (MismatchSums() + parts[0] + parts[1]).metrics()
    for key, value in whole.metrics().items():
        assert combined[key] == pytest.approx(value, rel=1e-12), key
    means = [p.metrics()["mismatch/kl"] for p in parts]
    assert abs(sum(means) / 2 - combined["mismatch/kl"]) > 0.1  # the mean of means differs
    assert MismatchSums().metrics() == {}  # no tokens (or no sampling log-probs): no keys
    batch.rollout_logprobs = None
    assert MismatchSums.of(batch).metrics() == {}


def completion(prompt: list[int], response: list[int], logprobs: list[float]) -> Completion:
    return Completion(prompt, response, logprobs, "stop", "")


def test_sampling_logprobs_travel_with_the_batch():
    prompt = Prompt("u", {}, [5, 6])
    group = Group(
        prompt,
        [completion([5, 6], [7, 8, 9], [-0.5, -1.5, -0.25]), completion([5, 6], [7], [-2.0])],
        advantages=[1.0, -1.0],
    )
    rows = sequence_rows([group], "none")
    assert rows[0].logprobs == (-0.5, -1.5, -0.25)
    batch = rows_to_batch(rows, pad_id=0, temperature=1.0)
    assert batch.rollout_logprobs.tolist() == [
        [0.0, 0.0, -0.5, -1.5, -0.25],
        [0.0, 0.0, -2.0, 0.0, 0.0],
    ]
    cut = batch.select([1])
    assert cut.rollout_logprobs.tolist() == [[0.0, 0.0, -2.0]]
    assert torch.equal(batch.to("cpu").rollout_logprobs, batch.rollout_logprobs)
    # an engine that returned no log-probs for one row: the batch has none
    group.completions[1] = completion([5, 6], [7], [])
    rows = sequence_rows([group], "none")
    assert rows[1].logprobs is None
    assert rows_to_batch(rows, 0, 1.0).rollout_logprobs is None
    # between data-parallel ranks, exactly (float64 on the wire), None and () kept apart
    sent = [*rows, SequenceRow([1, 2], 2, 0.5, True, ()), SequenceRow([3], 1, 0.0, False)]
    assert _decode(_encode(sent)) == sent


def test_tis_weights_each_token_by_the_capped_ratio():
    # one sequence of four tokens, old - rollout = ln 1.5, ln 3 (capped at 2), -ln 2, 0
    old = torch.tensor([[-1.0, -0.5, -2.0, -0.3]])
    rollout = old - torch.tensor([[math.log(1.5), LN3, -LN2, 0.0]])
    logp = (old + math.log(1.1)).requires_grad_()  # PPO ratio 1.1, inside the clip
    adv = torch.tensor([[1.0, 1.0, -1.0, 2.0]])
    mask = torch.ones_like(old)
    loss = loss_of(rollout_correction="tis", tis_cap=2.0)
    per_token, stats = loss.per_token_loss(logp, old, adv, mask, rollout_logprobs=rollout)
    weight = [1.5, 2.0, 0.5, 1.0]
    expect = [-a * 1.1 * c for a, c in zip([1.0, 1.0, -1.0, 2.0], weight, strict=True)]
    assert per_token.tolist()[0] == pytest.approx(expect, rel=1e-6)
    assert stats["tis_weight"].tolist()[0] == pytest.approx(weight, rel=1e-6)
    assert stats["tis_capped"].tolist()[0] == [0.0, 1.0, 0.0, 0.0]
    per_token.sum().backward()  # the weight is a constant: d/dlogp = -A * c * ratio
    assert logp.grad.tolist()[0] == pytest.approx(expect, rel=1e-6)


def test_seq_mask_drops_whole_sequences_and_keeps_their_tokens_in_the_normaliser():
    # four sequences of two tokens; geometric-mean ratios exp(mean(old - rollout)):
    # sqrt(3/2) = 1.22 kept; sqrt(6) = 2.45 too high; 1/sqrt(6) = 0.41 too low;
    # sqrt(4 * 1/4) = 1 kept although each token alone (4, 1/4) is far outside the band
    d = torch.tensor([[LN3, -LN2], [LN3, LN2], [-LN3, -LN2], [LN4, -LN4]])
    old = torch.full((4, 2), -1.0)
    rollout = old - d
    adv = torch.tensor([[1.0, 1.0], [2.0, 2.0], [-1.0, -1.0], [-0.5, -0.5]])
    mask = torch.ones(4, 2)
    ids = torch.ones(4, 2, dtype=torch.long)
    sub = TrainBatch(ids, ids, mask, adv, [2] * 4, old_logprobs=old, rollout_logprobs=rollout)
    loss = loss_of(rollout_correction="seq_mask", seq_mask_low=0.5, seq_mask_high=2.0)
    weights = loss.token_weights(mask, [[0, 1, 2, 3]], LossTotals(8.0, 4))
    logp = old.clone().requires_grad_()  # PPO ratio 1: each term is -A
    sums: dict[str, float] = {}
    backward_micro_batch(loss, sub, weights, logp, torch.zeros_like(old), 0.0, sums)
    # kept: rows 0 and 3, 2 tokens each; T = 8 (the masked rows' tokens still count)
    assert sums["loss/pg"] == pytest.approx((2 * -1.0 + 2 * 0.5) / 8, rel=1e-6)
    expect_grad = [-1 / 8, -1 / 8, 0.0, 0.0, 0.0, 0.0, 0.5 / 8, 0.5 / 8]  # -A * w, kept rows
    assert logp.grad.flatten().tolist() == pytest.approx(expect_grad)
    assert sums["loss/seq_masked"] == pytest.approx(4 / 8)  # weighted: half the tokens


def test_none_is_bit_identical_to_the_uncorrected_loss():
    g = torch.Generator().manual_seed(0)
    old = -torch.rand(3, 6, generator=g) * 3
    logp = old + 0.3 * torch.randn(3, 6, generator=g)
    rollout = old + torch.randn(3, 6, generator=g)
    adv = torch.randn(3, 1, generator=g).expand(3, 6).contiguous()
    mask = (torch.rand(3, 6, generator=g) > 0.3).to(torch.float32)
    expect, clipped = ppo_clip_loss(logp, old, adv, 0.2, 0.28)  # the uncorrected loss
    loss = loss_of(clip_eps_high=0.28)
    assert not loss.needs_rollout_logprobs
    got, stats = loss.per_token_loss(logp, old, adv, mask, rollout_logprobs=rollout)
    assert torch.equal(got, expect) and torch.equal(stats["clipfrac"], clipped)
    assert set(stats) == {"clipfrac", "approx_kl"}
    # the learner's micro-batch: the same sums and gradient with and without sampling log-probs
    ids = torch.ones(3, 6, dtype=torch.long)
    weights = token_weights(mask, [[0, 1, 2]], "token_mean")
    results = []
    for sampled in (None, rollout):
        sub = TrainBatch(ids, ids, mask, adv, [6] * 3, old_logprobs=old, rollout_logprobs=sampled)
        leaf, sums = logp.clone().requires_grad_(), {}
        backward_micro_batch(loss, sub, weights, leaf, torch.zeros_like(old), 0.0, sums)
        results.append((sums, leaf.grad))
    assert results[0][0] == results[1][0] and torch.equal(results[0][1], results[1][1])


class FakeLossWithoutRolloutArgument(PolicyLoss):
    """A fake third-party loss written before ``rollout_logprobs`` existed."""

    def token_weights(self, response_mask, micro_batches, totals=None):
        return response_mask

    def per_token_loss(self, logprobs, old_logprobs, advantages, mask, ref_logprobs=None):
        return -advantages * logprobs, {}


def test_a_loss_without_the_flag_never_gets_rollout_logprobs():
    batch = hand_batch()
    leaf, sums = batch.old_logprobs.clone().requires_grad_(), {}
    loss = FakeLossWithoutRolloutArgument()
    backward_micro_batch(loss, batch, batch.response_mask, leaf, torch.zeros(2, 5), 0.0, sums)
    assert sums["loss/pg"] == pytest.approx(
        -0.5 * float((batch.old_logprobs * batch.response_mask).sum())
    )
    batch.rollout_logprobs = None  # a correction without sampling log-probs: a clear error
    with pytest.raises(ValueError, match="sampling log-probs"):
        backward_micro_batch(
            loss_of(rollout_correction="tis"), batch, batch.response_mask, leaf, leaf, 0.0, {}
        )


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"rollout_correction": "is"}, "loss.rollout_correction=is is not one of none, tis"),
        ({"rollout_correction": "tis", "tis_cap": 0.0}, "loss.tis_cap=0.0 must be > 0"),
        ({"seq_mask_low": -0.1}, "loss.seq_mask_low=-0.1 must be >= 0"),
        ({"seq_mask_low": 2.0, "seq_mask_high": 2.0}, "loss.seq_mask_high=2.0 must be >"),
    ],
)
def test_bad_correction_settings_are_config_errors(settings, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        loss_of(**settings)


@pytest.mark.parametrize("budget", [0, 8])  # fused (one micro-batch) and the two-pass default
def test_the_reference_learner_logs_the_mismatch_of_a_known_offset(tiny_model, budget):
    from tests.test_learner import make_batch, make_learner

    learner = make_learner(tiny_model)
    batch = make_batch([6, 9, 4, 7])
    batch.micro_batch_tokens = budget
    own, _ = learner.compute_logprobs(batch)
    b, t = batch.input_ids.shape
    offset = torch.linspace(-1.5, 1.5, b * t).reshape(b, t) * batch.response_mask
    batch.rollout_logprobs = (own - offset) * batch.response_mask
    from or1.rl.learner_step import on_policy_step

    metrics = on_policy_step(learner, batch, loss_of(rollout_correction="tis"), lambda o, e: 0.0)
    assert metrics["learner/fused_old_logprobs"] == float(budget == 0)
    d = offset[batch.response_mask > 0].double()
    assert metrics["mismatch/kl"] == pytest.approx(float((d.exp() - d - 1).mean()), rel=1e-4)
    assert metrics["mismatch/logprob_abs_diff_mean"] == pytest.approx(
        float(d.abs().mean()), rel=1e-4
    )
    assert metrics["mismatch/ratio_max"] == pytest.approx(float(d.exp().max()), rel=1e-4)
    outside = ((d.exp() < 0.5) | (d.exp() > 2)).double().mean()
    assert metrics["mismatch/ratio_outside_frac"] == pytest.approx(float(outside))
    # token_mean: the weighted mean of the TIS weight is the token mean of min(e^d, 2)
    assert metrics["loss/tis_weight"] == pytest.approx(float(d.exp().clamp(max=2).mean()), rel=1e-4)


def test_a_short_run_logs_the_mismatch_of_the_reference_engines(tmp_path, cache_dir):
    run_dir = tmp_path / "run"
    args = [
        f"hydra.run.dir={run_dir}",
        "trainer.total_steps=2",
        "trainer.eval_at_start=false",
        "filter=none",
        "learner.lr=0.01",
        *FAST_RUN,
    ]
    proc = run_cli("or1-train", args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2]
    for m in metrics:
        # fp32 sampling and training with the same weights (step 2: synced after the update),
        # only kernel-level noise; measured on 2 CPU cores: kl ~2e-14, |d| ~1e-7, max 1+5e-7
        assert 0 <= m["mismatch/kl"] < 1e-8, m
        assert 0 <= m["mismatch/logprob_abs_diff_mean"] < 1e-5, m
        assert 0.999 < m["mismatch/ratio_max"] < 1.001, m
        assert m["mismatch/ratio_outside_frac"] == 0.0, m


def test_a_non_positive_cap_fails_in_one_line_before_anything_runs(tmp_path):
    run = tmp_path / "run"
    overrides = ["loss.rollout_correction=tis", "loss.tis_cap=0"]
    proc = run_cli("or1-train", [f"hydra.run.dir={run}", *FAST_RUN, *overrides], tmp_path)
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("or1: error:")]
    assert len(errors) == 1 and "loss.tis_cap=0.0 must be > 0" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr and not run.exists()
