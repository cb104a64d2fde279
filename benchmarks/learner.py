"""Learner throughput: a training step of the Megatron learner at TP=1 vs the reference
PyTorch learner, and Megatron TP=2 (two processes, gloo on CPU) vs TP=1, in one run.

    .venv/bin/python benchmarks/learner.py [--sequences 64 --length 96 --reps 5 --threads 1]
    .venv/bin/python benchmarks/learner.py --lengths longtail [--sequences 32 --length 2048]

Each learner runs in its own spawned process(es) with ``--threads`` torch threads per rank,
on the same tiny Qwen2 (the demo's architecture, untrained weights) and the same random batch
(``--sequences`` rows of 60-100% of ``--length`` tokens, one micro-batch). Tokens/s counts the
batch's unpadded tokens per second of wall time of ``train_step`` (forward, backward, clipping,
AdamW), median of ``--reps`` steps after one warm-up step. On a 2-core CPU TP=2 is for
correctness, not speed. The last line is ``ratio_vs_reference=<x> ratio_tp2_vs_tp1=<y>``.

``--lengths longtail`` measures what packing buys on RL-like lengths instead: most responses
short, a few run to the limit (log-normal, median 15% of ``--length``, clipped to
[16, ``--length``], the longest row at ``--length``), micro-batches of ``--micro-batch-tokens``
unpadded tokens (default 4 x ``--length``), and the Megatron learner at TP=1 with packed
micro-batches (one row of sequences end to end, per-document attention) against padded ones
(rows padded to the micro-batch's longest, explicit causal mask). Last line:
``packed_vs_padded=<x>`` (tokens/s ratio; the goal is >= 1.5).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time
from pathlib import Path

import torch


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sequences", type=int, default=None, help="64 (uniform), 32 (longtail)")
    p.add_argument("--length", type=int, default=None, help="96 (uniform), 2048 (longtail)")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lengths", choices=["uniform", "longtail"], default="uniform")
    p.add_argument("--micro-batch-tokens", type=int, default=0)
    p.add_argument(
        "--cache-dir", default=os.environ.get("OR1_CACHE_DIR", str(Path.home() / ".cache" / "or1"))
    )
    a = p.parse_args()
    longtail = a.lengths == "longtail"
    a.sequences = a.sequences or (32 if longtail else 64)
    a.length = a.length or (2048 if longtail else 96)
    return a


def make_batch(sequences: int, length: int, vocab: int, lengths: str = "uniform", budget: int = 0):
    from or1.types import TrainBatch

    g = torch.Generator().manual_seed(0)
    if lengths == "longtail":
        draw = torch.exp(torch.randn(sequences, generator=g) + torch.log(torch.tensor(0.15)))
        lens = (draw * length).clamp(16, length).long().tolist()
        lens[sequences // 2] = length  # a response that ran to the limit
    else:
        lens = torch.randint(int(0.6 * length), length + 1, (sequences,), generator=g).tolist()
    ids = torch.zeros(sequences, length, dtype=torch.long)
    attn = torch.zeros_like(ids)
    resp = torch.zeros(sequences, length)
    for i, n in enumerate(lens):
        ids[i, :n] = torch.randint(3, vocab, (n,), generator=g)
        attn[i, :n] = 1
        resp[i, 16:n] = 1.0
    adv = resp * torch.randn(sequences, 1, generator=g)
    return TrainBatch(ids, attn, resp, adv, lens, temperature=1.0, micro_batch_tokens=budget)


def worker(
    rank: int, world: int, port: int, kind: str, args: argparse.Namespace, model: str, out: str
) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(args.threads)
    from omegaconf import OmegaConf

    from or1 import distributed
    from or1.interfaces import BuildContext
    from or1_plugins.or1_loss import OR1Loss, OR1LossConfig

    distributed.init(300)
    ctx = BuildContext(Path(model), Path(model), Path(model), 0, None)
    if kind == "reference":
        from or1_plugins.torch_learner.learner import TorchLearner, TorchLearnerConfig

        learner = TorchLearner(OmegaConf.structured(TorchLearnerConfig(lr=1e-4)), ctx)
    else:
        from or1_plugins.megatron.learner import MegatronLearner, MegatronLearnerConfig

        cfg = MegatronLearnerConfig(
            lr=1e-4, tensor_parallel_size=world, packing=kind != "megatron-padded"
        )
        learner = MegatronLearner(OmegaConf.structured(cfg), ctx)  # TP: every rank, one batch
    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(model).vocab_size
    budget = args.micro_batch_tokens or (4 * args.length if args.lengths == "longtail" else 0)
    batch = make_batch(args.sequences, args.length, vocab, args.lengths, budget)
    batch.old_logprobs, _ = learner.compute_logprobs(batch)
    loss = OR1Loss(OmegaConf.structured(OR1LossConfig()))
    learner.train_step(batch, loss, 0.0)  # warm-up
    times = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        learner.train_step(batch, loss, 0.0)
        times.append(time.perf_counter() - t0)
    learner.close()
    if rank == 0:  # TP: every rank trains the same batch (its shards)
        Path(out).write_text(f"{sum(batch.seq_lens) / statistics.median(times)}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(kind: str, world: int, args: argparse.Namespace, model: str) -> float:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "tokens_per_s")
        mp.start_processes(
            worker,
            args=(world, free_port(), kind, args, model, out),
            nprocs=world,
            start_method="spawn",
        )
        return float(Path(out).read_text())


def main() -> None:
    args = parse_args()
    from omegaconf import OmegaConf

    from or1_plugins.tiny.model import TinyModelConfig, prepare_tiny_model

    cfg = OmegaConf.structured(TinyModelConfig(warmup_max_steps=0, num_threads=args.threads))
    model = str(prepare_tiny_model(cfg, Path(args.cache_dir)))
    print(
        f"batch: {args.sequences} sequences up to {args.length} tokens ({args.lengths}); "
        f"{args.threads} thread(s) per rank"
    )
    results = {}
    if args.lengths == "longtail":
        lens = make_batch(args.sequences, args.length, 8, "longtail").seq_lens
        print(
            f"lengths: mean {statistics.mean(lens):.0f}, median {statistics.median(lens):.0f}, max {max(lens)}"
        )
        for name, kind in (("megatron packed", "megatron"), ("megatron padded", "megatron-padded")):
            results[name] = measure(kind, 1, args, model)
            print(f"{name:20s} {results[name]:10.0f} tokens/s")
        print(f"packed_vs_padded={results['megatron packed'] / results['megatron padded']:.3f}")
        return
    for name, kind, world in (
        ("reference (torch)", "reference", 1),
        ("megatron TP=1", "megatron", 1),
        ("megatron TP=2", "megatron", 2),
    ):
        results[name] = measure(kind, world, args, model)
        print(f"{name:20s} {results[name]:10.0f} tokens/s")
    ratio_ref = results["megatron TP=1"] / results["reference (torch)"]
    ratio_tp = results["megatron TP=2"] / results["megatron TP=1"]
    print(f"ratio_vs_reference={ratio_ref:.3f} ratio_tp2_vs_tp1={ratio_tp:.3f}")


if __name__ == "__main__":
    main()
