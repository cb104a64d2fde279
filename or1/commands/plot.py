"""Figures of one or several runs from their ``metrics.jsonl`` (``or1-plot``).

Each figure overlays every run given (one colour per run, the legend names the run), which is
how ablations are compared. Stage boundaries (from the ``stage`` metric) are shaded for the
first run, as in the Skywork-OR1 multi-stage figure. Figures whose metrics no run has are
skipped.

* ``reward.png``: mean reward per step (raw, light) and its moving average.
* ``validation.png``: held-out Avg@K (solid) and the largest pass@k (dashed) per dataset.
* ``entropy.png``: measured entropy with the controller's target line, and the held-out
  ``sample_entropy`` of each evaluation where logged; the entropy coefficient.
* ``length.png``: mean and median response length with the 10th-90th percentile band and the
  stage's max length; truncation rate.
* ``training.png``: the policy loss, the gradient norm, the PPO clip fraction and the groups
  the filter kept per step, and the rollout/learner mismatch metrics (``mismatch/*``) when a
  run logs them.
* ``timing.png``: mean seconds per step by phase (stacked, per run); step time over the run.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from or1.core.errors import ConfigError

PHASES = ("rollout", "reward", "train", "weight_sync", "eval", "other")
_VAL = re.compile(r"^val/(?P<set>.+)/(?P<metric>avg|pass|maj)@(?P<k>\d+)$")


@dataclass
class RunData:
    """One run's metric rows (one dict per logged step), its config and its label."""

    path: Path
    rows: list[dict[str, Any]]
    config: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def series(self, key: str, train_only: bool = True) -> tuple[list[int], list[float]]:
        """``(steps, values)`` of a metric, finite values only (training steps when asked)."""
        xs, ys = [], []
        for row in self.rows:
            v = row.get(key)
            if (
                isinstance(v, int | float)
                and math.isfinite(v)
                and (not train_only or "timing/step_s" in row)
            ):
                xs.append(int(row["step"]))
                ys.append(float(v))
        return xs, ys

    def has(self, key: str) -> bool:
        return any(key in row for row in self.rows)

    def stage_spans(self) -> list[tuple[int, int, int]]:
        """``(stage index, first step, last step)`` of each stage the run went through."""
        spans: list[list[int]] = []
        for x, s in zip(*self.series("stage"), strict=True):
            if spans and spans[-1][0] == int(s):
                spans[-1][2] = x
            else:
                spans.append([int(s), x, x])
        return [(a, b, c) for a, b, c in spans]

    def stage_name(self, index: int) -> str:
        stages = (self.config.get("stages") or {}).get("stages") or []
        if index < len(stages) and isinstance(stages[index], dict) and stages[index].get("name"):
            name = stages[index]["name"]
            length = stages[index].get("max_response_length")
            return f"stage {index}: {name}" + (f" ({length} tok)" if length else "")
        return f"stage {index}"  # 0-based like the logs and ``stages.stages.N``

    def entropy_target(self) -> float | None:
        ent = self.config.get("entropy") or {}
        target = ent.get("target")
        return float(target) if isinstance(target, int | float) else None


def load_run(path: Path) -> RunData:
    """Read ``metrics.jsonl`` (lines cut by a crash are skipped) and the saved Hydra config."""
    if not path.is_dir():
        raise ConfigError(f"{path}: not a folder")
    metrics = path / "metrics.jsonl"
    if not metrics.is_file():
        raise ConfigError(f"{path}: no metrics.jsonl (not an or1 run folder?)")
    rows = []
    for line in metrics.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("step"), int | float):
            rows.append(row)
    if not rows:
        raise ConfigError(f"{metrics}: no metrics logged yet")
    config: dict[str, Any] = {}
    cfg_file = path / ".hydra" / "config.yaml"
    if cfg_file.is_file():
        from omegaconf import OmegaConf

        try:
            config = OmegaConf.to_container(OmegaConf.load(cfg_file), resolve=False)  # type: ignore[assignment]
        except Exception:
            config = {}
    return RunData(path=path, rows=rows, config=config)


def labels_for(paths: Sequence[Path]) -> list[str]:
    """The shortest path suffixes that tell the runs apart (``run_a``, ``12-00-01``...); a
    link to a run folder is named by the link (an ablation's variant linked to its twin)."""
    parts = [Path(os.path.abspath(p)).parts for p in paths]
    for n in range(1, max(len(p) for p in parts) + 1):
        names = ["/".join(p[-n:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(p) for p in paths]


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over the last ``window`` values (fewer at the start)."""
    out, total = [], 0.0
    for i, v in enumerate(values):
        total += v
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def val_metrics(runs: Sequence[RunData]) -> dict[str, dict[str, str]]:
    """dataset -> {"avg": key, "pass": key of the largest k, "maj": key} over all runs."""
    found: dict[str, dict[str, tuple[int, str]]] = {}
    for run in runs:
        for row in run.rows:
            for key in row:
                m = _VAL.match(key)
                if m:
                    slot = found.setdefault(m["set"], {})
                    k = int(m["k"])
                    if m["metric"] not in slot or k > slot[m["metric"]][0]:
                        slot[m["metric"]] = (k, key)
    return {
        name: {metric: key for metric, (_, key) in slots.items()} for name, slots in found.items()
    }


# ----------------------------------------------------------------------------------- drawing


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(
        {
            "figure.dpi": 110,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "legend.fontsize": 8,
            "legend.framealpha": 0.85,
        }
    )
    return plt


def _colors(n: int) -> list[Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def shade_stages(ax: Any, runs: Sequence[RunData], label_top: bool = True) -> None:
    """Alternate grey bands over the first run's stages, named at the top of the axes; where
    another run's stages start at other steps (``stages.advance=truncation``), its stage
    changes as dashed lines in its colour."""
    run = runs[0]
    spans = run.stage_spans()
    starts = {first for _, first, _ in spans[1:]}
    for other, color in zip(runs[1:], _colors(len(runs))[1:], strict=True):
        for _, first, _ in other.stage_spans()[1:]:
            if first not in starts:
                ax.axvline(first - 0.5, color=color, lw=1.0, ls="--", alpha=0.8)
    if len(spans) < 2:
        return
    for i, (index, first, last) in enumerate(spans):
        lo, hi = first - 0.5, last + 0.5
        if i % 2 == 0:
            ax.axvspan(lo, hi, color="0.5", alpha=0.10, lw=0)
        if i > 0:
            ax.axvline(lo, color="0.4", lw=0.8, ls=":")
        if label_top:
            ax.text(
                (lo + hi) / 2,
                1.0,
                run.stage_name(index),
                transform=ax.get_xaxis_transform(),
                ha="center",
                va="bottom",
                fontsize=8,
                color="0.3",
            )


def _finish(fig: Any, axes: Sequence[Any], out: Path, title: str, runs: Sequence[RunData]) -> Path:
    plt = _plt()
    for ax in axes:
        handles, _ = ax.get_legend_handles_labels()
        if handles:
            ax.legend(loc="upper right" if ax.get_label() == "bars" else "best")
    sub = runs[0].label if len(runs) == 1 else f"{len(runs)} runs"
    fig.suptitle(f"{title} — {sub}", fontsize=11)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def _run_label(run: RunData, what: str, many: bool) -> str:
    return f"{run.label}: {what}" if many else what


def plot_reward(runs: Sequence[RunData], out: Path) -> Path | None:
    if not any(run.has("reward/mean") for run in runs):
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    many = len(runs) > 1
    for run, color in zip(runs, _colors(len(runs)), strict=True):
        xs, ys = run.series("reward/mean")
        if not xs:
            continue
        w = max(1, round(len(xs) / 15))
        ax.plot(
            xs,
            ys,
            color=color,
            alpha=0.3,
            lw=1,
            label=_run_label(run, "per step", many) if not many else None,
        )
        ax.plot(
            xs,
            moving_average(ys, w),
            color=color,
            lw=2,
            label=_run_label(run, f"moving average ({w} steps)", many) if not many else run.label,
        )
    shade_stages(ax, runs)
    ax.set_xlabel("RL step")
    ax.set_ylabel("mean reward of sampled responses\n(fraction correct)")
    ax.set_ylim(-0.02, 1.02)
    return _finish(fig, [ax], out, "Training reward", runs)


def plot_validation(runs: Sequence[RunData], out: Path) -> Path | None:
    sets = val_metrics(runs)
    if not sets:
        return None
    plt = _plt()
    fig, axes = plt.subplots(1, len(sets), figsize=(max(8, 6 * len(sets)), 4.5), squeeze=False)
    many = len(runs) > 1
    for ax, (name, keys) in zip(axes[0], sets.items(), strict=True):
        for run, color in zip(runs, _colors(len(runs)), strict=True):
            for metric, style in (("avg", "-"), ("pass", "--")):
                key = keys.get(metric)
                if key is None or (metric == "pass" and key.endswith("@1")):
                    continue
                xs, ys = run.series(key, train_only=False)
                if xs:
                    what = key.rsplit("/", 1)[1].replace("avg@", "Avg@")
                    ax.plot(
                        xs,
                        [100 * y for y in ys],
                        style,
                        color=color,
                        marker="o",
                        ms=4,
                        alpha=1.0 if metric == "avg" else 0.6,
                        label=_run_label(run, what, many),
                    )
        shade_stages(ax, runs)
        ax.set_title(f"held-out set '{name}'", fontsize=10, pad=16)
        ax.set_xlabel("RL step")
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 100)
    return _finish(fig, axes[0], out, "Validation accuracy", runs)


def held_out_entropy(run: RunData) -> dict[str, tuple[list[int], list[float]]]:
    """Per held-out set, the ``(steps, values)`` of its ``sample_entropy`` (the entropy
    estimate on the same problems at each evaluation, :mod:`or1.rl.evaluation`)."""
    keys = sorted(
        {
            k
            for row in run.rows
            for k in row
            if k.startswith("val/") and k.endswith("/sample_entropy")
        }
    )
    out = {}
    for key in keys:
        xs, ys = run.series(key, train_only=False)
        if xs:
            out[key.split("/")[1]] = (xs, ys)
    return out


def plot_entropy(runs: Sequence[RunData], out: Path) -> Path | None:
    if not any(run.has("entropy/value") for run in runs):
        return None
    plt = _plt()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True)
    many = len(runs) > 1
    for run, color in zip(runs, _colors(len(runs)), strict=True):
        xs, ys = run.series("entropy/value")
        top.plot(xs, ys, color=color, lw=1.5, label=_run_label(run, "measured entropy", many))
        for name, (hx, hy) in held_out_entropy(run).items():
            top.plot(
                hx,
                hy,
                ":",
                color=color,
                marker="o",
                ms=4,
                label=_run_label(run, f"held-out entropy ({name})", many),
            )
        target = run.entropy_target()
        if target is not None and xs:
            top.axhline(
                target,
                color=color,
                ls="--",
                lw=1.2,
                label=_run_label(run, f"target {target:g}", many),
            )
        cx, cy = run.series("entropy/coef")
        bottom.plot(cx, cy, color=color, lw=1.5, label=run.label if many else "entropy coefficient")
    for ax in (top, bottom):
        shade_stages(ax, runs, label_top=ax is top)
    top.set_ylabel("entropy (nats per token)")
    bottom.set_ylabel("entropy loss coefficient")
    bottom.set_xlabel("RL step")
    return _finish(fig, [top, bottom], out, "Entropy and its coefficient", runs)


def plot_length(runs: Sequence[RunData], out: Path) -> Path | None:
    if not any(run.has("response_length/mean") for run in runs):
        return None
    plt = _plt()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True)
    many = len(runs) > 1
    for i, (run, color) in enumerate(zip(runs, _colors(len(runs)), strict=True)):
        xs, ys = run.series("response_length/mean")
        top.plot(xs, ys, color=color, lw=1.5, label=_run_label(run, "mean response length", many))
        if run.has("response_length/p90"):  # the spread of the step's lengths
            px, lo = run.series("response_length/p10")
            _, mid = run.series("response_length/p50")
            _, hi = run.series("response_length/p90")
            top.fill_between(
                px, lo, hi, color=color, alpha=0.18, lw=0,
                label=_run_label(run, "10th-90th percentile", many),
            )  # fmt: skip
            top.plot(px, mid, color=color, lw=1, ls=":", label=_run_label(run, "median", many))
        mx, my = run.series("stage/max_response_length")
        if mx and i == 0:
            top.step(mx, my, where="mid", color="0.3", ls="--", lw=1, label="stage max length")
        tx, ty = run.series("response/truncated_frac")
        bottom.plot(
            tx,
            [100 * y for y in ty],
            color=color,
            lw=1.5,
            label=run.label if many else "truncated responses",
        )
    for ax in (top, bottom):
        shade_stages(ax, runs, label_top=ax is top)
    top.set_ylabel("response length (tokens)")
    top.set_ylim(bottom=0)
    bottom.set_ylabel("truncated responses (%)")
    bottom.set_ylim(-2, 102)
    bottom.set_xlabel("RL step")
    return _finish(fig, [top, bottom], out, "Response length and truncation", runs)


TRAINING_PANELS = (
    ("loss/pg", "policy loss"),
    ("grad_norm", "gradient norm (before clipping)"),
    ("loss/clipfrac", "PPO clip fraction"),
    ("filter/groups_kept", "groups kept by the filter"),
)
"""``training.png``'s panels: (metric, axis label); ``mismatch/*`` panels follow when logged."""


def plot_training(runs: Sequence[RunData], out: Path) -> Path | None:
    mismatch = sorted(
        {k for run in runs for row in run.rows for k in row if k.startswith("mismatch/")}
    )
    panels = [(k, label) for k, label in TRAINING_PANELS if any(run.has(k) for run in runs)]
    panels += [(k, k) for k in mismatch]
    if not panels:
        return None
    plt = _plt()
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.2 * len(panels) + 0.8), sharex=True)
    axes = list(axes) if len(panels) > 1 else [axes]
    many = len(runs) > 1
    for ax, (key, label) in zip(axes, panels, strict=True):
        for run, color in zip(runs, _colors(len(runs)), strict=True):
            xs, ys = run.series(key)
            ax.plot(xs, ys, color=color, lw=1.2, label=run.label if many else label)
        shade_stages(ax, runs, label_top=ax is axes[0])
        ax.set_ylabel(label, fontsize=8)
    axes[-1].set_xlabel("RL step")
    return _finish(fig, axes, out, "Training signals", runs)


def plot_timing(runs: Sequence[RunData], out: Path) -> Path | None:
    if not any(run.has("timing/step_s") for run in runs):
        return None
    plt = _plt()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), gridspec_kw={"width_ratios": [1, 2]})
    phase_colors = (
        dict(zip(PHASES, _colors(len(PHASES) + 1)[1:], strict=True))
        if len(runs) > 1
        else dict(zip(PHASES, _colors(len(PHASES)), strict=True))
    )
    names = [run.label for run in runs]
    bottoms = [0.0] * len(runs)
    for phase in PHASES:
        means = []
        for run in runs:
            _, total = run.series("timing/step_s")
            _, ys = run.series(f"timing/{phase}_s")
            means.append(sum(ys) / len(total) if total else 0.0)  # eval: averaged over all steps
        if any(means):
            left.bar(
                range(len(runs)),
                means,
                width=0.5,
                bottom=bottoms,
                color=phase_colors[phase],
                label=phase.replace("_", " "),
            )
            bottoms = [b + m for b, m in zip(bottoms, means, strict=True)]
    left.set_xticks(range(len(runs)), names)
    left.set_xlim(-0.5, len(runs) + 0.6)  # room on the right for the legend
    left.grid(axis="x", visible=False)
    left.set_ylabel("mean seconds per step")
    left.set_title("where a step's time goes", fontsize=10)
    left.set_label("bars")
    if len(runs) > 1:
        left.tick_params(axis="x", rotation=20)
    for run, color in zip(runs, _colors(len(runs)), strict=True):
        xs, ys = run.series("timing/step_s")
        evals = dict(zip(*run.series("timing/eval_s"), strict=True))
        ys = [
            y + evals.get(x, 0.0) for x, y in zip(xs, ys, strict=True)
        ]  # step_s excludes validation
        right.plot(
            xs,
            ys,
            color=color,
            lw=1.2,
            label=run.label if len(runs) > 1 else "step time incl. validation",
        )
    shade_stages(right, runs)
    right.set_xlabel("RL step")
    right.set_ylabel("seconds")
    right.set_ylim(bottom=0)
    return _finish(fig, [left, right], out, "Step time", runs)


FIGURES = {
    "reward.png": plot_reward,
    "validation.png": plot_validation,
    "entropy.png": plot_entropy,
    "length.png": plot_length,
    "training.png": plot_training,
    "timing.png": plot_timing,
}


def plot_runs(run_dirs: Sequence[Path], out_dir: Path | None = None) -> list[Path]:
    """Write every figure that has data for ``run_dirs`` to ``out_dir`` (default: the first
    run's ``plots/``); returns the files written."""
    if not run_dirs:
        raise ConfigError("give at least one run folder")
    runs = [load_run(Path(p)) for p in run_dirs]
    for run, label in zip(runs, labels_for([r.path for r in runs]), strict=True):
        run.label = label
    out_dir = Path(out_dir) if out_dir is not None else runs[0].path / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in FIGURES.items():
        path = draw(runs, out_dir / name)
        if path is not None:
            written.append(path)
    return written
