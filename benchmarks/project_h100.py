"""A projection, by calculation (nothing here runs on a GPU), of the OR1-7B preset's step
time on 8 and 64 H100s, from published hardware and engine figures and stated assumptions.

    .venv/bin/python benchmarks/project_h100.py [--mean-fraction 0.6 --decode-efficiency 0.6]

Model: DeepSeek-R1-Distill-Qwen-7B (Qwen2: 28 layers, hidden 3584, 28 heads, 4 KV heads of
128, 7.62e9 parameters). Preset (conf/experiment/or1_7b.yaml): 256 prompts x 16 samples per
step, stages of 8k / 16k / 32k response tokens, Megatron TP=4 learner, one optimiser step per
batch. Per step:

* rollout: decode is memory-bound. One decode step of an engine reads the weights once and the
  KV cache of every running sequence: ``(W + C * ctx * kv) / tp / (BW * eff)`` seconds for
  ``C`` tokens, ``C`` bounded by the KV memory left next to the weights (colocated with the
  learner: ``gpu_memory_utilization`` 0.5). The step also waits for its longest response
  decoded nearly alone: ``max_len`` decode steps at ``C = 1`` (the long tail).
* train: ``6 * P * tokens`` plus causal attention ``6 * layers * hidden * ctx`` per token, over
  ``n_gpus * peak * mfu``; the separate old-log-prob pass (``2 * P * tokens``) is kept since a
  7B batch spans many micro-batches.
* weight sync: every rank's engine loads the full weights from the learner shards of its own
  TP group, gathered bucket by bucket over NVLink, in memory (how or1 syncs under torchrun).

Three configurations: the presets' bf16 learner (fp32 master weights, at Megatron's published
MFU, bf16 sync) with ``rollout.tensor_parallel_size`` R = 1 (the preset's: one vLLM engine per
GPU) and R = 8 (one engine per 8-GPU node); and R = 8 with ``learner.precision=fp32``, whose
matmuls run at the H100's FP32 rate with PyTorch's default ``allow_tf32=False`` and whose sync
moves fp32 tensors. Change the assumptions with the flags;
the printed table is what docs/benchmarks.md shows.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

GB = 1e9
LAYERS, HIDDEN, KV_HEADS, HEAD_DIM, PARAMS = 28, 3584, 4, 128, 7.62e9
HBM_BYTES, HBM_BW = 80 * GB, 3.35e12  # H100 SXM: 80 GB HBM3 at 3.35 TB/s
PEAK = {"fp32": 67e12, "bf16": 989e12}  # H100 SXM dense FLOP/s (FP32 without tensor cores)
PROMPTS, GROUP, PROMPT_TOKENS = 256, 16, 300
STAGES = {"8k": 8192, "16k": 16384, "32k": 32768}


@dataclass
class Setup:
    name: str
    engines: int  # vLLM engines sampling in parallel
    tp: int  # GPUs per engine
    learner_dtype: str
    mfu: float
    sync_bytes_per_s: float  # weight sync: bytes of weights per second


def rollout_seconds(a: argparse.Namespace, s: Setup, max_len: int) -> tuple[float, float]:
    """(rollout seconds, tokens/s per GPU at full batch) for one step."""
    responses = PROMPTS * GROUP
    mean_len = a.mean_fraction * max_len
    kv_per_token = 2 * LAYERS * KV_HEADS * HEAD_DIM * 2  # K and V, bf16
    weights = PARAMS * 2
    avg_ctx = PROMPT_TOKENS + mean_len / 2  # a running sequence is half-way on average
    kv_room = a.gpu_memory_utilization * HBM_BYTES * s.tp - weights
    concurrency = min(responses / s.engines, kv_room / (avg_ctx * kv_per_token))
    step = (weights + concurrency * avg_ctx * kv_per_token) / s.tp / (HBM_BW * a.decode_efficiency)
    engine_tok_s = concurrency / step
    bulk = responses * mean_len / (s.engines * engine_tok_s)
    tail_step = (
        (weights + (PROMPT_TOKENS + max_len) * kv_per_token) / s.tp / (HBM_BW * a.decode_efficiency)
    )
    tail = max_len * max(tail_step, a.min_decode_step_s)
    return max(bulk, tail), engine_tok_s / s.tp


def train_seconds(a: argparse.Namespace, s: Setup, n_gpus: int, max_len: int) -> float:
    tokens = PROMPTS * GROUP * (PROMPT_TOKENS + a.mean_fraction * max_len)
    ctx = PROMPT_TOKENS + a.mean_fraction * max_len
    per_token = 6 * PARAMS + 6 * LAYERS * HIDDEN * ctx  # forward + backward, causal attention
    old_logprob_pass = 2 * PARAMS + 2 * LAYERS * HIDDEN * ctx
    return tokens * (per_token + old_logprob_pass) / (n_gpus * PEAK[s.learner_dtype] * s.mfu)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--mean-fraction", type=float, default=0.6, help="mean response / max length")
    p.add_argument("--decode-efficiency", type=float, default=0.6, help="share of HBM bandwidth")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.5)
    p.add_argument("--min-decode-step-s", type=float, default=0.008, help="launch/sync floor")
    p.add_argument("--mfu-fp32", type=float, default=0.6, help="of the FP32 peak, as built")
    p.add_argument("--mfu-bf16", type=float, default=0.4, help="Megatron-core: up to 0.47")
    a = p.parse_args()

    print(
        "Projection by calculation (no GPU run): OR1-7B preset, 256 prompts x 16, H100 SXM; "
        f"mean response = {a.mean_fraction} x max, decode at {a.decode_efficiency:.0%} of HBM "
        f"bandwidth, KV room at gpu_memory_utilization {a.gpu_memory_utilization}"
    )
    print(
        "| GPUs | setup | stage | rollout (s) | decode tok/s per GPU | train (s) | weight sync (s) "
        "| step (s) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for n in (8, 64):
        setups = [
            Setup("bf16 learner, R=1", n, 1, "bf16", a.mfu_bf16, 50 * GB),  # NVLink gather + load
            Setup("bf16 learner, R=8", n // 8, 8, "bf16", a.mfu_bf16, 50 * GB),
            Setup("fp32 learner, R=8", n // 8, 8, "fp32", a.mfu_fp32, 50 * GB),
        ]
        for s in setups:
            for stage, max_len in STAGES.items():
                roll, per_gpu = rollout_seconds(a, s, max_len)
                train = train_seconds(a, s, n, max_len)
                sync = PARAMS * (4 if s.learner_dtype == "fp32" else 2) / s.sync_bytes_per_s
                print(
                    f"| {n} | {s.name} | {stage} | {roll:.0f} | {per_gpu:.0f} | {train:.0f} | "
                    f"{sync:.1f} | {roll + train + sync:.0f} |"
                )


if __name__ == "__main__":
    main()
