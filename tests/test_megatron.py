"""The Megatron learner in real processes (gloo, 1 thread per rank): TP=2 and data parallel
equal TP=1 on the same weights, TP=1 equals the reference PyTorch learner, the HF mapping
round-trips exactly, a checkpoint resumes at another world size, and bad input fails early."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from or1.errors import ConfigError
from or1.interfaces import BuildContext
from tests.megatron_jobs import behaviour_logprobs, launch, make_batch

LOGP_TOL = 1e-4


def max_diff(
    a: dict[str, torch.Tensor] | torch.Tensor, b: dict[str, torch.Tensor] | torch.Tensor
) -> float:
    if isinstance(a, dict):
        assert set(a) == set(b)
        return max(max_diff(a[k], b[k]) for k in a)
    return float((a.double() - b.double()).abs().max())


@pytest.fixture(scope="module")
def runs(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The equivalence job at TP=2 (saving its state after step 1, as one full state and as
    sharded files), at TP=1 x DP=2 (loading the sharded files) and again at TP=2 (the full
    state) for step 2, and at TP=1 in one process (the sharded files)."""
    out = tmp_path_factory.mktemp("megatron")
    state = str(out / "tp2_state.pt")
    model = str(tiny_model)
    sharded = state + ".sharded"  # the same state as each TP rank's own shards
    runs = [
        {"model_path": model, "tp": 2, "state_out": state},
        {"model_path": model, "tp": 1, "state_in": sharded},
        {"model_path": model, "tp": 2, "state_in": state},
    ]
    tp2, dp2, tp2_again = launch("sequence", 2, out, runs=runs)  # two processes each
    tp1 = launch("equivalence", 1, out, model_path=model, tp=1, state_in=sharded)
    return {"tp1": tp1, "tp2": tp2, "dp2": dp2, "tp2_again": tp2_again}


def test_initial_weights_round_trip_exactly(runs, tiny_model):
    """HF safetensors -> Megatron shards (TP=1, TP=2) -> gathered HF names: bit-identical."""
    hf = load_file(str(tiny_model / "model.safetensors"))
    for name in ("tp1", "tp2"):
        weights = runs[name]["weights0"]
        assert set(weights) == set(hf)
        for key, tensor in hf.items():
            assert torch.equal(weights[key], tensor.float()), (name, key)


@pytest.mark.parametrize("other", ["tp2", "dp2"])
def test_parallel_runs_equal_tp1(runs, other):
    base, run = runs["tp1"], runs[other]
    assert max_diff(run["logp0"], base["logp0"]) <= LOGP_TOL
    assert max_diff(run["ent0"], base["ent0"]) <= LOGP_TOL
    for key in ("loss/pg", "loss/entropy", "loss/total", "loss/clipfrac", "grad_norm"):
        assert run["metrics1"][key] == pytest.approx(base["metrics1"][key], rel=1e-5, abs=1e-7), key
    assert run["metrics1"]["learner/micro_batches"] == (4 if other == "dp2" else 3)
    assert base["metrics1"]["loss/clipfrac"] > 0  # the clipped branch is exercised
    grads = max_diff(run["grads1"], base["grads1"])
    assert grads <= 1e-5 * max(g.abs().max().item() for g in base["grads1"].values())
    # AdamW's first step moves each weight by about lr (1e-3) times sign(grad): a tenth of lr
    # separates round-off on near-zero gradients from a wrong update
    assert max_diff(run["weights1"], base["weights1"]) <= 1e-4
    assert max_diff(run["logp1"], base["logp1"]) <= LOGP_TOL


@pytest.mark.parametrize("resumed", ["tp1", "dp2", "tp2_again"])
def test_checkpoint_from_tp2_resumes_anywhere(runs, resumed):
    """TP=2 saved its state after step 1; TP=1 in one process and TP=1 x DP=2 (from the
    sharded files, resharded as they load) and TP=2 (the full state) load it and take step 2
    the same way: weights and AdamW moments restored."""
    tp1, tp2 = runs[resumed], runs["tp2"]
    assert max_diff(tp1["logp_loaded"], tp2["logp1"]) <= LOGP_TOL
    assert tp1["metrics2"]["loss/pg"] == pytest.approx(
        tp2["metrics2"]["loss/pg"], rel=1e-5, abs=1e-7
    )
    assert tp1["metrics2"]["grad_norm"] == pytest.approx(tp2["metrics2"]["grad_norm"], rel=1e-5)
    assert max_diff(tp1["logp2"], tp2["logp2"]) <= LOGP_TOL
    # and the step really moved the policy (AdamW moments restored, not reset)
    assert max_diff(tp2["logp2"], tp2["logp1"]) > 1e-3


def test_non_finite_loss_skips_the_step_on_every_rank(runs):
    assert runs["tp2"]["metrics1"]["train/nonfinite"] == 0.0
    assert runs["tp2"]["metrics_nan"]["train/nonfinite"] == 1.0
    assert runs["tp2"]["nan_step_moved"] == 0.0


@pytest.mark.parametrize("run", ["tp1", "tp2", "dp2"])
def test_on_policy_step_fused_equals_two_passes(runs, run):
    """One micro-batch per rank (one process, TP=2, DP=2): the old log-probs come from the
    training forward (no extra pass), the entropy coefficient reduced over the ranks between
    forward and backward; the two-pass default gives the same step: both the same step as
    compute_logprobs + train_step, and with ratio 1 the policy-gradient loss is minus the
    token-mean advantage (computed here from the batch)."""
    r = runs[run]
    fused, default = r["onp_fused"], r["onp_default"]
    assert fused["learner/fused_old_logprobs"] == 1.0  # every rank holds one micro-batch
    assert default["learner/fused_old_logprobs"] == 0.0
    assert len(r["onp_seen"]) == 2  # the coefficient was asked once per step
    (old_f, ent_f), (old_d, ent_d) = r["onp_seen"]
    assert max_diff(old_f, old_d) <= 1e-6 and max_diff(ent_f, ent_d) <= 1e-6
    assert max_diff(r["onp_fused_old"], old_d) <= 1e-6
    batch = r["onp_batch"]
    expect_pg = -float((batch.advantages * batch.response_mask).sum() / batch.response_mask.sum())
    for m in (fused, default):
        assert m["loss/pg"] == pytest.approx(expect_pg, rel=1e-5, abs=1e-7)
        assert m["loss/clipfrac"] == 0.0
    for key in ("loss/pg", "loss/entropy", "loss/total", "grad_norm"):
        assert fused[key] == pytest.approx(default[key], rel=1e-5, abs=1e-7), key
    g_f, g_d = r["onp_fused_grads"], r["onp_default_grads"]
    assert max_diff(g_f, g_d) <= 1e-5 * max(g.abs().max().item() for g in g_d.values())


def test_tp1_matches_the_reference_learner(runs, tiny_model):
    from or1_plugins.or1_loss import OR1Loss, OR1LossConfig
    from or1_plugins.torch_learner.learner import TorchLearner, TorchLearnerConfig

    base = runs["tp1"]
    cfg = OmegaConf.structured(TorchLearnerConfig(lr=1e-3))
    ref = TorchLearner(cfg, BuildContext(tiny_model, tiny_model, tiny_model, 0, None))
    batch = make_batch([6, 9, 4, 12, 7], ref.model.config.vocab_size, budget=16)
    logp, ent = ref.compute_logprobs(batch)
    assert max_diff(logp, base["logp0"]) <= LOGP_TOL
    assert max_diff(ent, base["ent0"]) <= LOGP_TOL
    batch.old_logprobs = behaviour_logprobs(logp, batch)
    seen = []
    step = ref.optimizer.step

    def recording_step(*args, **kwargs):
        seen.append({n: p.grad.clone() for n, p in ref.model.named_parameters()})
        return step(*args, **kwargs)

    ref.optimizer.step = recording_step
    loss = OR1Loss(OmegaConf.structured(OR1LossConfig(clip_eps_high=0.28)))
    metrics = ref.train_step(batch, loss, 0.01)
    for key in ("loss/pg", "loss/entropy", "loss/clipfrac", "grad_norm"):
        assert metrics[key] == pytest.approx(base["metrics1"][key], rel=1e-4, abs=1e-6), key
    assert max_diff(seen[0], base["grads1"]) <= 1e-4 * max(
        g.abs().max().item() for g in seen[0].values()
    )
    assert max_diff(ref.compute_logprobs(batch)[0], base["logp1"]) <= LOGP_TOL


def test_mapping_round_trip_with_grouped_query_attention_and_tp_shards():
    """Pure tensors: HF -> Megatron -> TP shards (stride 2 for fc1) -> unshard -> HF is exact
    for a GQA config where each KV group holds 3 query heads."""
    from transformers import Qwen2Config

    from or1_plugins.megatron.hf_mapping import (
        architecture,
        hf_to_megatron,
        megatron_names,
        megatron_to_hf,
        shard,
        tp_layout,
        unshard,
    )

    cfg = Qwen2Config(
        vocab_size=50,
        hidden_size=48,
        intermediate_size=40,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=2,
        architectures=["Qwen2ForCausalLM"],
    )
    tp = 2
    arch = architecture(cfg, tp)
    g = torch.Generator().manual_seed(0)
    hd = 48 // 6
    shapes = {
        "model.embed_tokens.weight": (50, 48),
        "model.norm.weight": (48,),
        "lm_head.weight": (50, 48),
    }
    for i in range(2):
        p = f"model.layers.{i}."
        shapes |= {
            p + "input_layernorm.weight": (48,),
            p + "post_attention_layernorm.weight": (48,),
            p + "self_attn.q_proj.weight": (48, 48),
            p + "self_attn.q_proj.bias": (48,),
            p + "self_attn.k_proj.weight": (2 * hd, 48),
            p + "self_attn.k_proj.bias": (2 * hd,),
            p + "self_attn.v_proj.weight": (2 * hd, 48),
            p + "self_attn.v_proj.bias": (2 * hd,),
            p + "self_attn.o_proj.weight": (48, 48),
            p + "mlp.gate_proj.weight": (40, 48),
            p + "mlp.up_proj.weight": (40, 48),
            p + "mlp.down_proj.weight": (48, 40),
        }
    hf = {k: torch.randn(s, generator=g) for k, s in shapes.items()}
    back = {}
    for name in megatron_names(arch):
        full = hf_to_megatron(name, hf.__getitem__, arch)
        pieces = [shard(full, tp_layout(name), r, tp) for r in range(tp)]
        assert all(p.shape == pieces[0].shape for p in pieces)
        back.update(megatron_to_hf(name, unshard(pieces, tp_layout(name)), arch))
    assert set(back) == set(hf)
    assert all(torch.equal(back[k], hf[k]) for k in hf)
    # layer 0's fused qkv groups rows as [q(3 heads); k; v] per KV group
    qkv = hf_to_megatron("decoder.layers.0.self_attention.linear_qkv.weight", hf.__getitem__, arch)
    assert torch.equal(qkv[3 * hd : 4 * hd], hf["model.layers.0.self_attn.k_proj.weight"][:hd])
    assert torch.equal(
        qkv[5 * hd : 8 * hd], hf["model.layers.0.self_attn.q_proj.weight"][3 * hd : 6 * hd]
    )


def test_unmappable_architecture_and_tp_sizes_are_clear_errors(tiny_model):
    from transformers import AutoConfig, GPT2Config

    from or1_plugins.megatron.hf_mapping import architecture

    with pytest.raises(ConfigError, match="architecture GPT2LMHeadModel cannot be mapped"):
        architecture(GPT2Config(architectures=["GPT2LMHeadModel"]), 1)
    cfg = AutoConfig.from_pretrained(tiny_model)  # 4 heads, 2 KV heads, vocab 67
    with pytest.raises(
        ConfigError,
        match=r"tensor_parallel_size=3 does not divide the model's attention heads \(4\)",
    ):
        architecture(cfg, 3)
    with pytest.raises(
        ConfigError,
        match=r"tensor_parallel_size=4 does not divide the model's key/value heads \(2\)",
    ):
        architecture(cfg, 4)
    with pytest.raises(
        ConfigError, match=rf"does not divide the model's vocab_size \({cfg.vocab_size}\)"
    ):
        architecture(cfg, 2, pad_vocab=False)
    assert architecture(cfg, 2).padded_vocab_size == cfg.vocab_size + cfg.vocab_size % 2


def test_activation_recompute_gives_the_same_step(tiny_model, tmp_path):
    """learner.recompute=selective and full (Megatron's own checkpointing of core attention /
    whole layers) give exactly the step without recompute: same loss, norm and gradients."""
    out = launch(
        "recompute", 1, tmp_path, model_path=str(tiny_model), modes=["none", "selective", "full"]
    )
    base = out["none"]
    for mode in ("selective", "full"):
        for key in ("loss/pg", "loss/entropy", "grad_norm"):
            assert out[mode]["metrics"][key] == base["metrics"][key], (mode, key)
        assert max_diff(out[mode]["grads"], base["grads"]) == 0.0, mode
    assert base["metrics"]["grad_norm"] > 0


def test_an_unknown_recompute_mode_is_a_config_error(tiny_model):
    from or1_plugins.megatron.learner import MegatronLearner, MegatronLearnerConfig

    cfg = OmegaConf.structured(MegatronLearnerConfig(recompute="some"))
    with pytest.raises(
        ConfigError, match="learner.recompute=some is not one of none, selective, full"
    ):
        MegatronLearner(cfg, BuildContext(tiny_model, tiny_model, tiny_model, 0, None))
