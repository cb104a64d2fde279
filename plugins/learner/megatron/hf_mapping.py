"""Hugging Face Qwen2 / Qwen2.5, Qwen3 (dense) and Llama 3 <-> Megatron-core ``GPTModel``
(local or TE layer spec).

megatron-core ships no converter, and the maintained bridges (``mbridge``,
``megatron-bridge``) need Transformer Engine or a GPU (``docs/learner-megatron.md`` says what
they did here), so this module is the mapping, in three parts:

* :func:`architecture` reads an HF config into an :class:`Arch` (or raises a ConfigError naming
  what cannot be mapped, and checks the tensor-parallel size divides heads, KV groups, FFN
  width and vocabulary) before any process group or model exists;
* :func:`hf_to_megatron` / :func:`megatron_to_hf` convert *full* (unsharded) tensors by name;
* :func:`shard` / :func:`gather` cut a full tensor into this rank's tensor-parallel shard and
  put shards back together, from the partition attributes Megatron sets on each parameter.

Layouts (full tensors, ``nh`` heads, ``ng`` KV groups, head size ``d``):

* ``linear_qkv``: rows grouped per KV group, ``[q heads of group g; k_g; v_g]`` for g in
  0..ng-1 (HF keeps separate q/k/v projections); TP cuts whole groups;
* ``linear_fc1`` = ``[gate; up]``; TP uses partition stride 2 (each rank holds
  ``[gate_r; up_r]``);
* Qwen3's per-head q/k RMSNorms (``self_attn.q_norm`` / ``k_norm``, ``[d]``, applied before
  RoPE) are Megatron's ``qk_layernorm`` (``self_attention.q_layernorm`` / ``k_layernorm``),
  replicated; Qwen3 has no QKV bias and its head size ``d`` is ``head_dim``, not
  ``hidden_size / nh``;
* ``linear_proj`` / ``linear_fc2`` are row-parallel (dim 1); embeddings and the output layer
  are vocab-parallel (dim 0); norms are replicated.
* With ``pad_vocab`` the vocabulary is padded with zero rows to a multiple of the TP size
  (as Megatron-LM does); the padded ids are masked out of every softmax and dropped on export.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from or1.core.errors import ConfigError

SUPPORTED = {"Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3", "LlamaForCausalLM": "llama"}
"""HF model class -> family (Qwen2.5 and DeepSeek-R1-Distill-Qwen are ``Qwen2ForCausalLM``,
Llama 3.x and DeepSeek-R1-Distill-Llama ``LlamaForCausalLM``)."""

LLAMA3_ROPE = {
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}
"""The Llama 3.1 / 3.2 RoPE scaling constants that megatron-core's ``rope_scaling`` fixes
(only the factor is a parameter there); a ``llama3`` scaling with other values is refused."""


@dataclass(frozen=True)
class Arch:
    """What the mapping and the Megatron config need from an HF config."""

    model_type: str
    num_layers: int
    hidden_size: int
    ffn_hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    padded_vocab_size: int
    max_positions: int
    rope_theta: float
    norm_eps: float
    qkv_bias: bool
    tie_embeddings: bool
    qk_norm: bool = False
    rope_scaling_factor: float | None = None  # Llama 3.1 / 3.2 (rope_type llama3)


def _rope(cfg: Any) -> tuple[str, float, dict[str, Any]]:
    """RoPE type, base and the scaling parameters (transformers 5 ``rope_parameters`` or the
    older ``rope_scaling`` / ``rope_theta``)."""
    params = dict(getattr(cfg, "rope_parameters", None) or {})
    scaling = dict(getattr(cfg, "rope_scaling", None) or {})
    kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    theta = params.get("rope_theta", getattr(cfg, "rope_theta", 10000.0))
    return str(kind), float(theta), scaling | params


def _llama3_factor(scaling: dict[str, Any]) -> float | None:
    """The factor of a ``llama3`` RoPE scaling that megatron-core reproduces, else None."""
    for key, value in LLAMA3_ROPE.items():
        if key not in scaling or float(scaling[key]) != value:
            return None
    return float(scaling["factor"]) if "factor" in scaling else None


def architecture(cfg: Any, tp: int, where: str = "model", pad_vocab: bool = True) -> Arch:
    """The :class:`Arch` of HF config ``cfg`` for tensor-parallel size ``tp``; a ConfigError
    (prefixed ``where``) for an architecture or setting the mapping does not cover, or a ``tp``
    that does not divide the attention heads, KV groups, FFN width or (without ``pad_vocab``)
    the vocabulary."""
    archs = list(getattr(cfg, "architectures", None) or [])
    name = archs[0] if archs else getattr(cfg, "model_type", "?")
    if name not in SUPPORTED:
        raise ConfigError(
            f"{where}: architecture {name} cannot be mapped to Megatron by learner=megatron "
            f"(supported: {', '.join(SUPPORTED)}; learner=torch trains any transformers causal LM)"
        )
    kind, theta, scaling = _rope(cfg)
    problems = []
    llama3 = _llama3_factor(scaling) if kind == "llama3" else None
    if kind == "llama3" and llama3 is None:
        fixed = "/".join(f"{k}={v:g}" for k, v in LLAMA3_ROPE.items())
        problems.append(f"llama3 rope scaling other than {fixed} (megatron-core's)")
    elif kind not in ("default", "llama3"):
        problems.append(f"rope scaling '{kind}'")
    if getattr(cfg, "hidden_act", "silu") != "silu":
        problems.append(f"hidden_act={cfg.hidden_act}")
    if getattr(cfg, "use_sliding_window", False) or "sliding_attention" in (
        getattr(cfg, "layer_types", None) or []
    ):
        problems.append("use_sliding_window=true")
    if getattr(cfg, "attention_bias", False) or getattr(cfg, "mlp_bias", False):
        problems.append("attention_bias/mlp_bias")
    if problems:
        raise ConfigError(
            f"{where}: {name} with {', '.join(problems)} is not supported by learner=megatron"
        )
    heads = cfg.num_attention_heads
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    family = SUPPORTED[name]
    arch = Arch(
        model_type=family,
        num_layers=cfg.num_hidden_layers,
        hidden_size=cfg.hidden_size,
        ffn_hidden_size=cfg.intermediate_size,
        num_heads=heads,
        num_kv_heads=kv,
        head_dim=getattr(cfg, "head_dim", None) or cfg.hidden_size // heads,
        vocab_size=cfg.vocab_size,
        padded_vocab_size=-(-cfg.vocab_size // tp) * tp if pad_vocab else cfg.vocab_size,
        max_positions=cfg.max_position_embeddings,
        rope_theta=theta,
        norm_eps=cfg.rms_norm_eps,
        qkv_bias=family == "qwen2",  # Qwen2's q/k/v always have one; Qwen3's and Llama's not
        tie_embeddings=bool(getattr(cfg, "tie_word_embeddings", False)),
        qk_norm=family == "qwen3",
        rope_scaling_factor=llama3,
    )
    for what, value in [
        ("attention heads", arch.num_heads),
        ("key/value heads", arch.num_kv_heads),
        ("intermediate_size", arch.ffn_hidden_size),
        ("vocab_size", arch.padded_vocab_size),
    ]:
        if value % tp:
            hint = " (or set learner.pad_vocab=true)" if what == "vocab_size" else ""
            raise ConfigError(
                f"learner.tensor_parallel_size={tp} does not divide the model's {what} ({value}){hint}"
            )
    return arch


def megatron_names(arch: Arch, te: bool = False) -> list[str]:
    """Megatron parameter names of the model (local spec, or TE spec with fused norms)."""
    names = ["embedding.word_embeddings.weight"]
    for i in range(arch.num_layers):
        p = f"decoder.layers.{i}."
        names += [
            p + ("self_attention.linear_qkv.layer_norm_weight" if te else "input_layernorm.weight"),
            p + "self_attention.linear_qkv.weight",
            *([p + "self_attention.linear_qkv.bias"] if arch.qkv_bias else []),
            *(
                [p + "self_attention.q_layernorm.weight", p + "self_attention.k_layernorm.weight"]
                if arch.qk_norm
                else []
            ),
            p + "self_attention.linear_proj.weight",
            p + ("mlp.linear_fc1.layer_norm_weight" if te else "pre_mlp_layernorm.weight"),
            p + "mlp.linear_fc1.weight",
            p + "mlp.linear_fc2.weight",
        ]
    names.append("decoder.final_layernorm.weight")
    if not arch.tie_embeddings:
        names.append("output_layer.weight")
    return names


_SIMPLE = {  # megatron suffix (within a layer) -> HF suffix
    "input_layernorm.weight": "input_layernorm.weight",
    "self_attention.linear_qkv.layer_norm_weight": "input_layernorm.weight",
    "self_attention.linear_proj.weight": "self_attn.o_proj.weight",
    "self_attention.q_layernorm.weight": "self_attn.q_norm.weight",
    "self_attention.k_layernorm.weight": "self_attn.k_norm.weight",
    "pre_mlp_layernorm.weight": "post_attention_layernorm.weight",
    "mlp.linear_fc1.layer_norm_weight": "post_attention_layernorm.weight",
    "mlp.linear_fc2.weight": "mlp.down_proj.weight",
}
_TOP = {
    "embedding.word_embeddings.weight": "model.embed_tokens.weight",
    "decoder.final_layernorm.weight": "model.norm.weight",
    "output_layer.weight": "lm_head.weight",
}


def _layer(name: str) -> tuple[int, str]:
    parts = name.split(".", 3)  # decoder.layers.<i>.<rest>
    return int(parts[2]), parts[3]


def pad_vocab_rows(t: torch.Tensor, arch: Arch) -> torch.Tensor:
    """``t`` (vocabulary along dim 0, padded or not) cut or zero-padded to the padded size."""
    t = t[: arch.vocab_size]
    extra = arch.padded_vocab_size - arch.vocab_size
    return torch.cat([t, t.new_zeros(extra, *t.shape[1:])]) if extra else t


VOCAB_PARAMS = ("embedding.word_embeddings.weight", "output_layer.weight")


def hf_to_megatron(name: str, get: Callable[[str], torch.Tensor], arch: Arch) -> torch.Tensor:
    """The full Megatron tensor ``name``, built from HF tensors fetched by ``get(hf_name)``."""
    if name in VOCAB_PARAMS:
        return pad_vocab_rows(get(_TOP[name]), arch)
    if name in _TOP:
        return get(_TOP[name])
    i, rest = _layer(name)
    hf = f"model.layers.{i}."
    if rest in _SIMPLE:
        return get(hf + _SIMPLE[rest])
    if rest.startswith("self_attention.linear_qkv."):
        kind = rest.rsplit(".", 1)[1]  # weight | bias
        ng, d = arch.num_kv_heads, arch.head_dim
        q, k, v = (get(f"{hf}self_attn.{x}_proj.{kind}") for x in "qkv")
        tail = q.shape[1:]
        grouped = [q.reshape(ng, -1, *tail), k.reshape(ng, d, *tail), v.reshape(ng, d, *tail)]
        return torch.cat(grouped, dim=1).reshape(-1, *tail)
    if rest == "mlp.linear_fc1.weight":
        return torch.cat([get(hf + "mlp.gate_proj.weight"), get(hf + "mlp.up_proj.weight")], dim=0)
    raise KeyError(f"no Hugging Face source for Megatron parameter {name}")


def megatron_to_hf(name: str, full: torch.Tensor, arch: Arch) -> Iterator[tuple[str, torch.Tensor]]:
    """The HF ``(name, tensor)`` pairs held by the full Megatron tensor ``name`` (views)."""
    if name in VOCAB_PARAMS:
        full = full[: arch.vocab_size]
    if name in _TOP:
        yield _TOP[name], full
        if name == "embedding.word_embeddings.weight" and arch.tie_embeddings:
            yield "lm_head.weight", full
        return
    i, rest = _layer(name)
    hf = f"model.layers.{i}."
    if rest in _SIMPLE:
        yield hf + _SIMPLE[rest], full
    elif rest.startswith("self_attention.linear_qkv."):
        kind = rest.rsplit(".", 1)[1]
        ng, d = arch.num_kv_heads, arch.head_dim
        per_group = arch.num_heads // ng * d
        grouped = full.reshape(ng, per_group + 2 * d, *full.shape[1:])
        q, k, v = grouped.split([per_group, d, d], dim=1)
        for x, t in zip("qkv", (q, k, v), strict=True):
            yield f"{hf}self_attn.{x}_proj.{kind}", t.reshape(-1, *full.shape[1:])
    elif rest == "mlp.linear_fc1.weight":
        gate, up = full.chunk(2, dim=0)
        yield hf + "mlp.gate_proj.weight", gate
        yield hf + "mlp.up_proj.weight", up
    else:
        raise KeyError(f"no Hugging Face name for Megatron parameter {name}")


def tp_layout(name: str) -> tuple[int, int] | None:
    """``(partition dim, stride)`` of Megatron parameter ``name`` under tensor parallelism,
    None when replicated. (Megatron tags parameters with this only when it initialises them;
    the learner loads weights instead, so it tags them from here.)"""
    if name in VOCAB_PARAMS or ".linear_qkv.weight" in name or ".linear_qkv.bias" in name:
        return 0, 1
    if name.endswith(("linear_fc1.weight", "linear_fc1.bias")):
        return 0, 2
    if name.endswith(("linear_proj.weight", "linear_fc2.weight")):
        return 1, 1
    return None


def shard(full: torch.Tensor, layout: tuple[int, int] | None, rank: int, tp: int) -> torch.Tensor:
    """Rank ``rank``'s shard of ``full`` for a parameter of ``layout`` (:func:`tp_layout`):
    with stride ``s`` the tensor is cut in ``tp * s`` chunks and rank r takes chunks
    r, r + tp, ...; a replicated parameter (layout None) is ``full`` itself."""
    if layout is None or tp == 1:
        return full
    dim, stride = layout
    chunks = torch.chunk(full, tp * stride, dim=dim)
    return torch.cat(chunks[rank::tp], dim=dim)


def unshard(pieces: list[torch.Tensor], layout: tuple[int, int] | None) -> torch.Tensor:
    """The full tensor from every rank's shard, in rank order (inverse of :func:`shard`)."""
    if layout is None or len(pieces) == 1:
        return pieces[0]
    dim, stride = layout
    per_rank = [torch.chunk(p, stride, dim=dim) for p in pieces]
    return torch.cat([per_rank[r][s] for s in range(stride) for r in range(len(pieces))], dim=dim)


def gather(
    local: torch.Tensor, layout: tuple[int, int] | None, group: Any, tp: int
) -> torch.Tensor:
    """:func:`unshard` of every tensor-parallel rank's ``local``; a collective over ``group``
    (every rank of it must call it) unless the parameter is replicated."""
    if layout is None or tp == 1:
        return local.detach()
    import torch.distributed as dist

    pieces = [torch.empty_like(local) for _ in range(tp)]
    dist.all_gather(pieces, local.detach().contiguous(), group=group)
    return unshard(pieces, layout)
