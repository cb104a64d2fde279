"""The Megatron learner's memory, by calculation (``MegatronLearner.memory_estimate``).

Counted per GPU from what this learner actually allocates (measured on CPU with autograd's
saved-tensor hooks and peak RSS: ``benchmarks/memory_plan.py --validate``, docs/memory-plan.md).
``P`` is the parameters one rank holds (layers and vocabulary rows cut by TP, norms whole),
``p`` the bytes of the precision (fp32 4, bf16 2), ``t`` the TP size:

* weights ``P p``; the ``main_grad`` buffer of megatron.core's DDP ``P x 4`` (fp32, or
  ``grad_reduce_in_fp32=false`` with bf16: ``P x 2``), resident for the whole run;
* AdamW: two fp32 moments ``8 P`` plus, for bf16, fp32 master weights ``4 P``; divided by
  ``DP x CP`` with ``distributed_optimizer``;
* activations of the stage's largest micro-batch (``T`` tokens on this rank: the token budget
  when packed, ``rows x longest`` when padded; ``/ CP``). Per layer and token, saved for the
  backward: two RMSNorms ``2 (8h + 4)`` (torch keeps the fp32 input and normalised input
  whatever the precision), the QKV and FC1 inputs ``2 h p``, the gated MLP ``5 f/t p``
  (FC1 output, SiLU output, linear half, FC2 input), RoPE's cos/sin ``4 d p`` per position,
  and the attention: ``scores`` kind (Megatron's local ``DotProductAttention``, padded rows)
  keeps q, k and v (GQA-expanded) and its output ``4 a/t d p`` plus per row the softmax
  ``a/t x w^2 x 4`` (fp32; bf16 also keeps its bf16 copy, ``+2``); ``sdpa`` kind (packed:
  one fused SDPA per document, no ``w^2`` term) keeps q, k, v, its output and the
  concatenated output ``5 a/t d p`` and the log-sum-exp ``4 a/t``;
* the step's peak: all layers' saved tensors plus the larger of (a) the final norm and output
  layer input and the log-probs / entropy of vocabulary-sharded logits, ``5`` fp32 copies of
  ``[T, V/t]`` (logits, logits / T, z, exp z and z exp z are alive together; nothing is
  chunked), and (b) the last layer's MLP backward ``T (2 f/t + 2 h) p``. ``recompute=full``
  keeps each layer's input ``T h p`` instead and adds one layer recomputed; ``selective``
  keeps the core attention's inputs instead of its internals and recomputes one layer's.

While the engine generates, weights and gradient buffer stay on the GPU, and so does the
optimiser state unless ``offload_optimizer`` keeps it in host memory between updates (then it
is on the GPU only for the update, after the activations are freed); at TP > 1 the weight sync into the engine adds a bucket of local shards and
its TP gathered copies, ``(TP + 1) x sync_bucket_mib`` (counted as the rollout phase's
activations).
"""

from __future__ import annotations

from typing import Any

from or1.core.errors import ConfigError
from or1.launch.memory_plan import MemoryEstimate, MemoryQuery, ModelShape

LOGIT_COPIES = 5
"""fp32 ``[tokens, vocab / TP]`` tensors alive together at the logits' peak
(:mod:`or1_plugins.learner.megatron.vocab_parallel`: the logits, ``logits / T``, ``z``, ``exp z`` and
the product ``exp z * z``; measured 5.0 on CPU in fp32 and bf16)."""

LEVERS = (
    ("packing", True),
    ("recompute", "full"),
    ("precision", "bf16"),
    ("distributed_optimizer", True),
    ("grad_reduce_in_fp32", False),
    ("offload_optimizer", True),
)
"""Settings that lower this learner's memory, in the order the plan tries them."""


def settings(cfg: Any) -> dict[str, Any]:
    """The keys the estimate reads (defaults of the schema where a key is absent)."""
    precision = getattr(cfg, "precision", None)
    if precision is None:  # before learner.precision existed: learner.dtype=float32
        precision = "bf16" if getattr(cfg, "dtype", "float32") == "bfloat16" else "fp32"
    return {
        "tp": int(getattr(cfg, "tensor_parallel_size", 1)),
        "cp": int(getattr(cfg, "context_parallel_size", 1)),
        "precision": str(precision),
        "distributed_optimizer": bool(getattr(cfg, "distributed_optimizer", False)),
        "grad_reduce_in_fp32": bool(getattr(cfg, "grad_reduce_in_fp32", True)),
        "recompute": str(getattr(cfg, "recompute", "none")),
        "packing": bool(getattr(cfg, "packing", False)),
        "pad_vocab": bool(getattr(cfg, "pad_vocab", True)),
        "offload_optimizer": bool(getattr(cfg, "offload_optimizer", False)),
    }


def padded_vocab(shape: ModelShape, tp: int, pad: bool = True) -> int:
    return -(-shape.vocab_size // tp) * tp if pad else shape.vocab_size


def check_layout(shape: ModelShape, tp: int, cp: int, pad_vocab: bool = True) -> None:
    """TP must divide heads, KV heads, FFN width (and the vocabulary without padding)."""
    for what, n in (
        ("attention heads", shape.num_heads),
        ("KV heads", shape.num_kv_heads),
        ("FFN width", shape.ffn_hidden_size),
        ("vocabulary", padded_vocab(shape, tp, pad_vocab)),
    ):
        if n % tp:
            raise ConfigError(
                f"learner.tensor_parallel_size={tp} does not divide the model's {n} {what}"
            )
    if cp < 1:
        raise ConfigError(f"learner.context_parallel_size={cp} must be >= 1")


def local_params(shape: ModelShape, tp: int, pad_vocab: bool = True) -> int:
    """Parameters on one tensor-parallel rank: layers' matrices and QKV bias cut by TP, norms
    whole, embedding and output layer by vocabulary rows."""
    h, d = shape.hidden_size, shape.head_dim
    qkv = (shape.num_heads + 2 * shape.num_kv_heads) * d
    per_layer = (
        (h * qkv + (qkv if shape.qkv_bias else 0) + shape.num_heads * d * h) // tp
        + 3 * h * shape.ffn_hidden_size // tp
        + 2 * h
    )
    vocab = padded_vocab(shape, tp, pad_vocab) // tp * h
    return shape.num_layers * per_layer + vocab * (1 if shape.tie_embeddings else 2) + h


def micro_batch(s: dict[str, Any], query: MemoryQuery) -> tuple[int, int, int]:
    """``(rows, width, tokens)`` of the stage's largest micro-batch on one rank: packed, the
    token budget (at least one longest sequence, at most the rank's share) as one row;
    padded, ``budget // longest`` rows (at least one) of the longest sequence. Tokens per
    context-parallel rank."""
    stage, lay = query.stage, query.layout
    longest = stage.max_sequence_length
    share = max(1, -(-stage.sequences // max(1, lay.data_parallel)))
    budget = stage.micro_batch_tokens
    if s["packing"]:
        tokens = max(longest, min(budget, share * longest)) if budget > 0 else share * longest
        tokens = -(-tokens // lay.context_parallel)
        return 1, tokens, tokens
    rows = min(share, max(1, budget // longest)) if budget > 0 else share
    return rows, longest, rows * longest


def activations(shape: ModelShape, s: dict[str, Any], query: MemoryQuery) -> tuple[int, str]:
    """Peak activation bytes of one micro-batch's forward + backward on one rank, and a note."""
    tp = query.layout.tensor_parallel
    p = 2 if s["precision"] == "bf16" else 4
    h, d, f = shape.hidden_size, shape.head_dim, shape.ffn_hidden_size // tp
    a, g = shape.num_heads // tp, shape.num_kv_heads // tp
    rows, width, tokens = micro_batch(s, query)
    kind = "sdpa" if s["packing"] else "scores"
    # per token, every layer
    norms, inputs, mlp = 2 * (8 * h + 4), 2 * h * p, 5 * f * p
    q = a * d * p
    if a > g:  # GQA: k and v repeated to every query head (new tensors)
        k = v = a * d * p
    else:  # k is RoPE's output; v a view that keeps the whole QKV output alive
        k, v = g * d * p, (a + 2 * g) * d * p
    if kind == "scores":
        attn_tok = q + k + v + a * d * p
        score_bytes = 4 + (2 if p == 2 else 0)
        attn_rows = rows * a * width * width * score_bytes
    else:
        attn_tok = q + k + v + 2 * a * d * p + 4 * a
        attn_rows = 0
    rope = 4 * d * p * width  # cos / sin of both q and k, per position
    layer = tokens * (norms + inputs + mlp + attn_tok) + attn_rows + rope
    if s["recompute"] == "selective":  # the core attention's inputs, its internals recomputed
        kept = q + g * d * p + (a + 2 * g) * d * p + a * d * p
        kept_layer = tokens * (norms + inputs + mlp + kept) + rope
    else:
        kept_layer = layer
    vocab = padded_vocab(shape, tp, s["pad_vocab"]) // tp
    head = tokens * (8 * h + 4 + h * p) + LOGIT_COPIES * tokens * vocab * 4
    backward = tokens * (2 * f + 2 * h) * p
    L = shape.num_layers
    if s["recompute"] == "full":
        kept_all = L * tokens * h * p
        peak = kept_all + max(head, layer + backward)
    elif s["recompute"] == "selective":
        peak = L * kept_layer + max(head, backward, layer - kept_layer + backward)
    else:
        peak = L * layer + max(head, backward)
    if kind == "scores":
        peak += width * width  # the causal mask, shared by every layer
        if query.device == "cuda":  # Megatron's global buffer for the scores, kept allocated
            peak += rows * a * width * width * p
    how = (
        f"activations of a packed micro-batch of {tokens} tokens per rank (one SDPA per document)"
        if kind == "sdpa"
        else f"activations of a padded micro-batch of {rows} x {width} tokens ({width}^2 attention "
        "scores per head)"
    )
    return int(peak), how


def estimate(cfg: Any, query: MemoryQuery) -> MemoryEstimate:
    """``MegatronLearner.memory_estimate``: see the module docstring for the arithmetic."""
    s = settings(cfg)
    shape, lay = query.shape, query.layout
    tp, cp, dp = lay.tensor_parallel, lay.context_parallel, lay.data_parallel
    check_layout(shape, tp, cp, s["pad_vocab"])
    if s["precision"] not in ("fp32", "bf16"):
        raise ConfigError(f"learner.precision={s['precision']} is not one of fp32, bf16")
    if s["recompute"] not in ("none", "selective", "full"):
        raise ConfigError(f"learner.recompute={s['recompute']} is not one of none, selective, full")
    if cp > 1 and not s["packing"]:
        raise ConfigError(f"learner.context_parallel_size={cp} needs learner.packing=true")
    p = 2 if s["precision"] == "bf16" else 4
    n = local_params(shape, tp, s["pad_vocab"])
    shards = dp * cp if s["distributed_optimizer"] else 1
    resident = {
        "weights": n * p,
        "gradients": n * (4 if p == 4 or s["grad_reduce_in_fp32"] else 2),
        "optimizer": -(-n * (8 + (4 if p == 2 else 0)) // shards),
    }
    peak, how = activations(shape, s, query)
    # weight sync at TP > 1: a bucket of local shards and its TP gathered copies
    bucket = min(int(getattr(cfg, "sync_bucket_mib", 512)) << 20, n * p)
    sync = (tp + 1) * bucket if tp > 1 else 0
    levers = [(k, v) for k, v in LEVERS if s[k] != v]
    notes = [
        f"megatron: logits at the peak are {LOGIT_COPIES} fp32 copies of [tokens, vocab/TP] "
        "(log-probs and entropy are not chunked); weights and gradient buffer stay on the GPU "
        "while the engine generates, plus the weight sync's gather buffers at TP > 1",
    ]
    rollout = {**resident, "activations": sync}
    learner = {**resident, "activations": peak}
    if s["offload_optimizer"]:  # host memory between updates; on the GPU for the update only,
        opt = resident["optimizer"]  # when the activations are freed
        rollout["optimizer"] = 0
        learner = {**resident, "optimizer": 0, "activations": max(peak, opt)}
        notes.append(
            f"megatron: offload_optimizer: the optimiser state ({opt / 2**30:.1f} GiB) is in host "
            "memory except during the update, after the activations are freed: the learner "
            "step counts the larger of the two as activations"
        )
    else:
        notes.append("megatron: the optimiser state stays on the GPU while the engine generates")
    return MemoryEstimate(
        phases={"rollout": rollout, "learner": learner},
        levers=levers,
        notes=notes,
        detail=[how],
    )


def learner_step_bytes(cfg: Any, arch: Any, tokens: int, longest: int, dp: int) -> int:
    """The plan's learner-step total on one GPU (weights, gradient buffer, optimiser state and
    the activations' peak) for one packed micro-batch of ``tokens`` tokens of documents up to
    ``longest`` at ``dp`` data-parallel ranks, for a learner of config ``cfg`` and
    :class:`~or1_plugins.learner.megatron.hf_mapping.Arch` ``arch`` (``benchmarks/gpu_check.py``
    compares it with ``torch.cuda.max_memory_allocated``)."""
    from or1.launch.memory_plan import ParallelLayout, StageLoad

    shape = ModelShape(
        name="arch",
        num_layers=arch.num_layers,
        hidden_size=arch.hidden_size,
        num_heads=arch.num_heads,
        num_kv_heads=arch.num_kv_heads,
        head_dim=arch.head_dim,
        ffn_hidden_size=arch.ffn_hidden_size,
        vocab_size=arch.vocab_size,
        tie_embeddings=arch.tie_embeddings,
        qkv_bias=arch.qkv_bias,
    )
    s = settings(cfg)
    layout = ParallelLayout(s["tp"], s["cp"], dp, 1)
    stage = StageLoad("check", 0, longest, tokens, tokens * dp)
    phase = estimate(cfg, MemoryQuery(shape, layout, stage, 0, "cuda")).phases["learner"]
    return sum(phase.values())
