"""The reference learner: log-probs, entropy, and a loss that does not depend on the split."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from or1.core.interfaces import BuildContext
from or1.core.types import TrainBatch
from or1_plugins.learner.torch.learner import TorchLearner, TorchLearnerConfig
from or1_plugins.loss.or1 import OR1Loss, OR1LossConfig


def make_learner(model: Path, **kw) -> TorchLearner:
    cfg = OmegaConf.structured(TorchLearnerConfig(lr=1e-3, **kw))
    ctx = BuildContext(run_dir=model, model_path=model, cache_dir=model, seed=0, config=None)
    return TorchLearner(cfg, ctx)


def record_gradients(learner: TorchLearner) -> list[torch.Tensor]:
    """Snapshot the accumulated (clipped) gradient when the optimiser steps."""
    seen: list[torch.Tensor] = []
    step = learner.optimizer.step

    def recording_step(*args, **kwargs):
        seen.append(
            torch.cat([p.grad.flatten() for p in learner.model.parameters() if p.grad is not None])
        )
        return step(*args, **kwargs)

    learner.optimizer.step = recording_step
    return seen


def make_batch(
    lengths: list[int], prompt_len: int = 3, vocab: int = 60, seed: int = 0
) -> TrainBatch:
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    attn = torch.zeros_like(ids)
    resp = torch.zeros(len(lengths), width)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(3, vocab, (n,), generator=g)
        attn[i, :n] = 1
        resp[i, prompt_len:n] = 1.0
    adv = resp * torch.randn(len(lengths), 1, generator=g)
    return TrainBatch(ids, attn, resp, adv, list(lengths), temperature=1.0)


def test_logprobs_match_an_independent_computation(tiny_model):
    learner = make_learner(tiny_model)
    batch = make_batch([6, 9, 4])
    logp, ent = learner.compute_logprobs(batch)
    with torch.no_grad():
        for i, n in enumerate(batch.seq_lens):  # one unpadded sequence at a time
            logits = learner.model(batch.input_ids[i : i + 1, :n]).logits[0].double()
            dist = torch.distributions.Categorical(logits=logits[:-1])
            expect_lp = dist.log_prob(batch.input_ids[i, 1:n])
            assert torch.allclose(logp[i, 1:n].double(), expect_lp, atol=1e-5)
            assert torch.allclose(ent[i, 1:n].double(), dist.entropy(), atol=1e-5)
            assert logp[i, n:].abs().sum() == 0 and logp[i, 0] == 0


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean_token_mean"])
def test_train_step_same_for_any_micro_batch_split(tiny_model, agg):
    lengths = [5, 12, 7, 9, 4, 11]
    results = []
    for budget in (0, 16, 1):  # one micro-batch; about two sequences each; one sequence each
        torch.manual_seed(0)
        learner = make_learner(tiny_model)
        batch = make_batch(lengths)
        batch.micro_batch_tokens = budget
        batch.old_logprobs, _ = learner.compute_logprobs(batch)
        loss = OR1Loss(OmegaConf.structured(OR1LossConfig(agg=agg)))
        grads = record_gradients(learner)
        metrics = learner.train_step(batch, loss, entropy_coef=0.01)
        results.append((metrics, grads[0]))
    base, base_g = results[0]
    assert base["learner/micro_batches"] == 1 and results[2][0]["learner/micro_batches"] == len(
        lengths
    )
    for metrics, grad in results[1:]:
        assert metrics["loss/pg"] == pytest.approx(base["loss/pg"], abs=1e-6)
        assert metrics["loss/entropy"] == pytest.approx(base["loss/entropy"], rel=1e-6)
        assert metrics["grad_norm"] == pytest.approx(base["grad_norm"], rel=1e-5)
        assert torch.allclose(grad, base_g, rtol=1e-4, atol=1e-7)


def test_microbatch_weighting_changes_the_gradient(tiny_model):
    """The released-code weighting depends on the split: the test above could fail."""
    norms = []
    for budget in (0, 1):
        learner = make_learner(tiny_model)
        batch = make_batch([5, 12, 7, 9])
        batch.micro_batch_tokens = budget
        batch.old_logprobs, _ = learner.compute_logprobs(batch)
        loss = OR1Loss(OmegaConf.structured(OR1LossConfig(agg="microbatch_token_mean")))
        norms.append(learner.train_step(batch, loss, 0.0)["grad_norm"])
    assert abs(norms[0] - norms[1]) > 1e-4 * norms[0]


def test_state_dict_round_trip_and_export(tiny_model, tmp_path):
    learner = make_learner(tiny_model)
    batch = make_batch([6, 8])
    batch.old_logprobs, _ = learner.compute_logprobs(batch)
    learner.train_step(batch, OR1Loss(OmegaConf.structured(OR1LossConfig())), 0.0)
    other = make_learner(tiny_model)
    other.load_state_dict(learner.state_dict())
    assert torch.equal(other.compute_logprobs(batch)[0], learner.compute_logprobs(batch)[0])
    learner.save_pretrained(tmp_path / "export")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "export")
    AutoTokenizer.from_pretrained(tmp_path / "export")
    for name, tensor in learner.named_weights():
        assert torch.equal(reloaded.state_dict()[name], tensor)


@pytest.mark.parametrize("budget", [0, 16])
def test_on_policy_step_fused_equals_two_passes(tiny_model, budget):
    """One micro-batch: the old log-probs come from the training forward (no extra pass);
    several: the interface's two-pass default. Same coefficient inputs, metrics and gradients
    as compute_logprobs + train_step; with ratio 1 the policy-gradient loss is minus the
    token-mean advantage (computed here from the batch)."""
    from or1.rl.batch import masked_mean
    from or1.rl.learner_step import on_policy_step, two_pass_step

    results = {}
    for key in ("fused", "default"):
        torch.manual_seed(0)
        learner = make_learner(tiny_model)
        batch = make_batch([5, 12, 7, 9, 4, 11], seed=2)
        batch.micro_batch_tokens = budget
        seen: list[tuple[torch.Tensor, torch.Tensor]] = []

        def coef(old, ent, batch=batch, seen=seen):
            seen.append((old.clone(), ent.clone()))
            return 0.5 * masked_mean(ent, batch.response_mask)

        grads = record_gradients(learner)
        loss = OR1Loss(OmegaConf.structured(OR1LossConfig()))
        step = partial(on_policy_step if key == "fused" else two_pass_step, learner)
        results[key] = (step(batch, loss, coef), grads[0], seen, batch)
    (fused, g_f, seen_f, batch), (default, g_d, seen_d, _) = results["fused"], results["default"]
    assert fused["learner/fused_old_logprobs"] == (1.0 if budget == 0 else 0.0)
    assert default["learner/fused_old_logprobs"] == 0.0
    assert len(seen_f) == len(seen_d) == 1
    assert torch.allclose(seen_f[0][0], seen_d[0][0], atol=1e-6)
    assert torch.allclose(seen_f[0][1], seen_d[0][1], atol=1e-6)
    assert torch.allclose(batch.old_logprobs, seen_d[0][0], atol=1e-6)
    resp = batch.response_mask
    expect_pg = -float((batch.advantages * resp).sum() / resp.sum())
    for m in (fused, default):
        assert m["loss/pg"] == pytest.approx(expect_pg, rel=1e-5, abs=1e-7)
        assert m["loss/clipfrac"] == 0.0
    for key in ("loss/pg", "loss/entropy", "loss/total", "grad_norm"):
        assert fused[key] == pytest.approx(default[key], rel=1e-5, abs=1e-7), key
    assert torch.allclose(g_f, g_d, rtol=1e-4, atol=1e-7)
    assert not torch.equal(g_f, torch.zeros_like(g_f))
