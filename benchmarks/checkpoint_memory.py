"""Rank 0's memory while the Megatron learner saves a checkpoint at TP = 2 (two processes).

    .venv/bin/python benchmarks/checkpoint_memory.py [--tiny]

Builds the learner at tensor-parallel size 2 in two spawned processes (gloo, one thread
each), takes one AdamW step (so the optimiser has its moments), then on every rank measures
the resident memory (VmRSS, sampled every millisecond by a thread) while it saves: first the
sharded checkpoint (``save_sharded``: each rank writes its own shards), then, for contrast,
the full-state path (``state_dict``: every tensor gathered to rank 0). Reported per rank: its
shard (parameters + AdamW moments) and the peak RSS above the level before the save. The model
is the random ~13M-parameter Qwen2 of ``benchmarks/scaling.py`` (``--tiny``: the 0.4M tiny
model, whose shards are below the RSS noise). Last line:
``sharded_peak_over_shard=<x> full_peak_over_shard=<y>`` for rank 0 (goal: x <= 1 + one
bucket / shard; the gathering path needs about the whole model, ~2 x the shard at TP = 2).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Peak:
    """Peak VmRSS above the level at entry, sampled every millisecond on a thread."""

    def __enter__(self) -> Peak:
        self.base, self.peak, self._stop = rss(), 0, False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop:
            self.peak = max(self.peak, rss() - self.base)
            time.sleep(0.001)

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._thread.join()
        self.peak = max(self.peak, rss() - self.base)


def worker(rank: int, port: int, model: str, out_dir: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1")
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    from learner import make_batch  # benchmarks/learner.py
    from omegaconf import OmegaConf

    from or1.core.interfaces import BuildContext
    from or1.launch import distributed
    from or1_plugins.learner.megatron.learner import MegatronLearner, MegatronLearnerConfig
    from or1_plugins.loss.or1 import OR1Loss, OR1LossConfig

    distributed.init(300)
    p = Path(model)
    cfg = OmegaConf.structured(MegatronLearnerConfig(lr=1e-4, tensor_parallel_size=2))
    learner = MegatronLearner(cfg, BuildContext(p, p, p, 0, None))
    batch = make_batch(4, 48, learner.arch.vocab_size)
    batch.old_logprobs, _ = learner.compute_logprobs(batch)
    learner.train_step(batch, OR1Loss(OmegaConf.structured(OR1LossConfig())), 0.0)
    shard = sum(p.numel() * p.element_size() for p in learner.model.parameters())
    shard += sum(
        t.numel() * t.element_size()
        for st in learner.optimizer.state.values()
        for k, t in st.items()
        if k != "step"
    )
    import gc

    gc.collect()
    distributed.barrier()
    with Peak() as sharded:
        learner.save_sharded(Path(out_dir) / "sharded")
    distributed.barrier()
    gc.collect()
    with Peak() as full:
        state = learner.state_dict()
        del state
    distributed.barrier()
    Path(out_dir, f"rank{rank}.txt").write_text(f"{shard} {sharded.peak} {full.peak}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--tiny", action="store_true")
    p.add_argument(
        "--cache-dir", default=os.environ.get("OR1_CACHE_DIR", str(Path.home() / ".cache" / "or1"))
    )
    args = p.parse_args()
    if args.tiny:
        from omegaconf import OmegaConf

        from or1_plugins.sources.tiny.model import TinyModelConfig, prepare_tiny_model

        cfg = OmegaConf.structured(TinyModelConfig(warmup_max_steps=0, num_threads=1))
        model = Path(prepare_tiny_model(cfg, Path(args.cache_dir)))
    else:
        from scaling import make_model

        model = make_model(argparse.Namespace(hidden=512, layers=4, cache_dir=args.cache_dir))
    import torch.multiprocessing as mp
    from learner import free_port

    mib = 2**20
    with tempfile.TemporaryDirectory(prefix="or1-ckpt-mem-") as tmp:
        mp.start_processes(
            worker, args=(free_port(), str(model), tmp), nprocs=2, start_method="spawn"
        )
        rows = [tuple(map(int, Path(tmp, f"rank{r}.txt").read_text().split())) for r in (0, 1)]
    print(f"model {model.name}, TP = 2, fp32 weights + AdamW moments")
    for r, (shard, sharded, full) in enumerate(rows):
        print(
            f"rank {r}: shard {shard / mib:.1f} MiB; peak RSS above the start of the save: "
            f"sharded {sharded / mib:.1f} MiB, full-state gather {full / mib:.1f} MiB"
        )
    shard, sharded, full = rows[0]
    print(f"sharded_peak_over_shard={sharded / shard:.2f} full_peak_over_shard={full / shard:.2f}")


if __name__ == "__main__":
    main()
