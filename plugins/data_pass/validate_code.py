"""The ``validate_code`` pass: keep code problems whose tests are complete and that their
reference solution passes, run in the sandboxed ``code`` verifier from the registry.

Math rows pass through. For each code row:

1. its tests (``reward_model.ground_truth``, any schema of docs/verifiers.md) must be
   complete: readable, at least ``min_tests`` tests, and as many expected outputs as inputs
   (TACO / APPS) or a ``check`` with asserts (LeetCode); otherwise ``incomplete_tests``;
2. with a reference solution (``extra_info.reference_solution``) the verifier runs it against
   every test: kept when it passes (``code_validation: passed``), else ``reference_failed``
   (the verifier's status and message) or ``broken_tests`` when the verifier cannot use the
   tests at all;
3. without one the row is kept as ``code_validation: no_reference`` after the verifier has
   checked that it can read the tests, or dropped (``no_reference``) with
   ``require_reference: true``.

Solutions run ``prep.workers`` sandboxes at a time (``verifier`` overrides the code verifier's
config, e.g. ``{test_timeout_s: 10}``); verdicts are appended to a work file as they arrive, so
an interrupted run resumes without re-running them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from or1.core.config import DataPassConfig
from or1.core.interfaces import DataPass, DataPassContext
from or1.core.types import DroppedRow, PassResult

from .worklog import WorkLog

COLUMN = "code_validation"
EMPTY_PROGRAM = "```python\npass\n```"


@dataclass
class ValidateCodeConfig(DataPassConfig):
    """``require_reference``: drop code rows without a reference solution; ``min_tests``:
    fewest tests a complete suite has; ``verifier``: overrides of the ``code`` verifier's
    config (``workers`` defaults to ``prep.workers``); ``chunk``: solutions per verifier call."""

    name: str = "validate_code"
    require_reference: bool = False
    min_tests: int = 1
    verifier: dict[str, Any] = field(default_factory=dict)
    chunk: int = 32


def _decode(gt: Any) -> Any:
    if isinstance(gt, str):
        try:
            return json.loads(gt)
        except ValueError:
            return gt
    return gt


def completeness(gt: Any, min_tests: int) -> str | None:
    """Why the tests are incomplete, or None. Schemas the check does not know are left to
    the verifier."""
    tests = _decode(gt)
    if isinstance(tests, str):
        return "ground truth is neither JSON nor a known test format"
    if isinstance(tests, dict) and ("inputs" in tests or "outputs" in tests):
        ins, outs = tests.get("inputs"), tests.get("outputs")
        if not isinstance(ins, list) or not isinstance(outs, list):
            return "'inputs' and 'outputs' must be lists"
        if len(ins) != len(outs):
            return f"{len(ins)} inputs but {len(outs)} outputs"
        if len(ins) < min_tests:
            return f"{len(ins)} tests, fewer than {min_tests}"
        return None
    if isinstance(tests, dict) and "test_code" in tests:
        code = tests.get("test_code")
        if not isinstance(code, str) or "assert" not in code:
            return "'test_code' has no assert"
        if not tests.get("entry_point"):
            return "no 'entry_point'"
        return None
    if isinstance(tests, dict) and "assert_case" in tests:
        tests = tests["assert_case"]
    if isinstance(tests, list):
        if len(tests) < min_tests:
            return f"{len(tests)} tests, fewer than {min_tests}"
        return None
    return None


def reference(row: dict[str, Any]) -> str | None:
    extra = row.get("extra_info")
    ref = extra.get("reference_solution") if isinstance(extra, dict) else None
    return ref if isinstance(ref, str) and ref.strip() else None


class ValidateCode(DataPass):
    """Reference solutions through the sandboxed code verifier (module docstring)."""

    def __init__(self, cfg: Any, ctx: Any = None) -> None:
        self.cfg = cfg

    def run(self, rows: list[dict[str, Any]], ctx: DataPassContext) -> PassResult:
        c = self.cfg
        verdict: dict[str, tuple[str | None, dict[str, Any]]] = {}  # uid -> (drop reason, details)
        todo: list[tuple[dict[str, Any], str]] = []
        for row in rows:
            if row.get("ability") != "code":
                continue
            why = completeness(row["reward_model"]["ground_truth"], c.min_tests)
            ref = reference(row)
            if why is not None:
                verdict[row["uid"]] = ("incomplete_tests", {"message": why})
            elif ref is None and c.require_reference:
                verdict[row["uid"]] = (
                    "no_reference",
                    {"message": "no extra_info.reference_solution"},
                )
            else:
                todo.append((row, EMPTY_PROGRAM if ref is None else f"```python\n{ref}\n```"))
        log = WorkLog(ctx.prefix.with_name(f"{ctx.prefix.name}.{ctx.fingerprint}.progress.jsonl"))
        pending = [(r, p) for r, p in todo if r["uid"] not in log.done]
        advance = ctx.progress(len(todo), "validate_code")
        advance(len(todo) - len(pending))
        if pending:
            overrides = {"workers": ctx.workers, **dict(c.verifier)}
            verifier = ctx.verifier("code", overrides)
            for start in range(0, len(pending), c.chunk):
                part = pending[start : start + c.chunk]
                scores = verifier.score_many([p for _, p in part], [r for r, _ in part])
                log.add(
                    {
                        "uid": r["uid"],
                        "status": s.status,
                        "message": s.reason,
                        "ran_reference": p != EMPTY_PROGRAM,
                    }
                    for (r, p), s in zip(part, scores, strict=True)
                )
                advance(len(part))
        for row, _ in todo:
            rec = log.done[row["uid"]]
            details = {"status": rec["status"], "message": rec["message"]}
            if rec["status"] == "error" and str(rec["message"]).startswith(
                ("ground truth", "row has no")
            ):
                verdict[row["uid"]] = ("broken_tests", details)
            elif not rec["ran_reference"]:
                verdict[row["uid"]] = (None, {"result": "no_reference"})
            elif rec["status"] == "correct":
                verdict[row["uid"]] = (None, {"result": "passed"})
            else:
                verdict[row["uid"]] = ("reference_failed", details)
        kept, dropped = [], []
        for row in rows:
            reason, details = verdict.get(row["uid"], (None, {"result": "not_code"}))
            if reason is None:
                kept.append({**row, COLUMN: details["result"]})
            else:
                dropped.append(DroppedRow(row["uid"], reason, details))
        return PassResult(kept, dropped)
