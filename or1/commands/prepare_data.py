"""``or1-data``'s work: run the configured data passes over dataset files, resumably.

Layout of the output folder ``<out>`` (``prep.output_dir`` or the Hydra run folder):

* ``<NN>_<pass>.parquet``: the rows pass ``NN`` (1-based position in the ``data_pass`` list)
  kept. Its parquet metadata (key ``or1_data``) holds the pass's fingerprint (its config, its
  input and the config sections it depends on) and its counts; a later run with the same
  fingerprint skips the pass and reads this file instead.
* ``<NN>_<pass>_report.jsonl``: one line per dropped row, ``{"uid", "file", "row", "reason",
  "details"}`` (``file``/``row``: where the row came from in the input files).
* ``<NN>_<pass>.<fingerprint>.*``: a pass's own work files for resuming inside the pass;
  removed when the pass completes.
* ``final.parquet`` (the last enabled pass's rows), ``summary.json`` and ``summary.md`` (rows
  in, rows out and the reasons per pass), written last: a run that stopped early leaves none
  of them, and every file above is written under a temporary name and renamed when complete.

Every row handed to a pass carries ``uid`` (``<input file stem>:<row index>``, unique) and
``provenance`` (``file``, ``row``; passes may add keys, e.g. ``duplicates``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from or1.core.atomic import atomic_path
from or1.core.data import as_path_list, read_rows, validate_row
from or1.core.errors import ConfigError, DataError, first_line
from or1.core.interfaces import (
    BuildContext,
    DataPass,
    DataPassContext,
    RewardVerifier,
    RolloutEngine,
)
from or1.core.registry import Registry, get_registry
from or1.core.types import DroppedRow, PassResult
from or1.rl.checkpoint import sha256_file

log = logging.getLogger("or1.data_prep")

META_KEY = b"or1_data"
FINAL = "final.parquet"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"


# ----------------------------------------------------------------------------- files


def read_input_rows(path: Path) -> list[dict[str, Any]]:
    """All rows of one input file. A corrupt parquet file is a DataError naming the file and
    the rows (row group) that cannot be read; JSONL errors name the line."""
    if path.suffix.lower() != ".parquet":
        return read_rows(path)
    if not path.exists():
        raise DataError(f"dataset file not found: {path}")
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        raise DataError(f"{path}: row 0: not a readable parquet file ({first_line(exc)})") from None
    rows: list[dict[str, Any]] = []
    for g in range(pf.num_row_groups):
        start = len(rows)
        n = pf.metadata.row_group(g).num_rows
        try:
            rows += pf.read_row_group(g).to_pylist()
        except Exception as exc:
            raise DataError(
                f"{path}: rows {start}-{start + n - 1} (row group {g}): unreadable ({first_line(exc)})"
            ) from None
    return rows


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def arrow_table(rows: Sequence[dict[str, Any]], where: str) -> Any:
    """``rows`` as a pyarrow table. Keys of a struct column (``extra_info``) whose values have
    different types in different rows are stored as JSON strings so that files from several
    sources can be merged; a column that still cannot be typed is a DataError naming it."""
    import pyarrow as pa

    try:
        return pa.Table.from_pylist(list(rows))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    columns = list(dict.fromkeys(k for r in rows for k in r))
    fixed = [dict(r) for r in rows]
    for col in columns:
        try:
            pa.array([r.get(col) for r in fixed])
            continue
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            error = exc
        values = [r.get(col) for r in fixed]
        if all(v is None or isinstance(v, dict) for v in values):
            keys = {k for v in values if v for k in v}
            for key in keys:
                types = {type(v[key]) for v in values if v and v.get(key) is not None}
                if len(types) > 1 or types & {list, dict}:
                    for v in values:
                        if v and v.get(key) is not None and not isinstance(v[key], str):
                            v[key] = json.dumps(v[key], sort_keys=True, default=str)
            try:
                pa.array(values)
                continue
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                error = exc
        raise DataError(
            f"{where}: column '{col}' has values of incompatible types ({first_line(error)})"
        )
    return pa.Table.from_pylist(fixed)


def write_rows(
    rows: Sequence[dict[str, Any]], path: Path, meta: dict[str, Any], where: str
) -> None:
    """Write ``rows`` (with ``meta`` under the parquet metadata key ``or1_data``) atomically."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = arrow_table(rows, where)
    for i, f in enumerate(table.schema):
        if pa.types.is_struct(f.type) and f.type.num_fields == 0:  # parquet cannot store {} structs
            table = table.set_column(i, f.name, pa.nulls(table.num_rows))
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), META_KEY: json.dumps(meta).encode()}
    )
    with atomic_path(path) as tmp:
        try:
            pq.write_table(table, tmp)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise DataError(f"{where}: cannot write {path.name} ({first_line(exc)})") from None


def read_meta(path: Path) -> dict[str, Any] | None:
    """The ``or1_data`` metadata of a pass output, or None (absent, unreadable, foreign)."""
    import pyarrow.parquet as pq

    try:
        raw = (pq.read_schema(path).metadata or {}).get(META_KEY)
        return json.loads(raw) if raw else None
    except Exception:
        return None


def write_jsonl(records: Sequence[dict[str, Any]], path: Path) -> None:
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec, default=str) + "\n")


# --------------------------------------------------------------------------- context


class PrepContext(DataPassContext):
    """The :class:`or1.core.interfaces.DataPassContext` of one ``or1-data`` run."""

    def __init__(self, cfg: DictConfig, registry: Registry, out_dir: Path, progress: Any) -> None:
        self.config = cfg
        self.registry = registry
        self.out_dir = out_dir
        self.prefix = out_dir
        self.fingerprint = ""
        self.seed = int(cfg.trainer.seed)
        self.workers = int(cfg.prep.workers) if cfg.prep.workers > 0 else (os.cpu_count() or 1)
        self.cache_dir = Path(cfg.trainer.cache_dir).expanduser()
        self._bar = progress
        self._verifiers: dict[str, RewardVerifier] = {}
        self._engines: dict[str, tuple[RolloutEngine, Any]] = {}

    def progress(self, total: int, description: str) -> Callable[[int], None]:
        task = self._bar.add_task(description, total=total)
        return lambda n=1: self._bar.advance(task, n)

    def _build_context(self, model_path: Path) -> BuildContext:
        return BuildContext(
            run_dir=self.out_dir,
            model_path=model_path,
            cache_dir=self.cache_dir,
            seed=self.seed,
            config=self.config,
        )

    def verifier(self, name: str, overrides: dict[str, Any] | None = None) -> RewardVerifier:
        key = json.dumps([name, overrides or {}], sort_keys=True, default=str)
        if key not in self._verifiers:
            ctx = self._build_context(self.out_dir)
            self._verifiers[key] = self.registry.build_partial("verifier", name, overrides, ctx)
        return self._verifiers[key]

    def run_verifier(self) -> RewardVerifier:
        key = "__run__"
        if key not in self._verifiers:
            self._verifiers[key] = self.registry.build(
                "verifier", self.config.verifier, self._build_context(self.out_dir)
            )
        return self._verifiers[key]

    def rollout(self, model_path: str | None = None) -> tuple[RolloutEngine, Any]:
        from or1.launch.model_support import check_model_support
        from or1.launch.prepare import load_tokenizer, resolve_model

        key = model_path or "__policy__"
        if key not in self._engines:
            if model_path:
                cfg = OmegaConf.merge(self.config, {"model": {"path": model_path}})
            else:
                cfg = self.config
            path = resolve_model(cfg, self.registry, self.cache_dir)
            check_model_support(self.config, self.registry, path, groups=("rollout",))
            tokenizer = load_tokenizer(path)
            engine = self.registry.build("rollout", self.config.rollout, self._build_context(path))
            self._engines[key] = (engine, tokenizer)
        return self._engines[key]

    def val_files(self) -> list[Path]:
        from or1.launch.prepare import resolve_data

        if self.config.data.path:
            return as_path_list(self.config.data.val_path)
        return resolve_data(self.config, self.registry, self.cache_dir)[1]

    def close(self) -> None:
        for v in self._verifiers.values():
            v.close()
        for engine, _ in self._engines.values():
            engine.close()
        self._verifiers.clear()
        self._engines.clear()


# ---------------------------------------------------------------------------- inputs


def input_files(cfg: DictConfig, registry: Registry) -> list[Path]:
    """``prep.inputs``, or the data section's train files (the data source builds them)."""
    if cfg.prep.inputs:
        return [Path(p).expanduser() for p in cfg.prep.inputs]
    from or1.launch.prepare import resolve_data

    return resolve_data(cfg, registry, Path(cfg.trainer.cache_dir).expanduser())[0]


def load_inputs(files: Sequence[Path]) -> list[dict[str, Any]]:
    """Every row of ``files`` with ``uid`` (``<stem>:<row>``, the stem made unique) and
    ``provenance`` (``file``, ``row``) set; earlier values of those two columns are replaced."""
    if not files:
        raise ConfigError("or1-data: no input file (set prep.inputs or data.path)")
    stems: Counter[str] = Counter()
    out: list[dict[str, Any]] = []
    for path in files:
        rows = read_input_rows(path)
        stems[path.stem] += 1
        stem = path.stem if stems[path.stem] == 1 else f"{path.stem}#{stems[path.stem]}"
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise DataError(f"{path}: row {i}: not a table row / JSON object")
            out.append({**row, "uid": f"{stem}:{i}", "provenance": {"file": str(path), "row": i}})
    return out


def where(row: dict[str, Any]) -> str:
    prov = row.get("provenance") or {}
    return f"{prov.get('file', '?')}: row {prov.get('row', '?')}"


# ---------------------------------------------------------------------------- passes


def pass_fingerprint(
    cfg: DictConfig, previous: str, index: int, name: str, data_pass: DataPass
) -> str:
    spec = {
        "previous": previous,
        "index": index,
        "name": name,
        "config": OmegaConf.to_container(cfg.data_pass[name], resolve=True),
        "sections": {
            s: OmegaConf.to_container(cfg[s], resolve=True) for s in data_pass.fingerprint_sections
        },
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()


def check_result(name: str, rows: list[dict[str, Any]], result: PassResult) -> None:
    """A pass must account for every input row exactly once (kept xor dropped)."""
    if not isinstance(result, PassResult):
        raise TypeError(f"data pass '{name}' returned {type(result).__name__}, not a PassResult")
    seen: Counter[str] = Counter(r.get("uid") for r in result.rows)
    seen.update(d.uid for d in result.dropped)
    expected = Counter(r["uid"] for r in rows)
    if seen != expected:
        extra = sorted(set(seen) - set(expected))[:3]
        missing = sorted(set(expected) - set(seen))[:3]
        twice = sorted(u for u, c in seen.items() if c > 1)[:3]
        raise RuntimeError(
            f"data pass '{name}' broke its contract: rows unknown {extra}, unaccounted {missing}, "
            f"kept or dropped twice {twice}"
        )
    for row in result.rows:
        validate_row(row, f"data pass '{name}' output ({where(row)})")


def report_records(rows: list[dict[str, Any]], dropped: list[DroppedRow]) -> list[dict[str, Any]]:
    by_uid = {r["uid"]: r for r in rows}
    out = []
    for d in dropped:
        prov = by_uid[d.uid].get("provenance") or {}
        out.append(
            {
                "uid": d.uid,
                "file": prov.get("file"),
                "row": prov.get("row"),
                "reason": d.reason,
                "details": _jsonable(d.details),
            }
        )
    return out


def _pass_names(cfg: DictConfig) -> list[str]:
    names = list(cfg.data_pass.keys()) if cfg.data_pass else []
    if not names:
        raise ConfigError("or1-data: no data pass selected (data_pass=[normalise,dedup,...])")
    for name in names:
        node = cfg.data_pass[name]
        if node.get("name") != name:
            raise ConfigError(
                f"data_pass.{name}: its name is '{node.get('name')}'; select passes with data_pass=[...]"
            )
    return names


def run_pipeline(cfg: DictConfig, default_out: Path) -> dict[str, Any]:
    """Run every pass of ``cfg.data_pass`` in order; returns the summary (also saved)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    registry = get_registry()
    names = _pass_names(cfg)
    for name in names:  # every pass is registered, before anything is read or written
        registry.get("data_pass", name)
    out_dir = Path(cfg.prep.output_dir).expanduser() if cfg.prep.output_dir else default_out
    out_dir.mkdir(parents=True, exist_ok=True)
    for leftover in (FINAL, SUMMARY_JSON, SUMMARY_MD):
        (out_dir / leftover).unlink(missing_ok=True)
    files = input_files(cfg, registry)
    for path in files:
        if not path.is_file():
            raise DataError(f"dataset file not found: {path}")
    previous = hashlib.sha256(
        json.dumps([[str(p.resolve()), sha256_file(p)] for p in files]).encode()
    ).hexdigest()
    console = Console(stderr=True)
    summary: list[dict[str, Any]] = []
    current_file: Path | None = None
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    ctx = PrepContext(cfg, registry, out_dir, progress)
    try:
        with progress:
            for index, name in enumerate(names, 1):
                pass_cfg = cfg.data_pass[name]
                if not pass_cfg.enabled:
                    summary.append(
                        {"pass": f"{index:02d}_{name}", "name": name, "status": "disabled"}
                    )
                    continue
                data_pass: DataPass = registry.build("data_pass", pass_cfg, ctx)
                try:
                    fp, entry = _run_pass(
                        cfg, ctx, data_pass, index, name, previous, files, current_file, console
                    )
                finally:
                    data_pass.close()
                summary.append(entry)
                previous, current_file = fp, out_dir / entry["output"]
    finally:
        ctx.close()
    if current_file is None:
        raise ConfigError("or1-data: every data pass is disabled; nothing to write")
    import shutil

    with atomic_path(out_dir / FINAL) as tmp:
        shutil.copyfile(current_file, tmp)
    ran = [s for s in summary if s["status"] != "disabled"]
    result = {
        "inputs": [str(p) for p in files],
        "output": str(out_dir / FINAL),
        "rows_in": ran[0]["rows_in"],
        "rows_out": ran[-1]["rows_out"],
        "passes": summary,
    }
    write_summary(result, out_dir)
    return result


def _run_pass(
    cfg: DictConfig,
    ctx: PrepContext,
    data_pass: DataPass,
    index: int,
    name: str,
    previous: str,
    files: Sequence[Path],
    current_file: Path | None,
    console: Any,
) -> tuple[str, dict[str, Any]]:
    """Run (or skip, when its output has the same fingerprint) one pass; returns its
    fingerprint and its summary entry."""
    label = f"{index:02d}_{name}"
    out_dir = ctx.out_dir
    fp = pass_fingerprint(cfg, previous, index, name, data_pass)
    out_path, report_path = out_dir / f"{label}.parquet", out_dir / f"{label}_report.jsonl"
    meta = read_meta(out_path) if out_path.is_file() else None
    entry: dict[str, Any] = {"pass": label, "name": name}
    t0 = time.monotonic()
    if meta and meta.get("fingerprint") == fp and report_path.is_file():
        console.print(f"or1-data: {label}: done before ({out_path.name}), skipped", highlight=False)
        entry.update(meta["stats"], status="resumed")
    else:
        rows = load_inputs(files) if current_file is None else read_input_rows(current_file)
        if not data_pass.raw_input and current_file is None:
            for row in rows:
                validate_row(row, where(row))
        ctx.prefix, ctx.fingerprint = out_dir / label, fp[:16]
        result = data_pass.run(rows, ctx)
        check_result(name, rows, result)
        reasons = Counter(d.reason for d in result.dropped)
        stats = {
            "rows_in": len(rows),
            "rows_out": len(result.rows),
            "dropped": len(result.dropped),
            "reasons": dict(sorted(reasons.items())),
        }
        write_jsonl(report_records(rows, result.dropped), report_path)
        write_rows(result.rows, out_path, {"fingerprint": fp, "stats": stats}, f"pass {label}")
        for work in out_dir.glob(f"{label}.*.*"):
            work.unlink(missing_ok=True)
        entry.update(stats, status="ran")
    entry.update(
        seconds=round(time.monotonic() - t0, 2), output=out_path.name, report=report_path.name
    )
    return fp, entry


def summary_markdown(result: dict[str, Any]) -> str:
    lines = [
        "# or1-data summary",
        "",
        f"Inputs: {', '.join(result['inputs'])}  ",
        f"Output: {result['output']} ({result['rows_out']} of {result['rows_in']} rows)",
        "",
        "| pass | status | rows in | rows out | dropped | reasons | seconds |",
        "|---|---|---:|---:|---:|---|---:|",
    ]
    for s in result["passes"]:
        reasons = ", ".join(f"{k} {v}" for k, v in (s.get("reasons") or {}).items()) or "-"
        lines.append(
            f"| {s['pass']} | {s['status']} | {s.get('rows_in', '-')} | {s.get('rows_out', '-')} | "
            f"{s.get('dropped', '-')} | {reasons} | {s.get('seconds', '-')} |"
        )
    return "\n".join(lines) + "\n"


def write_summary(result: dict[str, Any], out_dir: Path) -> None:
    """Print the summary table (stdout) and save it as ``summary.md`` and ``summary.json``."""
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"or1-data: {result['rows_out']} of {result['rows_in']} rows -> {result['output']}"
    )
    for col, justify in [
        ("pass", "left"),
        ("status", "left"),
        ("in", "right"),
        ("out", "right"),
        ("dropped", "right"),
        ("reasons", "left"),
        ("s", "right"),
    ]:
        table.add_column(col, justify=justify, no_wrap=col != "reasons")  # type: ignore[arg-type]
    for s in result["passes"]:
        reasons = "\n".join(f"{k} {v}" for k, v in (s.get("reasons") or {}).items()) or "-"
        table.add_row(
            s["pass"],
            s["status"],
            str(s.get("rows_in", "-")),
            str(s.get("rows_out", "-")),
            str(s.get("dropped", "-")),
            reasons,
            str(s.get("seconds", "-")),
        )
    Console().print(table)
    with atomic_path(out_dir / SUMMARY_MD) as tmp:
        tmp.write_text(summary_markdown(result))
    with atomic_path(out_dir / SUMMARY_JSON) as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
