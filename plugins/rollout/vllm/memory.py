"""The vLLM engine's GPU memory, by calculation (``VLLMEngine.memory_estimate``).

vLLM claims ``gpu_memory_utilization x`` the GPU's memory at start and splits it: the weights
(``dtype``: bf16 on GPU by default, cut by the engine's ``tensor_parallel_size``), the peak
activations of its profiling forward (``max_num_batched_tokens`` tokens through one layer's
QKV, MLP and the sampler's fp32 logits of ``max_num_seqs`` sequences), and the KV cache, which
is the rest: ``2 x layers x KV heads per GPU x head_dim x 2 bytes`` per token (KV heads are
replicated when the engine's TP exceeds them). The engine must hold at least one sequence of
the stage's full length. While the learner trains, a sleeping engine (``enable_sleep_mode``,
levels 1 and 2) leaves nothing on the GPU; otherwise it keeps all it claimed.
"""

from __future__ import annotations

from typing import Any

from or1.core.errors import ConfigError
from or1.launch.memory_plan import GIB, MemoryEstimate, MemoryQuery

DTYPE_BYTES = {"auto": 2, "bfloat16": 2, "float16": 2, "float32": 4}


def defaults(gpu_memory: int) -> tuple[int, int]:
    """vLLM's offline (``LLM``) defaults: ``(max_num_batched_tokens, max_num_seqs)``."""
    return (16384, 1024) if gpu_memory >= 70 * GIB else (8192, 256)


def estimate(cfg: Any, query: MemoryQuery) -> MemoryEstimate:
    shape, stage = query.shape, query.stage
    r = int(query.layout.rollout_tensor_parallel)
    if shape.num_heads % r:
        raise ConfigError(
            f"rollout.tensor_parallel_size={r} does not divide the model's {shape.num_heads} heads"
        )
    dtype = str(getattr(cfg, "dtype", "auto"))
    if dtype not in DTYPE_BYTES:
        raise ConfigError(f"rollout.dtype={dtype} is not one of {', '.join(DTYPE_BYTES)}")
    b = DTYPE_BYTES[dtype]
    util = float(getattr(cfg, "gpu_memory_utilization", 0.5))
    if not 0.0 < util <= 1.0:
        raise ConfigError(f"rollout.gpu_memory_utilization={util} must be in (0, 1]")
    h, d, f, v = shape.hidden_size, shape.head_dim, shape.ffn_hidden_size, shape.vocab_size
    weights = shape.num_params() * b // r
    tokens, seqs = defaults(query.gpu_memory)
    seqs = int(getattr(cfg, "max_num_seqs", None) or seqs)
    qkv = (shape.num_heads + 2 * shape.num_kv_heads) * d
    act = tokens * (4 * h + qkv // r + 3 * f // r) * b + seqs * (v // r) * 4 * 2
    budget = int(util * query.gpu_memory)
    kv = budget - weights - act
    kv_heads = max(1, shape.num_kv_heads // r)
    per_token = 2 * shape.num_layers * kv_heads * d * 2
    longest = stage.max_sequence_length
    problems = []
    if kv < per_token * longest:
        problems.append(
            f"gpu_memory_utilization={util:g}: {kv / GIB:.1f} GiB of KV cache per GPU (after "
            f"{weights / GIB:.1f} GiB of weights at tensor_parallel_size={r}) holds no "
            f"{longest}-token sequence ({per_token * longest / GIB:.1f} GiB)"
        )
    awake = {"weights": weights, "activations": act, "kv_cache": max(kv, 0)}
    asleep = bool(getattr(cfg, "enable_sleep_mode", False))
    held = awake if not asleep else {}
    levers = [] if asleep else [("enable_sleep_mode", True)]
    notes = [
        f"vllm: claims gpu_memory_utilization={util:g} of each GPU for weights, activations and "
        "KV cache"
        + (
            "; asleep during the learner step"
            if asleep
            else ", and keeps it during the learner step (enable_sleep_mode=false)"
        )
    ]
    capacity = max(kv, 0) // (per_token * longest)
    detail = [f"KV cache for {capacity} sequences of {longest} tokens at once"]
    return MemoryEstimate(
        phases={"rollout": awake, "learner": held},
        problems=problems,
        levers=levers,
        notes=notes,
        detail=detail,
        capacity=capacity,
    )
