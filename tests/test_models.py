"""Supported models: Qwen2 / Qwen2.5, Qwen3 (dense) and Llama 3 in every engine, and the
one-line error of each engine's ``check_model`` for the rest, before any engine starts.

The models are tiny, random and saved here with transformers' own config and model classes
(the tiny demo model's tokenizer beside them); every norm weight is randomised so that a
norm mapped to the wrong place (or dropped) changes the numbers. The reference numbers are
the transformers forward of the same folder.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

from or1.core.errors import ConfigError
from or1.core.registry import get_registry
from tests.conftest import MOVING, read_jsonl, run_cli
from tests.test_cli import assert_one_line_error

LOGP_TOL = 1e-4
"""Largest |log-prob| and entropy difference allowed between the Megatron learner (fp32) and
the transformers forward: the same sums in a different order (measured: ~1e-6)."""

VLLM_TOL = 1e-3
"""vLLM's sampling log-probs against the transformers forward, fp32 (as tests/test_vllm_rollout.py)."""

SMALL = {
    "vocab_size": None,  # the tokenizer's
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_hidden_layers": 2,
    "max_position_embeddings": 256,
}


def _tokenizer_ids(tiny_model: Path) -> dict[str, Any]:
    c = json.loads((tiny_model / "config.json").read_text())
    return {k: c[k] for k in ("vocab_size", "eos_token_id", "pad_token_id")}


def save_model(folder: Path, tiny_model: Path, family: str, **settings: Any) -> Path:
    """A random tiny ``family`` (qwen2 | qwen3 | llama) model saved at ``folder`` with the
    tiny model's tokenizer and generation config; ``settings`` override the config."""
    import transformers
    from transformers import AutoTokenizer

    classes = {
        "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
        "qwen3": ("Qwen3Config", "Qwen3ForCausalLM"),
        "llama": ("LlamaConfig", "LlamaForCausalLM"),
    }
    config_cls, model_cls = (getattr(transformers, n) for n in classes[family])
    values = SMALL | _tokenizer_ids(tiny_model) | settings
    config = config_cls(architectures=[classes[family][1]], **values)
    torch.manual_seed(0)
    model = model_cls(config).float()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):  # 1 at init: make every norm matter
                p.copy_(1 + 0.5 * torch.randn(p.shape, generator=g))
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(folder)
    shutil.copy(tiny_model / "generation_config.json", folder / "generation_config.json")
    return folder


QWEN3 = {"num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32}
"""head_dim 32 where hidden_size / heads is 16: Megatron must take kv_channels from head_dim."""

LLAMA3 = {
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "tie_word_embeddings": True,  # as Llama 3.2 1B / 3B
    "max_position_embeddings": 16384,  # above the scaling's original 8192, as in Llama 3.1
    "rope_parameters": {
        "rope_type": "llama3",
        "rope_theta": 10000.0,
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 8192,
    },
}
"""A Llama 3.1 / 3.2 style config: llama3 RoPE scaling (theta 10000 so that, at head size 32,
some frequencies are scaled and some smoothed), tied embeddings, grouped-query attention."""

HEAD_DIM_16 = {"num_attention_heads": 4, "num_key_value_heads": 2}  # 64 / 4 = 16


@pytest.fixture(scope="module")
def models(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {
        "qwen3": save_model(root / "qwen3", tiny_model, "qwen3", **QWEN3),
        "llama": save_model(root / "llama", tiny_model, "llama", **LLAMA3),
        "qwen2_hd16": save_model(root / "qwen2_hd16", tiny_model, "qwen2", **HEAD_DIM_16),
    }


def hf_logprobs(
    folder: Path, ids: torch.Tensor, lengths: list[int], temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, T]`` log-probs and entropies from the transformers forward of each row alone
    (position 0 and padding 0), the learners' convention."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    logp, ent = torch.zeros(ids.shape), torch.zeros(ids.shape)
    with torch.no_grad():
        for i, n in enumerate(lengths):
            logits = model(input_ids=ids[i : i + 1, :n]).logits[0, :-1].float() / temperature
            all_logp = torch.log_softmax(logits, dim=-1)
            logp[i, 1:n] = all_logp.gather(-1, ids[i, 1:n, None]).squeeze(-1)
            ent[i, 1:n] = -(all_logp.exp() * all_logp).sum(-1)
    return logp, ent


# ---------------------------------------------------------------------------- the checks


def vllm_cfg() -> Any:
    from or1_plugins.rollout.vllm.engine import VLLMRolloutConfig

    return OmegaConf.structured(VLLMRolloutConfig())


def megatron_cfg(**settings: Any) -> Any:
    from or1_plugins.learner.megatron.learner import MegatronLearnerConfig

    return OmegaConf.structured(MegatronLearnerConfig(**settings))


def config_of(family: str, **settings: Any) -> Any:
    import transformers

    cls = {"qwen2": "Qwen2Config", "qwen3": "Qwen3Config", "llama": "LlamaConfig"}[family]
    arch = {"qwen2": "Qwen2ForCausalLM", "qwen3": "Qwen3ForCausalLM", "llama": "LlamaForCausalLM"}
    values = SMALL | {"vocab_size": 64} | settings
    return getattr(transformers, cls)(architectures=[arch[family]], **values)


def error_of(check: Any, *args: Any) -> str:
    with pytest.raises(ConfigError) as info:
        check(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_vllm_on_cpu_refuses_head_dimension_16_and_takes_32():
    from or1_plugins.rollout.vllm.engine import VLLMEngine

    where = Path("/models/m")
    message = error_of(VLLMEngine.check_model, vllm_cfg(), config_of("qwen2", **HEAD_DIM_16), where)
    assert message.startswith("model.path=/models/m: Qwen2ForCausalLM has head dimension 16")
    assert "32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512" in message
    # Qwen3's head_dim (32) is what counts, not hidden_size / heads (16)
    VLLMEngine.check_model(vllm_cfg(), config_of("qwen3", **QWEN3), where)
    VLLMEngine.check_model(vllm_cfg(), config_of("llama", **LLAMA3), where)  # 64 / 2


def test_vllm_on_gpu_takes_every_head_dimension(monkeypatch):
    """On a GPU vLLM falls back to FlexAttention for head sizes its faster backends lack."""
    from or1_plugins.rollout.vllm.engine import VLLMEngine

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    VLLMEngine.check_model(vllm_cfg(), config_of("qwen2", **HEAD_DIM_16), Path("/m"))


@pytest.mark.parametrize(
    ("family", "settings", "needle"),
    [
        ("qwen3", {**QWEN3, "attention_bias": True}, "Qwen3ForCausalLM with attention_bias"),
        ("qwen2", {"num_attention_heads": 2, "use_sliding_window": True}, "use_sliding_window"),
        (
            "llama",
            {**LLAMA3, "rope_parameters": {**LLAMA3["rope_parameters"], "high_freq_factor": 2.0}},
            "llama3 rope scaling other than",
        ),
        (
            "llama",
            {"num_attention_heads": 2, "rope_parameters": {"rope_type": "yarn", "factor": 4.0}},
            "rope scaling 'yarn'",
        ),
    ],
)
def test_megatron_refuses_settings_it_does_not_reproduce(family, settings, needle):
    from or1_plugins.learner.megatron.learner import MegatronLearner

    message = error_of(
        MegatronLearner.check_model, megatron_cfg(), config_of(family, **settings), Path("/m")
    )
    assert message.startswith("model.path=/m: ") and needle in message
    assert "not supported by learner=megatron" in message


def test_megatron_refuses_unmapped_architectures_and_tp_that_does_not_divide(tmp_path):
    from transformers import MistralConfig

    from or1_plugins.learner.megatron.learner import MegatronLearner

    mistral = MistralConfig(architectures=["MistralForCausalLM"], **SMALL | {"vocab_size": 64})
    message = error_of(MegatronLearner.check_model, megatron_cfg(), mistral, tmp_path)
    assert message == (
        f"model.path={tmp_path}: architecture MistralForCausalLM cannot be mapped to Megatron "
        "by learner=megatron (supported: Qwen2ForCausalLM, Qwen3ForCausalLM, LlamaForCausalLM; "
        "learner=torch trains any transformers causal LM)"
    )
    qwen3 = config_of("qwen3", **QWEN3 | {"num_key_value_heads": 1})
    message = error_of(
        MegatronLearner.check_model, megatron_cfg(tensor_parallel_size=2), qwen3, tmp_path
    )
    assert "tensor_parallel_size=2 does not divide the model's key/value heads (1)" in message
    # a supported config, but no safetensors in the folder
    message = error_of(MegatronLearner.check_model, megatron_cfg(), config_of("qwen3"), tmp_path)
    assert (
        message
        == f"model.path={tmp_path}: no *.safetensors weights (learner=megatron reads no *.bin)"
    )


def test_reference_engines_take_any_transformers_causal_lm(tmp_path):
    from transformers import MistralConfig, T5Config

    from or1_plugins.learner.torch.learner import TorchLearner
    from or1_plugins.rollout.transformers.engine import TransformersEngine

    for engine in (TorchLearner, TransformersEngine):
        for config in (config_of("qwen3", **QWEN3), config_of("qwen2", **HEAD_DIM_16)):
            engine.check_model(None, config, tmp_path)
        engine.check_model(None, MistralConfig(), tmp_path)
        message = error_of(engine.check_model, None, T5Config(architectures=["T5Model"]), tmp_path)
        assert message.startswith(f"model.path={tmp_path}: architecture T5Model (model_type 't5')")


def test_check_model_support_reads_the_folder_and_asks_each_engine(models):
    """What or1-train calls before building anything: the configured rollout engine's and
    learner's checks on the folder's config.json."""
    from or1.launch.model_support import check_model_support

    cfg = OmegaConf.create({"rollout": vllm_cfg(), "learner": megatron_cfg()})
    registry = get_registry()
    check_model_support(cfg, registry, models["qwen3"])
    check_model_support(cfg, registry, models["llama"])
    with pytest.raises(ConfigError, match="head dimension 16, which vLLM's CPU attention"):
        check_model_support(cfg, registry, models["qwen2_hd16"])
    check_model_support(cfg, registry, models["qwen2_hd16"], groups=("learner",))


# ---------------------------------------------------------------------------- the mapping


def _hf_shapes(arch: Any) -> dict[str, tuple[int, ...]]:
    h, d, nh, ng = arch.hidden_size, arch.head_dim, arch.num_heads, arch.num_kv_heads
    shapes: dict[str, tuple[int, ...]] = {
        "model.embed_tokens.weight": (arch.vocab_size, h),
        "model.norm.weight": (h,),
        "lm_head.weight": (arch.vocab_size, h),
    }
    for i in range(arch.num_layers):
        p = f"model.layers.{i}."
        shapes |= {
            p + "input_layernorm.weight": (h,),
            p + "post_attention_layernorm.weight": (h,),
            p + "self_attn.q_proj.weight": (nh * d, h),
            p + "self_attn.k_proj.weight": (ng * d, h),
            p + "self_attn.v_proj.weight": (ng * d, h),
            p + "self_attn.q_norm.weight": (d,),
            p + "self_attn.k_norm.weight": (d,),
            p + "self_attn.o_proj.weight": (h, nh * d),
            p + "mlp.gate_proj.weight": (arch.ffn_hidden_size, h),
            p + "mlp.up_proj.weight": (arch.ffn_hidden_size, h),
            p + "mlp.down_proj.weight": (h, arch.ffn_hidden_size),
        }
    return shapes


def test_qwen3_mapping_round_trips_exactly_through_tp_shards():
    """Pure tensors: a Qwen3 config with head_dim 32 != hidden / heads, 3 query heads per KV
    group, an odd vocabulary (padded at TP=2): HF -> Megatron -> TP shards -> HF is exact,
    the q/k norms replicated on every rank and no QKV bias."""
    from or1_plugins.learner.megatron.hf_mapping import (
        architecture,
        hf_to_megatron,
        megatron_names,
        megatron_to_hf,
        shard,
        tp_layout,
        unshard,
    )

    cfg = config_of("qwen3", num_attention_heads=6, num_key_value_heads=2, head_dim=32)
    cfg.vocab_size = 63
    arch = architecture(cfg, 2)
    assert (arch.head_dim, arch.qk_norm, arch.qkv_bias, arch.padded_vocab_size) == (
        32,
        True,
        False,
        64,
    )
    g = torch.Generator().manual_seed(0)
    hf = {k: torch.randn(s, generator=g) for k, s in _hf_shapes(arch).items()}
    names = megatron_names(arch)
    assert "decoder.layers.1.self_attention.q_layernorm.weight" in names
    assert tp_layout("decoder.layers.1.self_attention.k_layernorm.weight") is None
    back = {}
    for name in names:
        full = hf_to_megatron(name, hf.__getitem__, arch)
        pieces = [shard(full, tp_layout(name), r, 2) for r in range(2)]
        if tp_layout(name) is None:
            assert all(p is full for p in pieces)
        back |= dict(megatron_to_hf(name, unshard(pieces, tp_layout(name)), arch))
    assert set(back) == set(hf)
    for k, t in hf.items():
        assert torch.equal(back[k], t), k


# ---------------------------------------------------------------------- the real engines


@pytest.fixture(scope="module")
def megatron_runs(models, tmp_path_factory) -> dict[str, dict]:
    from tests.megatron_jobs import launch

    out = tmp_path_factory.mktemp("megatron-models")
    lengths = [7, 12, 5, 9]
    return {
        "qwen3": launch(
            "forward_and_weights", 2, out, model_path=str(models["qwen3"]), tp=2, lengths=lengths
        ),
        "llama": launch(
            "forward_and_weights", 1, out, model_path=str(models["llama"]), tp=1, lengths=lengths
        ),
    }


@pytest.mark.slow
@pytest.mark.parametrize("family", ["qwen3", "llama"])
def test_megatron_forward_equals_transformers(megatron_runs, models, family):
    """Qwen3 at TP=2 (q/k norms, head_dim 32, padded vocabulary) and Llama 3 at TP=1 (llama3
    RoPE scaling, tied embeddings): the learner's log-probs and entropies equal the
    transformers forward of the same folder to LOGP_TOL."""
    run = megatron_runs[family]
    batch = run["batch"]
    logp, ent = hf_logprobs(models[family], batch.input_ids, batch.seq_lens, batch.temperature)
    assert float(logp.abs().max()) > 1.0  # real numbers, not an empty comparison
    assert float((run["logp"] - logp).abs().max()) <= LOGP_TOL
    assert float((run["ent"] - ent).abs().max()) <= LOGP_TOL


@pytest.mark.slow
@pytest.mark.parametrize("family", ["qwen3", "llama"])
def test_megatron_weights_round_trip_exactly(megatron_runs, models, family):
    """HF safetensors -> Megatron (TP shards) -> gathered HF names: bit-identical, every
    tensor present (the Llama's tied lm_head under its own name too)."""
    from safetensors.torch import load_file

    hf = load_file(str(models[family] / "model.safetensors"))
    weights = megatron_runs[family]["weights"]
    if family == "llama":
        assert "lm_head.weight" not in hf  # tied: saved once
        hf["lm_head.weight"] = hf["model.embed_tokens.weight"]
    else:
        assert "model.layers.1.self_attn.q_norm.weight" in hf
    assert set(weights) == set(hf)
    for key, tensor in hf.items():
        assert torch.equal(weights[key], tensor.float()), key


@pytest.mark.slow
def test_megatron_llama3_rope_frequencies_equal_transformers(megatron_runs, models):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(models["llama"], dtype=torch.float32)
    expect = hf.model.rotary_emb.inv_freq.float()
    got = megatron_runs["llama"]["inv_freq"].float()
    plain = 1.0 / (10000.0 ** (torch.arange(0, 32, 2).float() / 32))
    assert not torch.allclose(expect, plain)  # the scaling changes some frequencies
    torch.testing.assert_close(got, expect, rtol=1e-6, atol=0.0)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("vllm") is None, reason="vLLM is not installed")
def test_vllm_generates_from_qwen3_with_the_transformers_logprobs(models, tmp_path):
    """vLLM (CPU) serves the tiny Qwen3: n samples per prompt, and the sampling log-prob of
    every generated token equals the transformers forward's; and the head sizes or1 checks
    are the installed vLLM's."""
    from vllm.v1.attention.backends.cpu_attn import CPUAttentionBackend

    from or1.core.interfaces import BuildContext
    from or1.core.types import SamplingParams
    from or1_plugins.rollout.vllm.engine import VLLMRolloutConfig
    from or1_plugins.rollout.vllm.limits import CPU_HEAD_SIZES

    assert list(CPU_HEAD_SIZES) == list(CPUAttentionBackend.get_supported_head_sizes())
    folder = models["qwen3"]
    cfg = OmegaConf.structured(VLLMRolloutConfig(num_threads=1))
    ctx = BuildContext(run_dir=tmp_path, model_path=folder, cache_dir=tmp_path, seed=0, config=None)
    engine = get_registry().build("rollout", cfg, ctx)
    try:
        prompts = [[5, 9, 14, 3], [7, 7, 20]]
        groups = engine.generate(
            prompts, SamplingParams(n=3, temperature=1.0, max_tokens=12, seed=3)
        )
    finally:
        engine.close()
    assert [len(g) for g in groups] == [3, 3]
    for prompt, group in zip(prompts, groups, strict=True):
        for c in group:
            ids = torch.tensor([prompt + list(c.response_ids)])
            logp, _ = hf_logprobs(folder, ids, [ids.shape[1]], 1.0)
            expect = logp[0, len(prompt) :]
            got = torch.tensor(c.logprobs, dtype=torch.float32)
            assert got.shape == expect.shape and len(got) >= 1
            assert float((got - expect).abs().max()) <= VLLM_TOL


# ------------------------------------------------------------------ the README's command


def vllm_logged(text: str) -> bool:
    """Whether vLLM wrote anything: its log lines carry ``[file.py:line]``, its warnings name
    its package path."""
    return bool(re.search(r"\[[a-z_]+\.py:\d+\]|site-packages/vllm", text))


def own_model_command(model: Path, data: tuple[list[Path], list[Path]]) -> list[str]:
    """The README's "your own model" command (model, train and held-out files, steps, save
    interval), made small enough for a 2-core CPU."""
    train, val = data
    return [
        f"model.path={model}",
        f"data.path={train[0]}",
        f"data.val_path={val[0]}",
        "trainer.total_steps=3",
        "trainer.save_every=20",
        "trainer.prompts_per_step=4",
        "trainer.group_size=4",
        "trainer.num_threads=1",
        "stages=single",  # the recipe's 8K-32K stages outgrow these models' 256-token context
        "stages.stages.0.max_response_length=24",
        "eval.max_problems=8",
        "eval.k=2",
        "logger=[jsonl]",
    ]


@pytest.fixture(scope="module")
def tiny_data(cache_dir) -> tuple[list[Path], list[Path]]:
    from or1_plugins.sources.tiny.task import TinyArithDataConfig, prepare_tiny_arith

    train, val = prepare_tiny_arith(OmegaConf.structured(TinyArithDataConfig()), cache_dir)
    return [Path(p) for p in train], [Path(p) for p in val]


@pytest.mark.slow
def test_own_model_command_trains_qwen3_on_the_default_engines(models, tiny_data, tmp_path):
    """vLLM samples, Megatron trains 3 steps, the weights sync back. A random model earns no
    reward, so every group would be filtered out: ``MOVING`` keeps them all and turns the
    entropy bonus on, so every step moves the weights."""
    from safetensors.torch import load_file

    out = tmp_path / "run"
    args = [f"hydra.run.dir={out}", *own_model_command(models["qwen3"], tiny_data), *MOVING]
    proc = run_cli("or1-train", args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [r for r in read_jsonl(out / "metrics.jsonl") if "loss/pg" in r]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert all(r["filter/groups_kept"] == 4 and r["train/skipped"] == 0 for r in rows)
    # the adaptive coefficient starts at 0 and grows by entropy.delta: steps 2 and 3 move
    assert [r["entropy/coef"] for r in rows] == pytest.approx([0.0, 0.05, 0.1])
    assert rows[0]["grad_norm"] == 0.0 and rows[1]["grad_norm"] > 0 and rows[2]["grad_norm"] > 0
    config = (out / ".hydra" / "config.yaml").read_text()
    assert "name: vllm" in config and "name: megatron" in config  # the default engines
    before = load_file(str(models["qwen3"] / "model.safetensors"))
    after = load_file(str(out / "final_model" / "model.safetensors"))
    assert set(after) == set(before)
    moved = max(float((after[k].float() - before[k]).abs().max()) for k in before)
    assert moved > 1e-3, moved
    print("qwen3 step 3:", json.dumps(rows[-1], sort_keys=True))


@pytest.mark.slow
def test_own_model_command_with_head_dimension_16_stops_at_once(models, tiny_data, tmp_path):
    """Before vLLM is imported: one line naming the folder, the architecture and the limit,
    exit status 2, no traceback, no vLLM log."""
    folder = models["qwen2_hd16"]
    start = time.perf_counter()
    proc = run_cli("or1-train", own_model_command(folder, tiny_data), tmp_path)
    took = time.perf_counter() - start
    line = assert_one_line_error(
        proc,
        f"model.path={folder}",
        "Qwen2ForCausalLM",
        "head dimension 16",
        "vLLM's CPU attention",
    )
    assert proc.returncode == 2, line
    assert not vllm_logged(proc.stdout + proc.stderr)
    print(f"head-dim-16 run stopped after {took:.1f} s: {line}")
    # or1-eval checks its rollout engine the same way
    proc = run_cli("or1-eval", [f"model.path={folder}", "eval.max_problems=2"], tmp_path)
    assert_one_line_error(proc, f"model.path={folder}", "head dimension 16")


def test_own_model_command_with_stages_longer_than_the_context_stops_at_once(
    models, tiny_data, tmp_path
):
    # without stages=single the recipe keeps its 16K and 32K stages: more than the model's
    # 256 positions, refused before any engine starts (not at the first validation)
    folder = models["qwen3"]
    command = [a for a in own_model_command(folder, tiny_data) if a != "stages=single"]
    proc = run_cli("or1-train", command, tmp_path)
    assert_one_line_error(
        proc, "stages.stages[1].max_response_length=16384", "context of 256 tokens", str(folder)
    )
    assert "experiment=recipe" in proc.stdout  # what the command line implied, said on stdout
    assert not vllm_logged(proc.stdout + proc.stderr)


def test_check_model_support_leaves_a_folder_without_config_to_resolve_model(tmp_path):
    from or1.launch.model_support import check_model_support

    cfg = OmegaConf.create({"rollout": vllm_cfg(), "learner": megatron_cfg()})
    check_model_support(cfg, get_registry(), tmp_path / "missing")
    (tmp_path / "config.json").write_text("{not json")
    check_model_support(cfg, get_registry(), tmp_path)


def test_the_early_model_check_runs_the_chosen_components_checks(tmp_path):
    # before Hydra or torch: the head-dimension limit of vLLM on CPU, from config.json alone
    import subprocess
    import sys

    from or1.core.errors import ConfigError
    from or1.launch.model_support import early_model_check, gpu_visible

    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps({"architectures": ["Qwen2ForCausalLM"], "hidden_size": 64, **HEAD_DIM_16})
    )
    defaults = {"rollout": "vllm", "learner": "megatron"}
    if not gpu_visible():
        with pytest.raises(ConfigError, match="head dimension 16"):
            early_model_check([f"model.path={folder}"], defaults)
    early_model_check([f"model.path={folder}", "rollout=transformers"], defaults)  # no limit
    early_model_check(["-m", f"model.path={folder}"], defaults)  # a sweep: left to later
    early_model_check([f"model.path={tmp_path / 'none'}"], defaults)  # no config.json: later
    code = (
        "import sys; from or1.launch.model_support import early_model_check; "
        f"early_model_check(['model.path={folder}', 'rollout=transformers'], {defaults!r}); "
        "assert not {'torch', 'hydra', 'transformers'} & set(sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
