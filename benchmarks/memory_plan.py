"""The memory plan's arithmetic against measured peak memory of real Megatron-learner steps.

    .venv/bin/python benchmarks/memory_plan.py --validate [--runs tiny-fp32-padded,...]
    .venv/bin/python benchmarks/memory_plan.py            # the plan's figures only, no runs

Each run builds the Megatron learner (``learner=megatron``, TP = 1, CPU) on a random-weight
Qwen2 written into a temporary folder (``tiny``: the CPU demo's architecture, hidden 128, 2
layers, vocabulary 128; ``mid``: hidden 512, 4 layers, 8 heads / 2 KV heads, FFN 1536,
vocabulary 8192, 20.5M parameters; ``small``: hidden 256, 4 layers, for the slower bf16
runs), in its own spawned process (one per rank) with one torch thread and
``MALLOC_MMAP_THRESHOLD_=65536`` (every tensor of 64 KiB or more is its own mapping, returned
to the system when freed, so resident memory follows live tensors), and trains one batch
(``rows`` sequences of ``width`` tokens, one micro-batch) twice. Measured (Linux
``/proc/self/status``): ``r0`` resident memory after imports, process groups and Megatron's
parallel state; ``r2`` after the first step (weights, DDP gradient buffer, optimiser state
all allocated); the peak of the second step (``VmHWM`` after resetting it with
``/proc/self/clear_refs``). Compared with the plan's estimate for the same settings, batch and
device (``device=cpu``: the local attention's scores are not kept in a preallocated buffer):

* ``static`` = ``r2 - r0`` vs weights + gradients + optimiser state (the measured figure also
  holds ~20 MB of process overhead the plan leaves to ``plan.reserve_gib``);
* ``step`` = ``peak - r2`` vs the activations' peak;
* ``total`` = ``peak - r0`` vs the plan's learner-step total.

One row per run; the last line is ``max_rel_error=<x>``, the largest relative error of the
``step`` and ``total`` columns over all runs. A run with ``ranks=2`` is a data-parallel launch
(gloo) with the distributed optimiser: every rank trains the same batch, the figures are rank
0's.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

MODELS = {
    "tiny": dict(
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
    ),
    "small": dict(
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=4096,
    ),
    "mid": dict(
        hidden_size=512,
        intermediate_size=1536,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=2,
        vocab_size=8192,
    ),
}


@dataclass
class Run:
    name: str
    model: str
    rows: int
    width: int
    learner: dict = field(default_factory=dict)
    ranks: int = 1


RUNS = [
    Run("tiny-fp32-padded", "tiny", 64, 256, {"packing": False}),
    Run("tiny-fp32-padded-full", "tiny", 64, 256, {"packing": False, "recompute": "full"}),
    Run("tiny-fp32-packed", "tiny", 64, 256, {"packing": True}),
    Run("tiny-bf16-packed", "tiny", 32, 256, {"packing": True, "precision": "bf16"}),
    Run("mid-fp32-padded", "mid", 2, 1024, {"packing": False}),
    Run("mid-fp32-padded-full", "mid", 2, 1024, {"packing": False, "recompute": "full"}),
    Run("mid-fp32-packed-selective", "mid", 4, 512, {"packing": True, "recompute": "selective"}),
    Run("small-bf16-padded", "small", 4, 512, {"packing": False, "precision": "bf16"}),
    Run("small-bf16-packed", "small", 4, 512, {"packing": True, "precision": "bf16"}),
    Run(
        "small-bf16-packed-full",
        "small",
        4,
        512,
        {"packing": True, "precision": "bf16", "recompute": "full"},
    ),
    Run(
        "mid-fp32-packed-dp2-distopt",
        "mid",
        2,
        512,
        {"packing": True, "distributed_optimizer": True},
        ranks=2,
    ),
]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--validate", action="store_true", help="measure the runs (else: plan only)")
    p.add_argument("--runs", default="", help="comma-separated run names (default: all)")
    return p.parse_args()


# ------------------------------------------------------------------------------ the plan


def shape_of(model: str):  # noqa: ANN201 - a ModelShape
    from or1.launch.memory_plan import ModelShape

    c = MODELS[model]
    config = {
        **c,
        "num_hidden_layers": c["num_hidden_layers"],
        "architectures": ["Qwen2ForCausalLM"],
    }
    return ModelShape.from_hf_config(config, model)


def planned(run: Run) -> dict[str, int]:
    """The plan's figures for one run: its settings, batch, layout and device (CPU)."""
    from types import SimpleNamespace

    from or1.launch.memory_plan import MemoryQuery, ParallelLayout, StageLoad
    from or1_plugins.learner.megatron import memory

    stage = StageLoad(run.name, 0, run.width, run.rows * run.width, run.rows * run.ranks)
    layout = ParallelLayout(1, 1, run.ranks, 1)
    query = MemoryQuery(shape_of(run.model), layout, stage, 0, device="cpu")
    cfg = SimpleNamespace(**{"recompute": "none", "precision": "fp32", **run.learner})
    est = memory.estimate(cfg, query).phases["learner"]
    static = est["weights"] + est["gradients"] + est["optimizer"]
    return {"static": static, "step": est["activations"], "total": static + est["activations"]}


# ------------------------------------------------------------------------------ a run


def status(key: str) -> int:
    m = re.search(rf"{key}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(m.group(1)) * 1024


def worker(rank: int, run: Run, model_dir: str, warm_dir: str, port: int, out: str) -> None:
    """One rank of one run (a fresh process): a warm-up learner with the same settings on the
    tiny model (every lazy import and one-time set-up happens before ``r0``), then the run's
    learner: build, step twice, write the figures."""
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(run.ranks),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(1)
    from megatron.core import parallel_state as ps
    from megatron.core.models.gpt import GPTModel  # noqa: F401 - imported before r0
    from omegaconf import OmegaConf

    from or1.core.interfaces import BuildContext
    from or1.core.types import TrainBatch
    from or1.launch import distributed
    from or1_plugins.learner.megatron.cpu_shims import apply_cpu_shims
    from or1_plugins.learner.megatron.learner import MegatronLearner, MegatronLearnerConfig
    from or1_plugins.loss.or1 import OR1Loss, OR1LossConfig

    apply_cpu_shims()
    if run.ranks > 1:
        distributed.init(600)
    else:
        import torch.distributed as dist

        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    ps.initialize_model_parallel(tensor_model_parallel_size=1, context_parallel_size=1)

    def make_batch(rows: int, width: int, vocab: int) -> TrainBatch:
        g = torch.Generator().manual_seed(rank)
        ids = torch.randint(3, vocab, (rows, width), generator=g)
        resp = torch.zeros(rows, width)
        resp[:, 1:] = 1.0
        adv = resp * torch.randn(rows, 1, generator=g)
        return TrainBatch(ids, torch.ones_like(ids), resp, adv, [width] * rows, 1.0, rows * width)

    def build(folder: str) -> MegatronLearner:
        path = Path(folder)
        cfg = OmegaConf.structured(MegatronLearnerConfig(lr=1e-5, **run.learner))
        return MegatronLearner(cfg, BuildContext(path, path, path, 0, None))

    loss = OR1Loss(OmegaConf.structured(OR1LossConfig()))
    warm = build(warm_dir)
    small = make_batch(2, 16, MODELS["tiny"]["vocab_size"])
    small.old_logprobs, _ = warm.compute_logprobs(small)
    warm.train_step(small, loss, 0.0)
    warm.close()
    del warm, small
    batch = make_batch(run.rows, run.width, MODELS[run.model]["vocab_size"])
    gc.collect()
    r0 = status("VmRSS")
    learner = build(model_dir)
    batch.old_logprobs, _ = learner.compute_logprobs(batch)
    learner.train_step(batch, loss, 0.0)  # allocates the optimiser state
    gc.collect()
    r2 = status("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    t0 = time.perf_counter()
    learner.train_step(batch, loss, 0.0)
    seconds = time.perf_counter() - t0
    peak = status("VmHWM")
    learner.close()
    if rank == 0:
        figures = {"static": r2 - r0, "step": peak - r2, "total": peak - r0, "seconds": seconds}
        Path(out).write_text(json.dumps(figures))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_model(name: str, folder: Path) -> Path:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    path = folder / name
    if not (path / "config.json").is_file():
        torch.manual_seed(0)
        config = Qwen2Config(
            max_position_embeddings=4096, tie_word_embeddings=False, **MODELS[name]
        )
        Qwen2ForCausalLM(config).save_pretrained(path)
    return path


def measure(run: Run, model_dir: Path, warm_dir: Path) -> dict[str, float]:
    """Run ``run``'s ranks as fresh processes of this script (``--worker``) and read rank 0's
    figures."""
    import dataclasses
    import subprocess

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "65536"}
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "figures.json")
        spec = json.dumps(
            {
                "run": dataclasses.asdict(run),
                "model": str(model_dir),
                "warm": str(warm_dir),
                "out": out,
            }
        )
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--worker", str(rank), spec, str(port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            for rank in range(run.ranks)
        ]
        errors = [p.communicate()[1] for p in procs]
        if any(p.returncode for p in procs):
            tail = next(e for p, e in zip(procs, errors, strict=True) if p.returncode)
            raise RuntimeError(f"run {run.name} failed:\n{tail[-3000:]}")
        return json.loads(Path(out).read_text())


# ------------------------------------------------------------------------------ main


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":  # one rank of one run
        rank, spec, port = int(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4])
        worker(rank, Run(**spec["run"]), spec["model"], spec["warm"], port, spec["out"])
        return
    args = parse_args()
    chosen = [r for r in RUNS if not args.runs or r.name in args.runs.split(",")]
    if not chosen:
        sys.exit(f"no run named {args.runs} (runs: {', '.join(r.name for r in RUNS)})")
    mb = 1e6
    cols = ("static", "step", "total")
    if not args.validate:
        print(f"{'run':30s}" + "".join(f"{c + ' MB':>12s}" for c in cols))
        for run in chosen:
            plan = planned(run)
            print(f"{run.name:30s}" + "".join(f"{plan[c] / mb:12.1f}" for c in cols))
        return
    head = f"{'run':30s}" + "".join(f"{c + ' meas/plan MB':>24s}{'err':>7s}" for c in cols)
    print(head + f"{'run s':>7s}")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for run in chosen:
            model_dir = make_model(run.model, Path(tmp))
            t0 = time.perf_counter()
            got = measure(run, model_dir, make_model("tiny", Path(tmp)))
            got["wall"] = time.perf_counter() - t0
            plan = planned(run)
            cells, errs = "", {}
            for c in cols:
                errs[c] = abs(plan[c] - got[c]) / got[c]
                cells += f"{got[c] / mb:12.1f}/{plan[c] / mb:<11.1f}{errs[c]:7.3f}"
            worst = max(worst, errs["step"], errs["total"])
            print(f"{run.name:30s}{cells}{got['wall']:7.0f}", flush=True)
    print(f"max_rel_error={worst:.3f}")


if __name__ == "__main__":
    main()
