"""The summary of a sweep (``or1-train -m ...``): one row per run, its overrides and final metrics.

Hydra's multirun puts each run in its own folder under the sweep folder
(``multirun/<date>/<time>/<job number>/``). :class:`SweepSummary` is a Hydra callback (enabled in
``conf/train.yaml`` under ``hydra.callbacks``) that, when the sweep ends, reads every run
folder below the sweep folder and writes ``sweep_summary.csv`` and ``sweep_summary.md`` there:

* ``run``: the run folder, relative to the sweep folder;
* ``status``: ``done`` when the run wrote ``summary.json``; else what the launcher recorded in
  the run folder's ``job_status.json`` when the job ended unfinished (or1's submitit
  launchers: ``failed``, ``preempted``); else ``incomplete`` (running, or stopped with no
  record);
* one column per override that differs between the runs (the swept keys), and ``overrides``
  with all of them as one string;
* every number in the run's ``summary.json`` (``steps``, start and end accuracy per eval
  set, ...), then the last logged value of each metric named in ``metrics``.

It reads only files, so it works the same with any launcher (basic, joblib, submitit on SLURM:
the sweep folder must be on a shared file system). A job of several processes (ranks) has one
run folder, written by rank 0 alone, and one row. It also rewrites the summary after each job
(atomically; in a job of several ranks, rank 0 does), so a sweep stopped early still leaves one
for the runs that finished.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from or1.core.atomic import atomic_path

log = logging.getLogger("or1.sweep")

SUMMARY_NAME = "sweep_summary"
DEFAULT_METRICS = ("reward/mean", "entropy/value", "response_length/mean", "loss/pg")
JOB_STATUS = "job_status.json"
"""A run folder's record of how its job ended unfinished, written by or1's submitit
launchers (``hydra_plugins/or1_spmd_launcher``): ``status`` (``failed``, ``preempted``),
``reason`` (one line), ``job`` (the job number), ``job_id``, ``overrides``."""
UNFINISHED = ("failed", "preempted")


def record_job_status(
    run_dir: Path, status: str, reason: str, job: int, job_id: str, overrides: Sequence[str]
) -> None:
    """Write ``run_dir/job_status.json`` (atomically; the folder is made if the job never
    made it)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "status": status,
        "reason": reason,
        "job": job,
        "job_id": job_id,
        "overrides": list(overrides),
    }
    _write_atomic(run_dir / JOB_STATUS, json.dumps(record, indent=1) + "\n")


def read_job_status(run_dir: Path) -> dict[str, Any] | None:
    """The run folder's job status record, None without one (or an unreadable one)."""
    try:
        record = json.loads((run_dir / JOB_STATUS).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def clear_job_status(run_dir: Path) -> None:
    """Forget how the run's previous job ended (a new job for it is starting)."""
    (run_dir / JOB_STATUS).unlink(missing_ok=True)


def _read_overrides(run_dir: Path) -> list[str]:
    from omegaconf import OmegaConf

    path = run_dir / ".hydra" / "overrides.yaml"
    if path.is_file():
        return [str(o) for o in OmegaConf.load(path)]
    record = read_job_status(run_dir)  # a job that ended before its run wrote anything
    return [str(o) for o in (record or {}).get("overrides", [])]


def run_status(run_dir: Path) -> str:
    """``done`` (``summary.json``), the job status record's ``failed`` / ``preempted``, else
    ``incomplete``."""
    if (run_dir / "summary.json").is_file():
        return "done"
    record = read_job_status(run_dir)
    status = (record or {}).get("status")
    return status if status in UNFINISHED else "incomplete"


def _last_metrics(path: Path, names: Sequence[str]) -> dict[str, Any]:
    """The last value of each named metric in a ``metrics.jsonl`` (lines may lack some keys)."""
    out: dict[str, Any] = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash
        for name in names:
            if name in record:
                out[name] = record[name]
    return out


def _split(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key, value


def collect(
    sweep_dir: Path, metrics: Sequence[str] = DEFAULT_METRICS
) -> tuple[list[str], list[dict[str, Any]]]:
    """The summary's columns and rows (one per run folder below ``sweep_dir``, in job order)."""
    found = {p.parent.parent for p in sweep_dir.glob("**/.hydra/overrides.yaml")}
    found |= {p.parent for p in sweep_dir.glob(f"**/{JOB_STATUS}")}
    run_dirs = sorted(
        found,
        key=lambda d: [int(s) if s.isdigit() else s for s in d.relative_to(sweep_dir).parts],
    )
    runs = [(d, _read_overrides(d)) for d in run_dirs]
    values: dict[str, set[str]] = {}
    for _, overrides in runs:
        for key, value in map(_split, overrides):
            values.setdefault(key, set()).add(value)
    everywhere = [k for k in values if all(k in dict(map(_split, o)) for _, o in runs)]
    swept = [k for k in values if len(values[k]) > 1 or k not in everywhere]
    if not swept:  # nothing varies (a one-run sweep): show every override
        swept = list(values)
    rows: list[dict[str, Any]] = []
    summary_keys: list[str] = []
    for run_dir, overrides in runs:
        given = dict(map(_split, overrides))
        row: dict[str, Any] = {"run": str(run_dir.relative_to(sweep_dir))}
        summary_path = run_dir / "summary.json"
        row["status"] = run_status(run_dir)
        row.update({k: given.get(k, "") for k in swept})
        row["overrides"] = " ".join(f"{k}={given[k]}" for k in swept if k in given)
        if summary_path.is_file():
            summary = json.loads(summary_path.read_text())
            for key, value in summary.items():
                if isinstance(value, int | float) and not isinstance(value, bool):
                    row[key] = value
                    if key not in summary_keys:
                        summary_keys.append(key)
        row.update(_last_metrics(run_dir / "metrics.jsonl", metrics))
        rows.append(row)
    present = [m for m in metrics if any(m in r for r in rows)]
    columns = ["run", "status", *swept, "overrides", *summary_keys, *present]
    return columns, rows


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_markdown(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    shown = [c for c in columns if c != "overrides"]  # the swept keys are their own columns
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for row in rows:
        lines.append(
            "| " + " | ".join(_fmt(row.get(c, "")).replace("|", "\\|") for c in shown) + " |"
        )
    return "\n".join(lines) + "\n"


def render_csv(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in columns})
    return buf.getvalue()


def _write_atomic(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_summary(
    sweep_dir: Path, metrics: Sequence[str] = DEFAULT_METRICS
) -> tuple[Path, Path, int]:
    """Write ``sweep_summary.csv`` and ``.md`` in ``sweep_dir``; returns both paths and the
    number of runs."""
    columns, rows = collect(sweep_dir, metrics)
    csv_path = sweep_dir / f"{SUMMARY_NAME}.csv"
    md_path = sweep_dir / f"{SUMMARY_NAME}.md"
    _write_atomic(csv_path, render_csv(columns, rows))
    _write_atomic(md_path, render_markdown(columns, rows))
    return csv_path, md_path, len(rows)


class SweepSummary(Callback):
    """Hydra callback: writes the sweep summary after each job and at the end of the sweep.

    ``metrics``: the metrics (keys of ``metrics.jsonl``) whose last value gets a column.
    """

    def __init__(self, metrics: Sequence[str] = DEFAULT_METRICS) -> None:
        self.metrics = tuple(metrics)

    def _write(self, sweep_dir: Any) -> tuple[Path, Path, int] | None:
        path = Path(str(sweep_dir))
        if not path.is_dir():
            return None
        try:
            return write_summary(path, self.metrics)
        except Exception as exc:  # a summary must never fail the sweep it describes
            log.warning("could not write the sweep summary in %s: %s", path, exc)
            return None

    def on_job_end(self, config: Any, job_return: Any, **kwargs: Any) -> None:
        from hydra.types import RunMode

        from or1.launch import distributed

        if distributed.rank() != 0:  # each task of a multi-task job ends its own Hydra job
            return
        hydra_cfg = config.get("hydra") if hasattr(config, "get") else None
        if hydra_cfg is not None and hydra_cfg.get("mode") == RunMode.MULTIRUN:
            self._write(hydra_cfg.sweep.dir)

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        written = self._write(config.hydra.sweep.dir)
        if written is not None:
            csv_path, md_path, n = written
            log.info("sweep summary (%d runs): %s and %s", n, md_path, csv_path.name)
