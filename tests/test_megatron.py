"""The Megatron learner in real processes (gloo, 1 thread per rank): TP=2 and data parallel
equal TP=1 on the same weights, TP=1 equals the reference PyTorch learner, the HF mapping
round-trips exactly, a checkpoint resumes at another world size, and bad input fails early."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from or1.core.errors import ConfigError
from or1.core.interfaces import BuildContext
from tests.megatron_jobs import behaviour_logprobs, launch, make_batch, mismatch_offset

LOGP_TOL = 1e-4
SCHEDULE = {"lr_schedule": "linear", "lr_warmup_steps": 2, "lr_decay_steps": 4}
"""The schedule of the ``runs`` jobs (and the reference learner): step 1 at lr/2, step 2 at
lr, so a resumed job that lost its place on the schedule takes a different second step."""


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
        {"model_path": model, "tp": 2, "state_out": state} | SCHEDULE,
        {"model_path": model, "tp": 1, "state_in": sharded} | SCHEDULE,
        {"model_path": model, "tp": 2, "state_in": state} | SCHEDULE,
    ]
    tp2, dp2, tp2_again = launch("sequence", 2, out, runs=runs)  # two processes each
    tp1 = launch("equivalence", 1, out, model_path=model, tp=1, state_in=sharded, **SCHEDULE)
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
    # AdamW's first step moves each weight by about lr (5e-4, SCHEDULE's first step) times
    # sign(grad): a fifth of it separates round-off on near-zero gradients from a wrong update
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
    # the place on the learning-rate schedule came with the state (SCHEDULE: lr/2, then lr)
    assert tp1["metrics1"]["learner/lr"] == pytest.approx(5e-4, rel=1e-12)
    assert tp1["metrics2"]["learner/lr"] == pytest.approx(1e-3, rel=1e-12)


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


@pytest.mark.parametrize("run", ["tp1", "tp2", "dp2"])
def test_mismatch_metrics_are_token_means_over_every_rank(runs, run):
    """The batch's sampling log-probs are the learner's own minus a known offset ``d``
    (``mismatch_offset``): both on-policy steps log k3 ``exp(d) - d - 1``, ``|d|``, the
    largest ``exp(d)`` and the share outside [0.5, 2], over the whole batch's response
    tokens (at DP=2 each rank holds part of them; a mean of the ranks' means would differ),
    and the default loss (no correction) is untouched by them (the test above)."""
    from or1.rl.dp_balance import partition

    batch = runs[run]["onp_batch"]
    offset, mask = mismatch_offset(batch), batch.response_mask > 0
    d = offset[mask].double()
    expect = {
        "mismatch/kl": float((d.exp() - d - 1).mean()),
        "mismatch/logprob_abs_diff_mean": float(d.abs().mean()),
        "mismatch/ratio_max": float(d.exp().max()),
        "mismatch/ratio_outside_frac": float(((d.exp() < 0.5) | (d.exp() > 2)).double().mean()),
    }
    for key in ("onp_fused", "onp_default"):
        got = {k: v for k, v in runs[run][key].items() if k.startswith("mismatch/")}
        assert got == pytest.approx(expect, rel=1e-4), key
    bins = partition(batch.seq_lens, 2)
    means = []
    for b in (0, 1):
        rows = [i for i, x in enumerate(bins) if x == b]
        part = offset[rows][mask[rows]].double()
        means.append(float((part.exp() - part - 1).mean()))
    assert abs(sum(means) / 2 - expect["mismatch/kl"]) > 1e-3


def test_tp1_matches_the_reference_learner(runs, tiny_model):
    from or1_plugins.learner.torch.learner import TorchLearner, TorchLearnerConfig
    from or1_plugins.loss.or1 import OR1Loss, OR1LossConfig

    base = runs["tp1"]
    cfg = OmegaConf.structured(TorchLearnerConfig(lr=1e-3, **SCHEDULE))
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

    from or1_plugins.learner.megatron.hf_mapping import (
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

    from or1_plugins.learner.megatron.hf_mapping import architecture

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
    from or1_plugins.learner.megatron.learner import MegatronLearner, MegatronLearnerConfig

    cfg = OmegaConf.structured(MegatronLearnerConfig(recompute="some"))
    with pytest.raises(
        ConfigError, match="learner.recompute=some is not one of none, selective, full"
    ):
        MegatronLearner(cfg, BuildContext(tiny_model, tiny_model, tiny_model, 0, None))


@pytest.fixture(scope="module")
def precision_runs(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The equivalence job with the distributed optimiser at DP=2 (fp32, saving its state
    after step 1 as sharded files; and bf16), then in one process: padded micro-batches, bf16,
    and fp32 resuming from the distributed optimiser's files."""
    out = tmp_path_factory.mktemp("precision")
    model, state = str(tiny_model), str(out / "distopt_state.pt")
    base = {"model_path": model, "tp": 1, "on_policy": False} | SCHEDULE  # as ``runs``
    distopt, distopt_bf16 = launch(
        "sequence",
        2,
        out,
        runs=[
            base | {"distributed_optimizer": True, "state_out": state},
            base | {"distributed_optimizer": True, "precision": "bf16"},
        ],
    )
    padded, bf16, resumed = launch(
        "sequence",
        1,
        out,
        runs=[
            base | {"packing": False},
            base | {"precision": "bf16"},
            base | {"state_in": state + ".sharded"},
        ],
    )
    return {
        "distopt": distopt,
        "distopt_bf16": distopt_bf16,
        "padded": padded,
        "bf16": bf16,
        "resumed": resumed,
    }


def test_packed_and_padded_micro_batches_give_the_same_step(runs, precision_runs):
    """The default packs each micro-batch's sequences into one row (THD, per-document
    attention); padding them to the longest gives the same log-probs, entropies, loss,
    gradient norm and gradients to fp32 round-off (1e-5 relative)."""
    packed, padded = runs["tp1"], precision_runs["padded"]
    assert max_diff(packed["logp0"], padded["logp0"]) <= 1e-5
    assert max_diff(packed["ent0"], padded["ent0"]) <= 1e-5
    for key in ("loss/pg", "loss/entropy", "loss/clipfrac", "grad_norm"):
        assert packed["metrics1"][key] == pytest.approx(
            padded["metrics1"][key], rel=1e-5, abs=1e-7
        ), key
    scale = max(g.abs().max().item() for g in padded["grads1"].values())
    assert max_diff(packed["grads1"], padded["grads1"]) <= 1e-5 * scale
    assert max_diff(packed["logp1"], padded["logp1"]) <= LOGP_TOL


BF16_LOGP_TOL = 0.03
"""bf16 keeps 8 significant bits (relative rounding 2**-9 = 0.2% per operation): on the tiny
model the log-probs of the same weights differ from fp32 by a few 1e-3 nats; 0.03 nats bounds
the largest and leaves 0.005 for the mean."""


def test_bf16_logprobs_and_step_agree_with_fp32(runs, precision_runs):
    """bf16 compute with fp32 master weights: log-probs of the same weights within the bf16
    tolerance of fp32's, the same loss to 1%, gradients pointing the same way (cosine > 0.99),
    and the step applied to the fp32 master weights (the exported weights moved by ~lr)."""
    fp32, bf16 = runs["tp1"], precision_runs["bf16"]
    mask = fp32["logp0"] != 0
    diff = (bf16["logp0"] - fp32["logp0"]).abs()[mask]
    assert float(diff.max()) <= BF16_LOGP_TOL and float(diff.mean()) <= 0.005
    assert float(diff.max()) > 0  # it really ran in bf16
    assert bf16["metrics1"]["loss/pg"] == pytest.approx(fp32["metrics1"]["loss/pg"], rel=1e-2)
    assert bf16["metrics1"]["grad_norm"] == pytest.approx(fp32["metrics1"]["grad_norm"], rel=2e-2)
    a = torch.cat([g.flatten() for _, g in sorted(fp32["grads1"].items())]).double()
    b = torch.cat([g.flatten() for _, g in sorted(bf16["grads1"].items())]).double()
    assert float(a @ b / (a.norm() * b.norm())) > 0.99
    moved = max_diff(bf16["weights1"], bf16["weights0"])
    assert 2e-4 < moved < 5e-3  # AdamW's first step: about lr = 1e-3 per weight
    assert all(t.dtype == torch.bfloat16 for t in bf16["weights1"].values())


def test_distributed_optimizer_halves_the_state_and_takes_the_same_step(runs, precision_runs):
    """Megatron's distributed optimiser at DP=2: each rank keeps about half of the AdamW
    moments (fp32) and of the fp32 master weights (bf16) that one process keeps, and the step
    equals the plain optimiser's in one process."""
    fp32, distopt = runs["tp1"], precision_runs["distopt"]
    (one,) = fp32["optimizer_bytes"]
    assert one > 0 and len(distopt["optimizer_bytes"]) == 2
    for per_rank in distopt["optimizer_bytes"]:
        assert 0.45 * one <= per_rank <= 0.55 * one
    assert sum(distopt["optimizer_bytes"]) == pytest.approx(one, rel=0.02)
    (one16,) = precision_runs["bf16"]["optimizer_bytes"]
    assert one16 == pytest.approx(1.5 * one, rel=0.01)  # + the fp32 master weights
    for per_rank in precision_runs["distopt_bf16"]["optimizer_bytes"]:
        assert 0.45 * one16 <= per_rank <= 0.55 * one16
    for key in ("loss/pg", "loss/entropy", "grad_norm"):
        assert distopt["metrics1"][key] == pytest.approx(fp32["metrics1"][key], rel=1e-5), key
    assert max_diff(distopt["weights1"], fp32["weights1"]) <= 1e-4
    assert max_diff(distopt["logp1"], fp32["logp1"]) <= LOGP_TOL


def test_a_distributed_optimizer_checkpoint_resumes_in_one_process(precision_runs):
    """Sharded files written by DP=2 with the distributed optimiser (each rank's ranges
    assembled) load into one process with the plain optimiser: the same second step."""
    saved, resumed = precision_runs["distopt"], precision_runs["resumed"]
    assert max_diff(resumed["logp_loaded"], saved["logp1"]) <= LOGP_TOL
    for key in ("loss/pg", "grad_norm"):
        assert resumed["metrics2"][key] == pytest.approx(saved["metrics2"][key], rel=1e-5), key
    assert max_diff(resumed["logp2"], saved["logp2"]) <= LOGP_TOL
    assert max_diff(saved["logp2"], saved["logp1"]) > 1e-3  # the moments were restored


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"precision": "fp16"}, "learner.precision=fp16 is not one of fp32, bf16"),
        ({"context_parallel_size": 0}, "learner.context_parallel_size=0 must be >= 1"),
        ({"context_parallel_size": 2}, "does not divide the 1 process"),
    ],
)
def test_bad_precision_and_parallel_settings_are_one_line_errors(tiny_model, settings, message):
    from or1_plugins.learner.megatron.learner import MegatronLearner, MegatronLearnerConfig

    cfg = OmegaConf.structured(MegatronLearnerConfig(**settings))
    with pytest.raises(ConfigError, match=message):
        MegatronLearner(cfg, BuildContext(tiny_model, tiny_model, tiny_model, 0, None))


def test_context_parallel_without_a_gpu_is_a_one_line_error():
    from or1_plugins.learner.megatron.learner import MegatronLearnerConfig, check_settings

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    cfg = OmegaConf.structured(MegatronLearnerConfig(context_parallel_size=2))
    with pytest.raises(ConfigError, match="context_parallel_size=2 needs GPUs"):
        check_settings(cfg, world=2)


def test_a_micro_batch_budget_below_the_longest_sequence_is_a_one_line_error(tmp_path):
    from tests.conftest import run_cli

    r = run_cli(
        "or1-train",
        ["stages.stages.0.micro_batch_tokens=200", "data.max_prompt_length=256"],
        tmp_path,
        timeout=120,
    )
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert (
        "stages.stages[0].micro_batch_tokens=200 is below the stage's longest sequence of 320 "
        "tokens (data.max_prompt_length=256 + max_response_length=64)"
    ) in r.stderr
    assert not list(tmp_path.rglob("*.safetensors"))  # nothing loaded, nothing written


def test_context_parallel_ranks_hold_load_balanced_chunks_of_every_sequence():
    """Megatron's CP layout, worked by hand: lengths 5 and 12 at CP=2 pad to 8 and 12 and cut
    into 4 chunks each (2 and 3 tokens); rank 0 holds chunks 0 and 3, rank 1 chunks 1 and 2."""
    from or1_plugins.learner.megatron.context_parallel import padded_lengths, partition

    assert padded_lengths([5, 12], 2) == [8, 12]
    assert partition([5, 12], 2, 0).tolist() == [0, 1, 6, 7, 8, 9, 10, 17, 18, 19]
    assert partition([5, 12], 2, 1).tolist() == [2, 3, 4, 5, 11, 12, 13, 14, 15, 16]
    both = torch.cat([partition([7, 3, 30], 4, r) for r in range(4)])
    assert sorted(both.tolist()) == list(range(sum(padded_lengths([7, 3, 30], 4))))
    with pytest.raises(ValueError, match="rank 2 is not in"):
        partition([4], 2, 2)
