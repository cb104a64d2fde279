"""Loggers: a live console progress bar, and JSON lines files in the run folder."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from or1.core.atomic import atomic_path
from or1.core.config import LoggerConfig
from or1.core.hookspecs import hookimpl
from or1.core.interfaces import Logger


@dataclass
class ConsoleConfig(LoggerConfig):
    name: str = "console"
    show: tuple[str, ...] = ("reward/mean", "entropy/value", "response_length/mean")
    """Metrics shown on the progress bar."""
    table_every: int = 10  # every N steps a compact table of the step's metrics (0: never)
    table: tuple[str, ...] = (
        "reward/mean",
        "filter/groups_kept",
        "response_length/mean",
        "response/truncated_frac",
        "entropy/value",
        "entropy/coef",
        "loss/pg",
        "grad_norm",
        "timing/step_s",
    )
    """Metrics of the periodic table (``table_every``)."""


@dataclass
class JsonlConfig(LoggerConfig):
    name: str = "jsonl"
    metrics_file: str = "metrics.jsonl"
    """One JSON line of metrics per step, in the run folder."""
    samples_file: str = "samples.jsonl"
    """Sample dumps (``trainer.samples_every``), in the run folder."""


SHORT = {
    "reward/mean": "reward",
    "filter/groups_kept": "kept",
    "response_length/mean": "length",
    "response/truncated_frac": "trunc",
    "entropy/value": "entropy",
    "entropy/coef": "ent.coef",
    "loss/pg": "pg loss",
    "grad_norm": "grad",
    "timing/step_s": "step s",
}
"""Column headers of the console table (the metric name when not listed)."""


class ConsoleLogger(Logger):
    """A rich progress bar (step, chosen metrics, elapsed, time left) and a line per
    evaluation. Messages go through Python logging, which prints above the bar."""

    def __init__(self, cfg: Any, ctx: Any = None) -> None:
        self.show = list(cfg.show)
        self.table = list(cfg.table)
        self.table_every = int(cfg.table_every)
        self.progress: Any = None

    def start(
        self, run_dir: Path, config: dict[str, Any], total_steps: int, start_step: int
    ) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]or1[/bold] step"),
            MofNCompleteColumn(),
            BarColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            transient=False,
        )
        self.task = self.progress.add_task(
            "train", total=total_steps, completed=start_step, stats=""
        )
        self.progress.start()

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        val = {k: v for k, v in metrics.items() if k.startswith("val/") and "/avg@" in k}
        if val:
            parts = []
            for key, value in val.items():
                dataset, metric = key[4:].rsplit("/", 1)
                pass1 = metrics.get(f"val/{dataset}/pass@1")
                parts.append(
                    f"{dataset} {metric} {value:.1%}"
                    + (f" (pass@1 {pass1:.1%})" if pass1 is not None else "")
                )
            self.progress.console.print(f"step {step}: held-out {'  '.join(parts)}")
        if "timing/step_s" not in metrics:
            return
        if self.table_every and step % self.table_every == 0:
            self.progress.console.print(self._table(step, metrics))
        stats = "  ".join(
            f"{k.split('/')[0]} {metrics[k]:.3g}"
            for k in self.show
            if k in metrics and math.isfinite(metrics[k])
        )
        self.progress.update(self.task, completed=step, stats=stats)

    def _table(self, step: int, metrics: dict[str, float]) -> Any:
        from rich.table import Table

        keys = [k for k in self.table if k in metrics]
        table = Table(
            title=f"step {step}", title_justify="left", box=None, pad_edge=False, padding=(0, 1)
        )
        for key in keys:
            table.add_column(SHORT.get(key, key), justify="right", no_wrap=True)
        table.add_row(*(f"{metrics[k]:.4g}" for k in keys))
        return table

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _rewrite_upto(path: Path, last_step: int) -> None:
    """Keep the records with ``step <= last_step`` (a resumed run redoes the later ones);
    written to a temporary file and renamed, so the file is never half-written."""
    if not path.exists():
        return
    with atomic_path(path) as tmp, path.open() as src, tmp.open("w") as dst:
        for line in src:
            try:
                if json.loads(line).get("step", 0) <= last_step:
                    dst.write(line)
            except ValueError:
                continue  # a line cut by a crash


class JsonlLogger(Logger):
    """``metrics.jsonl``: one JSON object per step (plus step 0 for the initial evaluation);
    ``samples.jsonl``: one object per sampled response when ``trainer.dump_samples``."""

    def __init__(self, cfg: Any, ctx: Any = None) -> None:
        self.cfg = cfg
        self.files: dict[str, Any] = {}

    def start(
        self, run_dir: Path, config: dict[str, Any], total_steps: int, start_step: int
    ) -> None:
        for key, name in (("metrics", self.cfg.metrics_file), ("samples", self.cfg.samples_file)):
            path = run_dir / name
            if start_step == 0:
                path.unlink(missing_ok=True)
            else:
                _rewrite_upto(path, start_step)
            self.files[key] = path

    def _append(self, key: str, records: list[dict[str, Any]]) -> None:
        with self.files[key].open("a") as fh:
            fh.write("".join(json.dumps(r) + "\n" for r in records))

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self._append("metrics", [{"step": step, **metrics}])

    def log_samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        self._append("samples", samples)


@hookimpl
def or1_register(register: Any) -> None:
    register("logger", "console", ConsoleLogger, ConsoleConfig)
    register("logger", "jsonl", JsonlLogger, JsonlConfig)
