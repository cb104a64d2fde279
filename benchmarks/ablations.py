"""The recipe's ablations on the long chain-of-thought task (docs/ablations.md), one command:

    .venv/bin/python benchmarks/ablations.py NAME [--seeds 2] [--jobs 1] [--steps 10,6,4]
                                             [--prompts 16] [--out outputs/ablations]

NAME is one of ``entropy`` (adaptive vs constant vs none), ``temperature`` (1.0 vs 0.6),
``stages`` (the three-stage schedule vs one stage at the final length, same steps),
``truncation`` (none vs mask_after vs mask_before in the first stage), ``updates`` (1 vs 4
optimiser steps per rollout batch), ``filter`` (zero-variance filter vs none), ``schedule``
(fixed stage lengths vs ``stages.advance=truncation``), ``controller`` (OR1's adaptive rule vs
``entropy=pi``), ``recipe`` (the whole recipe against plain GRPO: ``entropy=none filter=none``
and one stage at the final length, compared on equal steps and on equal step time), or ``all``
(each in turn).

Every variant runs ``or1-train experiment=cpu_long_cot`` with the settings the documented
rounds ran with (``ROUND_SETTINGS``: the published entropy control, lr 2e-4), the same seeds
(``--seeds``: 0, 1, ...), a shortened three-stage schedule (``--steps``: steps of the 256, 512
and 1,024 stages), ``--prompts`` prompts x 8 samples per step, held-out Avg@1 on ``--eval-problems``
problems every ``--eval-every`` steps with the last stage's budget, and the variant's own
overrides; ``--jobs`` runs go at once (default 1: on 2 cores two runs at once took 2.4x
longer than one after the other, 1,650 s each against 345 s). A finished run (its
``summary.json`` present) is reused, so an interrupted ablation continues where it stopped, and
so is a finished run of another ablation with the same composed config (the preset's variant
of most ablations is one run per seed), linked into this ablation's folder.

Per ablation: a table (``<out>/<name>/table.md``, also printed) with per variant the mean over
seeds of the final held-out accuracy, the generated tokens, the entropy at the start (mean of
the first three steps) and the end (last three), the mean response length and truncated
fraction, and the run's wall time, then one row per run (entropy and its spread, the entropy
over all samples, coefficient, reward, kept groups, tokens, step time, every evaluation); the figures of ``or1-plot`` with the seed-0 run of every
variant overlaid (``<out>/<name>/plots/``); and as the last line the headline figures, e.g.
``entropy_final_adaptive=<a> entropy_final_none=<b> target=<t> acc_adaptive=<x> acc_none=<y>``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
VAL = "val/tiny_cot/avg@1"
VAL_ENTROPY = "val/tiny_cot/sample_entropy"  # at T=1 on the same held-out problems each time

ROUND_SETTINGS = ["entropy=or1", "learner.lr=2e-4", "trainer.group_size=8"]
"""What every run starts from after the preset: the settings all documented rounds ran with (the
preset's own until it took the scaled ones), so that their commands rerun as they ran. The
published entropy control (conf/entropy/or1.yaml), lr 2e-4, 8 samples per prompt; ``--entropy``
and ``--extra`` override them (round 4: ``--entropy target=0.1 coef_max=0.05 delta=1e-3 --extra
learner.lr=3e-4``)."""

VARIANTS: dict[str, dict[str, list[str]]] = {
    "entropy": {
        "adaptive": [],
        "constant": ["entropy=constant", "entropy.coef=${CONSTANT_COEF}"],
        "none": ["entropy=none"],
    },
    "temperature": {"t10": ["rollout.temperature=1.0"], "t06": ["rollout.temperature=0.6"]},
    "stages": {"multi": [], "single": ["${SINGLE_STAGE}"]},
    "truncation": {
        "none": ["stages.stages.0.truncation=none"],
        "mask_after": ["stages.stages.0.truncation=mask_after"],
        "mask_before": ["stages.stages.0.truncation=mask_before"],
    },
    "updates": {"u1": ["trainer.updates_per_step=1"], "u4": ["trainer.updates_per_step=4"]},
    "filter": {"zero_variance": [], "none": ["filter=none"]},
    "schedule": {  # this task truncates 4-40% at 256 and 8-24% at 512: 5% (the default) is never reached
        "steps": ["stages.advance=steps"],
        "truncation": [
            "stages.advance=truncation",
            "stages.advance_threshold=0.2",
            "stages.advance_patience=2",
        ],
    },
    "controller": {"adaptive": [], "pi": ["entropy=pi", "entropy.target=${TARGET}"]},
    "recipe": {"recipe": [], "plain": ["entropy=none", "filter=none", "${SINGLE_STAGE}"]},
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("name", choices=[*VARIANTS, "all"])
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--steps", default="10,6,4", help="steps of the 256, 512 and 1,024 stages")
    p.add_argument("--prompts", type=int, default=16)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--eval-problems", type=int, default=64)
    p.add_argument("--constant-coef", type=float, default=None, help="default: coef_max / 2")
    p.add_argument(
        "--entropy",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="entropy-controller overrides for the variants that have a controller (adaptive, "
        "constant, pi), e.g. target=0.06 coef_max=0.5 delta=0.02; the target and coef_max "
        "also replace the published ones in the headline and the constant coefficient",
    )
    p.add_argument("--out", type=Path, default=ROOT / "outputs" / "ablations")
    p.add_argument("--extra", nargs="*", default=[], help="more or1-train overrides, all runs")
    return p.parse_args()


def preset_entropy(extra: list[str] = ()) -> dict:
    """The entropy target and coefficient bound of the runs: the published ones
    (conf/entropy/or1.yaml, which ``ROUND_SETTINGS`` selects), with ``--entropy`` overrides."""
    from omegaconf import OmegaConf

    entropy = OmegaConf.load(ROOT / "conf" / "entropy" / "or1.yaml")
    out = {"target": float(entropy.target), "coef_max": float(entropy.coef_max)}
    for item in extra:
        key, _, value = item.partition("=")
        if key in out:
            out[key] = float(value)
    return out


def controller_keys(variant: list[str]) -> frozenset[str]:
    """The config keys of a variant's entropy controller (the preset's is ``adaptive``), from
    its registered schema: the ``--entropy`` overrides it takes. ``entropy=none`` has none;
    ``constant`` takes only ``coef``, which the variant sets itself."""
    import dataclasses

    from or1.core.registry import get_registry

    name = next((v.partition("=")[2] for v in variant if v.startswith("entropy=")), "adaptive")
    schema = get_registry().get("entropy", name).schema
    return frozenset({f.name for f in dataclasses.fields(schema)} - {"name", "estimator", "coef"})


def overrides(a: argparse.Namespace, variant: list[str], seed: int, run_dir: Path) -> list[str]:
    steps = [int(s) for s in a.steps.split(",")]
    if len(steps) != 3:
        sys.exit("benchmarks/ablations.py: --steps takes three numbers (256, 512, 1,024 stages)")
    ent = preset_entropy(a.entropy)
    subs = {
        "${CONSTANT_COEF}": str(a.constant_coef or ent["coef_max"] / 2),
        "${TARGET}": str(ent["target"]),
    }
    single = "${SINGLE_STAGE}" in variant
    out = [
        "experiment=cpu_long_cot",
        *ROUND_SETTINGS,
        *([] if single else [f"stages.stages.{i}.steps={s}" for i, s in enumerate(steps)]),
        f"trainer.prompts_per_step={a.prompts}",
        f"trainer.seed={seed}",
        f"trainer.eval_every={a.eval_every}",
        "eval.k=1",
        f"eval.max_problems={a.eval_problems}",
        "trainer.resume=never",
        "trainer.export_final=false",
        "logger=[jsonl]",
        f"hydra.run.dir={run_dir}",
        *a.extra,
    ]
    keys = controller_keys(variant)  # each controller gets the --entropy keys it has
    out += [f"entropy.{kv}" for kv in a.entropy if kv.partition("=")[0] in keys]
    for v in variant:
        if v == "${SINGLE_STAGE}":  # one stage at the final length for the same steps
            out += [
                "stages=single",
                f"stages.stages.0.steps={sum(steps)}",
                "stages.stages.0.max_response_length=1024",
                "stages.stages.0.micro_batch_tokens=65536",
            ]
        else:
            key, _, value = v.partition("=")
            out.append(f"{key}={subs.get(value, value)}")
    return out


_COMPOSE = threading.Lock()


@cache
def composed(overrides: tuple[str, ...]) -> str:
    """The run config ``or1-train`` composes from ``overrides`` (``hydra.*`` ones left out), as
    YAML: two runs with equal text are the same run, however their variants spell it."""
    from omegaconf import OmegaConf

    from or1.cli.common import implied_overrides
    from or1.cli.plan import compose_train  # or1-plan's compose: nothing written

    task = [o for o in overrides if not o.startswith("hydra.")]
    with _COMPOSE:  # Hydra's global state is one per process
        cfg, _ = compose_train([*task, *implied_overrides(task)])
    return OmegaConf.to_yaml(cfg)


def finished_twin(out: Path, args: list[str], run_dir: Path) -> Path | None:
    """A finished run under ``out`` (any ablation) of the same composed config as ``args``."""
    from omegaconf import OmegaConf

    want = composed(tuple(args))
    for summary in sorted(out.glob("*/*/summary.json")):
        other = summary.parent
        saved = other / ".hydra" / "overrides.yaml"
        if other.is_symlink() or other == run_dir or not saved.is_file():
            continue
        if composed(tuple(OmegaConf.to_container(OmegaConf.load(saved)))) == want:
            return other
    return None


def run_one(a: argparse.Namespace, name: str, variant: str, seed: int) -> Path:
    run_dir = a.out / name / f"{variant}_s{seed}"
    if (run_dir / "summary.json").is_file():
        return run_dir
    log = a.out / name / f"{variant}_s{seed}.log"
    args = overrides(a, VARIANTS[name][variant], seed, run_dir)
    twin = finished_twin(a.out, args, run_dir)
    if twin is not None:  # e.g. every ablation's preset variant: run it once
        if run_dir.is_symlink() or run_dir.is_file():
            run_dir.unlink()
        shutil.rmtree(run_dir, ignore_errors=True)  # an unfinished attempt
        run_dir.symlink_to(os.path.relpath(twin, run_dir.parent))
        print(f"  {name}/{variant} seed {seed}: the same run as {twin}", flush=True)
        return run_dir
    cmd = [str(BIN / "or1-train"), *args]
    began = time.time()
    with log.open("w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        sys.exit(f"benchmarks/ablations.py: {name}/{variant} seed {seed} failed: see {log}")
    (run_dir / "wall_s.txt").write_text(f"{time.time() - began:.1f}\n")
    print(f"  {name}/{variant} seed {seed}: {time.time() - began:.0f} s", flush=True)
    return run_dir


def read(run_dir: Path) -> dict:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x]
    steps = [r for r in rows if "reward/mean" in r]
    evals = {r["step"]: r[VAL] for r in rows if VAL in r}
    val_entropy = {r["step"]: r[VAL_ENTROPY] for r in rows if VAL_ENTROPY in r}
    ent = [r["entropy/value"] for r in steps if "entropy/value" in r]
    cfg = (run_dir / ".hydra" / "config.yaml").read_text()
    samples = [r.get("rollout/engine0_samples", 0.0) for r in steps]
    wall = run_dir / "wall_s.txt"
    step_s = {r["step"]: r["timing/step_s"] for r in steps}
    return {
        "evals": evals,
        "elapsed": {k: sum(t for s, t in step_s.items() if s <= k) for k in evals},
        "acc": evals[max(evals)],
        "acc_start": evals[min(evals)],
        "tokens": sum(r["response_length/mean"] * n for r, n in zip(steps, samples, strict=True)),
        "entropy_start": statistics.mean(ent[:3]),
        "entropy_end": statistics.mean(ent[-3:]),
        "entropy": ent,
        "val_entropy": val_entropy,
        "length": statistics.mean(r["response_length/mean"] for r in steps),
        "truncated": statistics.mean(r["response/truncated_frac"] for r in steps),
        "wall": float(wall.read_text()) if wall.is_file() else float("nan"),
        "step_s": sum(step_s.values()),
        "coef": statistics.mean(r.get("entropy/coef", 0.0) for r in steps),
        "kept": statistics.mean(r.get("filter/groups_kept", float("nan")) for r in steps),
        "reward": statistics.mean(r["reward/mean"] for r in steps),
        "nll": [r["rollout/sampled_nll"] for r in steps if "rollout/sampled_nll" in r],
        "config": cfg,
    }


def tracking(entropy: list[float], target: float) -> tuple[float, float]:
    """After the first fifth of the run: mean |entropy - target| and the fraction of steps
    within 25% of the target."""
    rest = entropy[len(entropy) // 5 :]
    mae = statistics.mean(abs(e - target) for e in rest)
    within = sum(abs(e - target) <= 0.25 * target for e in rest) / len(rest)
    return mae, within


def accuracy_within(run: dict, budget_s: float) -> float:
    """Held-out accuracy of the last evaluation reached within ``budget_s`` seconds of summed
    step time (evaluation excluded): the run's accuracy after equal time."""
    return run["evals"][max(k for k, t in run["elapsed"].items() if t <= budget_s + 1e-9)]


def equal_time(first: list[dict], second: list[dict]) -> tuple[float, float]:
    """Mean over seeds of both variants' accuracy after equal step time: per seed, the budget
    is the shorter of the two runs' summed step times."""
    pairs = [
        (accuracy_within(x, b), accuracy_within(y, b))
        for x, y in zip(first, second, strict=True)
        for b in [min(max(x["elapsed"].values()), max(y["elapsed"].values()))]
    ]
    return statistics.mean(p[0] for p in pairs), statistics.mean(p[1] for p in pairs)


def ablation(a: argparse.Namespace, name: str) -> str:
    (a.out / name).mkdir(parents=True, exist_ok=True)
    variants = list(VARIANTS[name])
    jobs = [(v, s) for s in range(a.seeds) for v in variants]
    print(f"{name}: {len(jobs)} runs, {a.jobs} at a time", flush=True)
    with ThreadPoolExecutor(max_workers=a.jobs) as pool:
        dirs = dict(zip(jobs, pool.map(lambda j: run_one(a, name, *j), jobs), strict=True))
    res = {v: [read(dirs[(v, s)]) for s in range(a.seeds)] for v in variants}

    def m(v: str, key: str) -> float:
        return statistics.mean(r[key] for r in res[v])

    lines = [
        f"## {name} ({a.seeds} seeds, steps {a.steps}, {a.prompts} prompts x 8)",
        "",
        "| variant | held-out Avg@1 (start -> end) | generated tokens | entropy start -> end | "
        "response length | truncated | wall (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        lines.append(
            f"| {v} | {m(v, 'acc_start'):.3f} -> {m(v, 'acc'):.3f} | {m(v, 'tokens'):,.0f} | "
            f"{m(v, 'entropy_start'):.4f} -> {m(v, 'entropy_end'):.4f} | {m(v, 'length'):.0f} | "
            f"{m(v, 'truncated'):.3f} | {m(v, 'wall'):.0f} |"
        )
    lines += [
        "",
        "Per run (entropy: `entropy/value`, over the kept groups, the first and last three "
        "steps' mean; all samples: `rollout/sampled_nll`, the same windows over every sample of "
        "the step; the coefficient: its mean over the steps; step time: summed, evaluations "
        "excluded):",
        "",
        "| run | entropy start -> end | entropy std | all samples start -> end | coef | reward | "
        "groups kept | tokens | step time (s) | held-out Avg@1 at each evaluation | "
        "held-out entropy |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        for seed, r in enumerate(res[v]):
            evals = ", ".join(f"{100 * r['evals'][k]:.1f}" for k in sorted(r["evals"]))
            vals = ", ".join(f"{r['val_entropy'][k]:.3f}" for k in sorted(r["val_entropy"]))
            nll = r["nll"]
            nll_cell = (
                f"{statistics.mean(nll[:3]):.4f} -> {statistics.mean(nll[-3:]):.4f}" if nll else "-"
            )
            lines.append(
                f"| {v}, seed {seed} | {r['entropy_start']:.4f} -> {r['entropy_end']:.4f} | "
                f"{statistics.pstdev(r['entropy']):.4f} | {nll_cell} | {r['coef']:.3f} | "
                f"{r['reward']:.3f} | {r['kept']:.1f} | {r['tokens']:,.0f} | "
                f"{r['step_s']:.0f} | {evals} | {vals} |"
            )
    runs = [r for v in variants for r in res[v]]
    shared = sorted(set.intersection(*(set(r["val_entropy"]) for r in runs)))
    if shared:  # runs made before sample_entropy existed lack it
        lines += [
            "",
            "Held-out entropy (`sample_entropy`: mean -log p of the sampled tokens at T=1 on the "
            "same held-out problems), mean over seeds, at each evaluation:",
            "",
            "| variant | " + " | ".join(f"step {k}" for k in shared) + " |",
            "|---|" + "---|" * len(shared),
        ]
        for v in variants:
            cells = [statistics.mean(r["val_entropy"][k] for r in res[v]) for k in shared]
            lines.append(f"| {v} | " + " | ".join(f"{c:.4f}" for c in cells) + " |")
    from or1.commands.plot import plot_runs

    plot_runs([dirs[(v, 0)] for v in variants], a.out / name / "plots")

    def drop(v: str) -> float:
        return m(v, "entropy_start") - m(v, "entropy_end")

    target = float(preset_entropy(a.entropy)["target"])
    if name == "entropy":
        mae, within = zip(*(tracking(r["entropy"], target) for r in res["adaptive"]), strict=True)
        head = (
            f"entropy_final_adaptive={m('adaptive', 'entropy_end'):.4f} "
            f"entropy_final_constant={m('constant', 'entropy_end'):.4f} "
            f"entropy_final_none={m('none', 'entropy_end'):.4f} target={target} "
            f"adaptive_within_25pct={statistics.mean(within):.2f} acc_adaptive={m('adaptive', 'acc'):.3f} "
            f"acc_constant={m('constant', 'acc'):.3f} acc_none={m('none', 'acc'):.3f}"
        )
    elif name == "temperature":
        head = (
            f"entropy_drop_t06={drop('t06'):.4f} entropy_drop_t10={drop('t10'):.4f} "
            f"acc_t06={m('t06', 'acc'):.3f} acc_t10={m('t10', 'acc'):.3f}"
        )
    elif name == "stages":
        head = (
            f"tokens_ratio_single_over_multi={m('single', 'tokens') / m('multi', 'tokens'):.2f} "
            f"acc_multi={m('multi', 'acc'):.3f} acc_single={m('single', 'acc'):.3f}"
        )
    elif name == "updates":
        head = f"entropy_drop_1={drop('u1'):.4f} entropy_drop_4={drop('u4'):.4f} " + (
            f"acc_1={m('u1', 'acc'):.3f} acc_4={m('u4', 'acc'):.3f}"
        )
    elif name == "controller":
        scores = {
            v: [statistics.mean(tracking(r["entropy"], target)[i] for r in res[v]) for i in (0, 1)]
            for v in ("adaptive", "pi")
        }
        head = (
            f"mae_adaptive={scores['adaptive'][0]:.4f} mae_pi={scores['pi'][0]:.4f} "
            f"within_25pct_adaptive={scores['adaptive'][1]:.2f} "
            f"within_25pct_pi={scores['pi'][1]:.2f} target={target} "
            f"acc_adaptive={m('adaptive', 'acc'):.3f} acc_pi={m('pi', 'acc'):.3f}"
        )
    elif name == "recipe":
        acc_r, acc_p = equal_time(res["recipe"], res["plain"])
        head = (
            f"acc_recipe={m('recipe', 'acc'):.3f} acc_plain={m('plain', 'acc'):.3f} "
            f"acc_recipe_equal_time={acc_r:.3f} acc_plain_equal_time={acc_p:.3f} "
            f"tokens_ratio_plain_over_recipe={m('plain', 'tokens') / m('recipe', 'tokens'):.2f}"
        )
    else:  # truncation, filter, schedule: accuracy and tokens per variant
        head = " ".join(
            f"acc_{v}={m(v, 'acc'):.3f} tokens_{v}={m(v, 'tokens'):.0f}" for v in variants
        )
    lines += ["", head]
    text = "\n".join(lines)
    (a.out / name / "table.md").write_text(text + "\n")
    return text


def main() -> None:
    a = parse_args()
    names = list(VARIANTS) if a.name == "all" else [a.name]
    known = set().union(*(controller_keys(v) for n in names for v in VARIANTS[n].values()))
    for kv in a.entropy:
        if kv.partition("=")[0] not in known:
            sys.exit(f"benchmarks/ablations.py: --entropy {kv}: no controller of {a.name} has it")
    texts = [ablation(a, n) for n in names]
    print("\n\n".join(texts))


if __name__ == "__main__":
    main()
