"""Scale-out on this machine: the same workload in one process and in two (torchrun, SPMD).

    .venv/bin/python benchmarks/scaling.py [--steps 6 --prompts 32 --n 8 --max-tokens 200]

Runs ``or1-train`` with the default engines (vLLM rollout, Megatron learner) twice on the same
global batch: once as one process, once as ``torchrun --nproc-per-node 2`` (TP = 1, so two
rollout engines and DP = 2), one torch thread per process. The model is a random-weight
Qwen2 of ~12M parameters (hidden 512, 4 layers, the tiny model's tokenizer), built into the
cache on the first run. An untrained model answers with long-tailed response lengths (mean
about a third of ``--max-tokens``, the longest at the cap), the longest-response workload the
project has until the long chain-of-thought task exists; with ``filter=none`` and the entropy
bonus always on, every step trains and syncs weights.

Reported per launch (medians over the steps after the first two): generated tokens/s of the
rollout (all engines' tokens over the slowest engine's time), step time, weight-sync time and
bytes. The weight-sync figure comes from a third launch (two processes, a few short steps) on
a larger random Qwen2 (``--sync-hidden`` 1024, 4 layers: ~47M parameters), where per-call costs
no longer dominate; the plain in-memory copy of the same bytes (``torch`` ``copy_`` of tensors
of that model's shapes, one thread) is measured here. Last line:
``dp_rollout_speedup=<x> step_speedup=<y> weight_sync_vs_memcpy=<z>``: two engines' rollout
throughput over one's, one process's step time over two's, and the weight-sync time over the
plain copy.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

BIN = Path(sys.executable).parent


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--prompts", type=int, default=32, help="prompts per step (whole launch)")
    p.add_argument("--n", type=int, default=8, help="samples per prompt")
    p.add_argument("--max-tokens", type=int, default=200)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--sync-hidden", type=int, default=1024)
    p.add_argument(
        "--cache-dir", default=os.environ.get("OR1_CACHE_DIR", str(Path.home() / ".cache" / "or1"))
    )
    return p.parse_args()


def make_model(args: argparse.Namespace) -> Path:
    """A random Qwen2 of ``args.hidden`` x ``args.layers`` with the tiny model's tokenizer
    (cached by its shape)."""
    from omegaconf import OmegaConf
    from transformers import AutoConfig, AutoModelForCausalLM

    from or1_plugins.sources.tiny.model import TinyModelConfig, prepare_tiny_model

    folder = Path(args.cache_dir) / "models" / f"scaling-h{args.hidden}-l{args.layers}"
    if (folder / "model.safetensors").is_file():
        return folder
    tiny_cfg = OmegaConf.structured(TinyModelConfig(warmup_max_steps=0, num_threads=1))
    tiny = Path(prepare_tiny_model(tiny_cfg, Path(args.cache_dir)))
    config = AutoConfig.from_pretrained(tiny)
    config.hidden_size = args.hidden
    config.intermediate_size = args.hidden * 11 // 4
    config.num_hidden_layers = args.layers
    config.layer_types = ["full_attention"] * args.layers
    config.num_attention_heads = args.hidden // 64
    config.num_key_value_heads = max(1, args.hidden // 128)
    config.head_dim = 64
    config.max_position_embeddings = 1024
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".scaling-"))
    model.save_pretrained(tmp)
    for f in tiny.iterdir():
        if f.name not in ("model.safetensors", "config.json", "or1_tiny_build.json"):
            shutil.copy(f, tmp / f.name)
    os.replace(tmp, folder)
    return folder


def launch(args: argparse.Namespace, model: Path, procs: int, run_dir: Path) -> list[dict]:
    """``or1-train`` on ``procs`` processes; the metrics of its training steps."""
    overrides = [
        f"model.path={model}",
        "learner=megatron",
        "rollout=vllm",
        f"trainer.prompts_per_step={args.prompts}",
        f"trainer.group_size={args.n}",
        f"trainer.total_steps={args.steps}",
        f"stages.stages.0.max_response_length={args.max_tokens}",
        "trainer.num_threads=1",
        "trainer.eval_at_start=false",
        "trainer.eval_every=0",
        "eval.max_problems=1",
        "eval.k=1",
        "eval.max_tokens=1",
        "trainer.export_final=false",
        "trainer.save_every=0",
        "filter=none",
        "entropy.target=100",
        "entropy.coef_max=0.01",
        "logger=[jsonl]",
        f"hydra.run.dir={run_dir}",
    ]
    prefix = (
        [str(BIN / "torchrun"), "--standalone", f"--nproc-per-node={procs}"] if procs > 1 else []
    )
    command = [*prefix, str(BIN / "or1-train"), *overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OR1_CACHE_DIR": args.cache_dir}
    t0 = time.time()
    proc = subprocess.run(command, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{procs}-process launch failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
    print(f"  {procs} process(es): {time.time() - t0:.0f} s in all", flush=True)
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [m for m in map(json.loads, lines) if "timing/step_s" in m]


def summarise(steps: list[dict], args: argparse.Namespace) -> dict[str, float]:
    steady = steps[2:] or steps
    samples = args.prompts * args.n

    def tokens_per_s(m: dict) -> float:
        return m["response_length/mean"] * samples / m["rollout/engine_time_max_s"]

    return {
        "rollout_tokens_per_s": statistics.median(tokens_per_s(m) for m in steady),
        "step_s": statistics.median(m["timing/step_s"] for m in steady),
        "rollout_s": statistics.median(m["rollout/engine_time_max_s"] for m in steady),
        "train_s": statistics.median(m["timing/train_s"] for m in steady),
        "weight_sync_s": statistics.median(m["weight_sync/s"] for m in steady),
        "weight_sync_bytes": steady[0]["weight_sync/bytes"],
        "engines": steady[0]["rollout/engines"],
        "dp_token_imbalance": statistics.median(
            m.get("learner/dp_token_imbalance", 1.0) for m in steady
        ),
    }


def memcpy_seconds(model: Path, reps: int = 7) -> float:
    """A plain one-thread copy of tensors of the model's shapes (fp32), median of ``reps``."""
    from safetensors.torch import load_file

    torch.set_num_threads(1)
    src = [t.float().contiguous() for t in load_file(str(model / "model.safetensors")).values()]
    dst = [torch.empty_like(t) for t in src]
    times = []
    for _ in range(reps + 1):
        t0 = time.perf_counter()
        for d, s in zip(dst, src, strict=True):
            d.copy_(s)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def main() -> None:
    args = parse_args()
    model = make_model(args)
    from safetensors.torch import load_file

    params = sum(t.numel() for t in load_file(str(model / "model.safetensors")).values())
    print(
        f"model: {params / 1e6:.1f}M parameters (hidden {args.hidden}, {args.layers} layers); {args.prompts} prompts x {args.n} samples x "
        f"{args.max_tokens} tokens per step, {args.steps} steps, 1 thread per process"
    )
    results = {}
    sync_args = argparse.Namespace(
        **{**vars(args), "hidden": args.sync_hidden, "prompts": 2, "n": 2, "max_tokens": 16}
    )
    sync_model = make_model(sync_args)
    with tempfile.TemporaryDirectory(prefix="or1-scaling-") as tmp:
        for procs in (1, 2):
            results[procs] = summarise(launch(args, model, procs, Path(tmp) / f"p{procs}"), args)
        sync = summarise(launch(sync_args, sync_model, 2, Path(tmp) / "sync"), sync_args)
    copy_s = memcpy_seconds(sync_model)
    for procs, r in results.items():
        print(
            f"{procs} process(es), {r['engines']:.0f} engine(s): rollout {r['rollout_tokens_per_s']:.0f} "
            f"tok/s ({r['rollout_s']:.2f} s), train {r['train_s']:.2f} s, step {r['step_s']:.2f} s, "
            f"weight sync {1000 * r['weight_sync_s']:.1f} ms for {r['weight_sync_bytes'] / 2**20:.1f} MiB, "
            f"dp token imbalance {r['dp_token_imbalance']:.3f}"
        )
    print(
        f"weight sync of the {sync_model.name} model (2 processes): "
        f"{1000 * sync['weight_sync_s']:.1f} ms for {sync['weight_sync_bytes'] / 2**20:.1f} MiB; "
        f"a plain in-memory copy of the same bytes: {1000 * copy_s:.1f} ms"
    )
    one, two = results[1], results[2]
    print(
        f"dp_rollout_speedup={two['rollout_tokens_per_s'] / one['rollout_tokens_per_s']:.2f} "
        f"step_speedup={one['step_s'] / two['step_s']:.2f} "
        f"weight_sync_vs_memcpy={sync['weight_sync_s'] / copy_s:.2f}"
    )


if __name__ == "__main__":
    main()
