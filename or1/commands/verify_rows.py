"""``or1-verify``'s work: score the rows of a JSONL file with a registered verifier, in
chunks, in input order (``or1/cli/verify.py`` parses the arguments)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from or1.core.errors import ConfigError, DataError, Or1Error, first_line

CHUNK = 64


def read_input(path: Path) -> list[tuple[dict[str, Any] | None, str | None]]:
    """``(row, problem)`` per non-blank line: the parsed row, or None and why it is unusable."""
    if not path.is_file():
        raise DataError(f"input file not found: {path}")
    out: list[tuple[dict[str, Any] | None, str | None]] = []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                out.append(({"line": lineno}, f"line {lineno}: invalid JSON ({e.msg})"))
                continue
            if not isinstance(row, dict):
                out.append(
                    ({"line": lineno, "value": row}, f"line {lineno}: a row must be a JSON object")
                )
                continue
            out.append((row, None))
    return out


def verifier_row(row: dict[str, Any]) -> tuple[str, dict[str, Any]] | str:
    """``(response, dataset-style row)`` for the verifier, or why the row cannot be scored."""
    response = row.get("response")
    if not isinstance(response, str):
        return "missing 'response' (a string)"
    ability = row.get("ability")
    if not isinstance(ability, str) or not ability:
        return "missing 'ability' (math or code)"
    if "ground_truth" in row:
        gt = row["ground_truth"]
    else:
        rm = row.get("reward_model")
        gt = rm.get("ground_truth") if isinstance(rm, dict) else None
    if gt is None:
        return "missing 'ground_truth'"
    return response, {**row, "ability": ability, "reward_model": {"ground_truth": gt}}


def build_verifier(name: str, workers: int, overrides: list[str]) -> Any:
    """The named verifier from the registry, its schema's defaults updated with ``--workers``
    and ``--set`` overrides."""
    from omegaconf import OmegaConf

    from or1.core.interfaces import BuildContext
    from or1.core.registry import get_registry

    registry = get_registry()
    registry.get("verifier", name)  # an unknown name first, naming the registered ones
    dotlist = []
    if workers > 0:
        if name == "auto":
            dotlist += [f"routes.math.workers={workers}", f"routes.code.workers={workers}"]
        else:
            dotlist.append(f"workers={workers}")
    dotlist += list(overrides)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
    try:
        overrides = OmegaConf.to_container(OmegaConf.from_dotlist(dotlist))
    except Exception as e:
        raise ConfigError(f"verifier '{name}' config: {first_line(e)}") from None
    run_dir = Path(tempfile.mkdtemp(prefix="or1-verify-"))
    ctx = BuildContext(run_dir=run_dir, model_path=run_dir, cache_dir=run_dir, seed=0, config=None)
    return registry.build_partial("verifier", name, overrides, ctx)


def _score_chunk(
    verifier: Any,
    items: list[tuple[int, str, dict[str, Any]]],
    results: dict[int, tuple[float, str, str]],
) -> None:
    """Score a chunk; if the verifier raises, score its rows one at a time so one bad row (or
    an unavailable component) only marks the rows it concerns."""
    try:
        scores = verifier.score_many([r for _, r, _ in items], [row for _, _, row in items])
        for (i, _, _), s in zip(items, scores, strict=True):
            results[i] = (float(s.value), str(s.status), str(s.reason))
        return
    except Exception:  # noqa: BLE001 - isolate per row below
        pass
    for i, response, row in items:
        try:
            s = verifier.score_many([response], [row])[0]
            results[i] = (float(s.value), str(s.status), str(s.reason))
        except Or1Error as e:
            results[i] = (0.0, "error", str(e))
        except Exception as e:  # noqa: BLE001 - a verifier bug must not stop the file
            results[i] = (0.0, "error", f"{type(e).__name__}: {e}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    src = Path(args.input)
    rows = read_input(src)
    if args.output == "-":
        out_path = None
    else:
        out_path = Path(args.output) if args.output else src.with_name(src.stem + ".verified.jsonl")
        if out_path.resolve() == src.resolve():
            raise ConfigError(f"output {out_path} would overwrite the input")
    results: dict[int, tuple[float, str, str]] = {}
    todo: list[tuple[int, str, dict[str, Any]]] = []
    for i, (row, problem) in enumerate(rows):
        if problem is None:
            prepared = verifier_row(row)
            if isinstance(prepared, str):
                problem = f"row {i}: {prepared}"
            else:
                todo.append((i, *prepared))
        if problem is not None:
            results[i] = (0.0, "error", problem)
    console = Console(stderr=True)
    t0 = time.monotonic()
    verifier = build_verifier(args.verifier, args.workers, args.set) if todo else None
    try:
        with Progress(
            TextColumn("or1-verify"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            disable=args.no_progress,
        ) as bar:
            task = bar.add_task("rows", total=len(rows))
            bar.advance(task, len(rows) - len(todo))
            for k in range(0, len(todo), CHUNK):
                chunk = todo[k : k + CHUNK]
                _score_chunk(verifier, chunk, results)
                bar.advance(task, len(chunk))
    finally:
        if verifier is not None:
            verifier.close()
    elapsed = time.monotonic() - t0
    fh = sys.stdout if out_path is None else out_path.open("w", encoding="utf-8")
    try:
        for i, (row, _) in enumerate(rows):
            score, status, message = results[i]
            fh.write(
                json.dumps({**row, "score": score, "status": status, "message": message}) + "\n"
            )
    finally:
        if out_path is not None:
            fh.close()
    counts = Counter(results[i][1] for i in range(len(rows)))
    rate = len(todo) / elapsed if elapsed > 0 else 0.0
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
    where = "stdout" if out_path is None else str(out_path)
    console.print(
        f"or1-verify: {len(rows)} rows in {elapsed:.1f} s ({rate:.1f} rows/s): {summary or 'none'} -> {where}",
        highlight=False,
    )
    return {
        "rows": len(rows),
        "seconds": elapsed,
        "rows_per_s": rate,
        "counts": dict(counts),
        "output": where,
    }
