"""The code reward verifier: the last ```python block, run against the row's unit tests in a
sandbox, reward 1 when every test passes (or the fraction passed, with ``partial_credit``).

Per response: the answer region (after the first ``</think>``) -> the last fenced Python
block -> the ground truth's test suite (:mod:`.cases`) -> one sandbox run (:mod:`.sandbox`)
whose records are checked here, as data, against expected answers that never entered the
sandbox. Every test must report; a test that did not run fails. Responses run in parallel,
``workers`` sandboxes at a time.

Call-based tests get a default import prefix (:func:`.cases.default_import_prefix`) unless the
row has an ``import_prefix`` of its own. Stdout is compared by an output checker
(:func:`.cases.output_matches`): the row's ``checker``, else the one of its data source
(``checkers``, matched against ``data_source`` and then the layout), else ``checker``. A row
whose ground truth cannot be used scores ``error`` with one line naming the row's id and the
field at fault.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from or1.core.config import VerifierConfig
from or1.core.errors import ConfigError
from or1.core.interfaces import RewardVerifier
from or1.core.types import Score

from ._driver import HEADER_END
from .cases import (
    CHECKERS,
    DEFAULT_TOLERANCE,
    Case,
    GroundTruthError,
    Suite,
    default_import_prefix,
    output_matches,
    parse_ground_truth,
    value_matches,
)
from .sandbox import Limits, Sandbox

THINK_END = "</think>"
_FENCE_RE = re.compile(r"```[ \t]*(python3?|py)[ \t]*\r?\n(.*?)```", re.IGNORECASE | re.DOTALL)
_SHOW = 60

# The checker each source's own judge applies (see docs/verifiers.md, "Output checkers"); a key
# matches a row whose ``data_source`` contains it (the longest such key wins), or the layout.
SOURCE_CHECKERS: dict[str, str] = {
    "taco": "float_tol",
    "apps": "float_tol",
    "primeintellect": "float_tol",
    "codeforces": "float_tol",
    "code_contests": "float_tol",
    "codecontests": "float_tol",
    "livecodebench": "tokens",
    "lcb": "tokens",
    "leetcode": "exact",
    "kodcode": "exact",
}
# The data source a layout implies when the row's data_source names none of the keys above.
_LAYOUT_SOURCE = {
    "taco_call": "taco",
    "taco_stdio": "taco",
    "code_contests": "code_contests",
    "codeforces": "codeforces",
    "livecodebench": "livecodebench",
    "leetcode": "leetcode",
    "pytest": "kodcode",
}


@dataclass
class CodeVerifierConfig(VerifierConfig):
    """``sandbox``: ``bwrap`` (bubblewrap, required) or ``none`` (NO isolation: benchmarks
    only); ``workers``: sandboxes at once (<= 0: CPU count); ``test_timeout_s``: wall and CPU
    limit of one test; ``max_wall_s``: limit of one response's whole run; ``memory_mb``,
    ``max_procs``, ``max_output_bytes``, ``max_file_mb``, ``tmpfs_mb``: per-test resource
    limits and the scratch size; ``partial_credit``: reward = fraction of tests passed instead
    of all-or-nothing; ``python``: interpreter for model code (empty: the system python3);
    ``sandbox_uid``: the unprivileged host user bubblewrap runs as when or1 runs as root;
    ``import_prefix``: prepend the default import prefix (typing, collections, itertools,
    functools, heapq, bisect, math names) to call-based tests of rows without an
    ``import_prefix`` of their own; ``checker``: the output checker (``exact``, ``tokens``,
    ``case_insensitive``, ``float_tol``) of rows whose source has none in ``checkers``;
    ``checkers``: data source -> checker (a key matches a row whose ``data_source`` contains
    it, else the source its layout implies); ``tolerance``: the ``float_tol`` tolerance (a
    row's ground truth may set ``checker`` and ``tolerance`` itself)."""

    name: str = "code"
    sandbox: str = "bwrap"
    workers: int = 0
    test_timeout_s: float = 6.0
    max_wall_s: float = 120.0
    memory_mb: int = 1024
    max_procs: int = 32
    max_output_bytes: int = 1048576
    max_file_mb: int = 16
    tmpfs_mb: int = 64
    partial_credit: bool = False
    python: str = ""
    sandbox_uid: int = 65534
    import_prefix: bool = True
    checker: str = "float_tol"
    checkers: dict[str, str] = field(default_factory=lambda: dict(SOURCE_CHECKERS))
    tolerance: float = DEFAULT_TOLERANCE


def _get(cfg: Any, key: str, default: Any) -> Any:
    if cfg is None:
        return default
    value = cfg.get(key, default) if isinstance(cfg, Mapping) else getattr(cfg, key, default)
    return default if value is None else value


def answer_region(text: Any) -> str:
    """What follows the first ``</think>``, or the whole text when there is none."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    _, sep, tail = text.partition(THINK_END)
    return tail if sep else text


def extract_code(text: Any) -> str | None:
    """The last fenced ```python (or ```py / ```python3) block of the answer region, or None."""
    blocks = _FENCE_RE.findall(answer_region(text))
    if not blocks:
        return None
    code = blocks[-1][1]
    return code if code.strip() else None


def _short(value: Any) -> str:
    s = value if isinstance(value, str) else repr(value)
    s = " ".join(s.split())
    return s if len(s) <= _SHOW else s[: _SHOW - 3] + "..."


def row_id(row: Any) -> str:
    """How an error names a row: its ``id`` (or ``uid`` / ``problem_id`` / ``task_id``), else
    its ``extra_info.index`` / ``extra_info.id``, else ``?``."""
    if not isinstance(row, Mapping):
        return "?"
    for key in ("id", "uid", "problem_id", "task_id"):
        value = row.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool):
            return str(value)
    extra = row.get("extra_info")
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except ValueError:
            extra = None
    if isinstance(extra, Mapping):
        for key in ("index", "id"):
            value = extra.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool):
                return str(value)
    return "?"


def judge(
    case: Case,
    rec: dict[str, Any] | None,
    checker: str = "float_tol",
    tolerance: float = DEFAULT_TOLERANCE,
) -> tuple[bool, str, str]:
    """``(passed, failure_status, why)`` of one test from its sandbox record (None: it never
    reported), stdout and values compared under ``checker``. ``failure_status`` is
    ``timeout`` or ``wrong``."""
    if rec is None:
        return False, "wrong", "did not run"
    status = rec.get("status")
    if status == "timeout":
        return False, "timeout", "time limit exceeded"
    if status == "output_limit":
        return False, "wrong", "output limit exceeded"
    if status == "crash" and rec.get("rc") == 0:
        return False, "wrong", "the program exited before the test finished"
    if status == "crash":
        tail = (rec.get("err") or "").strip().splitlines()
        return False, "wrong", "runtime error" + (f": {_short(tail[-1])}" if tail else "")
    if "error" in rec and "ok" not in rec:
        return False, "wrong", _short(rec["error"])
    if status != "ran":
        return False, "wrong", f"status {status}"
    kind = case.test["kind"]
    if kind == "stdio":
        out = rec.get("out")
        if isinstance(out, str) and any(
            output_matches(checker, out, e, tolerance) for e in case.expected
        ):
            return True, "", ""
        return False, "wrong", f"expected {_short(case.expected[0])}, got {_short(out or '')}"
    if kind in ("call", "expr"):
        if "value" not in rec:
            return False, "wrong", "no value returned"
        if any(value_matches(checker, rec["value"], e, tolerance) for e in case.expected):
            return True, "", ""
        return False, "wrong", f"expected {_short(case.expected[0])}, got {_short(rec['value'])}"
    if rec.get("ok") is True:
        return True, "", ""
    return False, "wrong", _short(rec.get("error") or "assertion failed")


class CodeVerifier(RewardVerifier):
    """Binary (or partial) code reward from sandboxed unit tests; see the module docstring."""

    def __init__(self, cfg: Any = None, ctx: Any = None):
        limits = Limits(
            test_timeout_s=float(_get(cfg, "test_timeout_s", 6.0)),
            memory_mb=int(_get(cfg, "memory_mb", 1024)),
            max_procs=int(_get(cfg, "max_procs", 32)),
            max_output_bytes=int(_get(cfg, "max_output_bytes", 1 << 20)),
            max_file_mb=int(_get(cfg, "max_file_mb", 16)),
            tmpfs_mb=int(_get(cfg, "tmpfs_mb", 64)),
        )
        if limits.test_timeout_s <= 0:
            raise ValueError(f"verifier.test_timeout_s must be > 0, got {limits.test_timeout_s}")
        self.max_wall_s = float(_get(cfg, "max_wall_s", 120.0))
        self.partial_credit = bool(_get(cfg, "partial_credit", False))
        workers = int(_get(cfg, "workers", 0))
        self.workers = workers if workers > 0 else (os.cpu_count() or 1)
        self.sandbox = Sandbox(
            str(_get(cfg, "sandbox", "bwrap")),
            limits,
            python=str(_get(cfg, "python", "")),
            sandbox_uid=int(_get(cfg, "sandbox_uid", 65534)),
        )
        self.import_prefix = bool(_get(cfg, "import_prefix", True))
        self.checker = str(_get(cfg, "checker", "float_tol"))
        if self.checker not in CHECKERS:
            raise ConfigError(
                f"verifier.checker: unknown checker {self.checker!r} (one of {', '.join(CHECKERS)})"
            )
        checkers = _get(cfg, "checkers", SOURCE_CHECKERS)
        self.checkers = {str(k).lower(): str(v) for k, v in dict(checkers).items()}
        for source, name in self.checkers.items():
            if name not in CHECKERS:
                raise ConfigError(
                    f"verifier.checkers.{source}: unknown checker {name!r} "
                    f"(one of {', '.join(CHECKERS)})"
                )
        self.tolerance = float(_get(cfg, "tolerance", DEFAULT_TOLERANCE))
        if not 0 <= self.tolerance < 1:
            raise ConfigError(f"verifier.tolerance must be in [0, 1), got {self.tolerance}")
        self.sandbox.probe()  # refuse now, with the reason, rather than score everything 0
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.tests_run = 0  # test records received (for throughput reports)

    # ------------------------------------------------------------------------ scoring

    def _suite(self, row: Any) -> Suite | Score:
        rm = row.get("reward_model") if isinstance(row, Mapping) else None
        gt = rm.get("ground_truth") if isinstance(rm, Mapping) else None
        if gt is None:
            return Score(0.0, "error", f"row {row_id(row)}: no reward_model.ground_truth")
        try:
            return parse_ground_truth(gt)
        except GroundTruthError as e:
            where = "ground_truth"
            if e.field:
                where += e.field if e.field.startswith("[") else f".{e.field}"
            reason = " ".join(e.reason.split())
            return Score(0.0, "error", f"row {row_id(row)}: {where}: {reason}")

    def checker_for(self, suite: Suite, row: Any) -> tuple[str, float]:
        """``(checker, tolerance)`` of a row: its ground truth's own, else its data source's
        (``checkers`` keys found in ``data_source``, longest first, then the layout's source),
        else the default ``checker``."""
        tolerance = self.tolerance if suite.tolerance is None else suite.tolerance
        if suite.checker:
            return suite.checker, tolerance
        source = row.get("data_source") if isinstance(row, Mapping) else None
        source = str(source).lower() if source else ""
        if source in self.checkers:
            return self.checkers[source], tolerance
        for key in sorted(self.checkers, key=len, reverse=True):
            if key and key in source:
                return self.checkers[key], tolerance
        layout_source = _LAYOUT_SOURCE.get(suite.schema)
        if layout_source in self.checkers:
            return self.checkers[layout_source], tolerance
        return self.checker, tolerance

    def score(self, response: str, row: dict[str, Any]) -> Score:
        suite = self._suite(row)
        if isinstance(suite, Score):
            return suite
        code = extract_code(response)
        if code is None:
            return Score(0.0, "no_answer", "no ```python block after </think>")
        checker, tolerance = self.checker_for(suite, row)
        return self._run(code, suite, checker, tolerance)

    def prefix_for(self, code: str, suite: Suite) -> str:
        """The driver's prefix: the default import prefix for ``code`` (call-based tests of a
        row without an ``import_prefix`` of its own), then the suite's trusted prefix."""
        if self.import_prefix and suite.call_based and not suite.own_prefix:
            imports = default_import_prefix(code)
            if imports:
                return imports + HEADER_END + suite.prefix
        return suite.prefix

    def _run(
        self,
        code: str,
        suite: Suite,
        checker: str = "float_tol",
        tolerance: float = DEFAULT_TOLERANCE,
    ) -> Score:
        n = len(suite.cases)
        stop = not self.partial_credit
        verdicts: dict[int, tuple[bool, str, str]] = {}

        def on_record(rec: dict[str, Any]) -> bool:
            i = rec["i"]
            if 0 <= i < n:
                verdicts[i] = judge(suite.cases[i], rec, checker, tolerance)
                return verdicts[i][0] or not stop
            return True

        limits = self.sandbox.limits
        wall = min(self.max_wall_s, limits.startup_s + n * (limits.test_timeout_s + 1.0) + 5.0)
        res = self.sandbox.run(
            code,
            [c.test for c in suite.cases],
            prefix=self.prefix_for(code, suite),
            entry=suite.entry,
            wall_s=wall,
            stop_on_failure=stop,
            on_record=on_record,
        )
        with self._lock:
            self.tests_run += len(res.records)
        if not res.hello:
            why = res.stderr.splitlines()[-1] if res.stderr else f"exit status {res.returncode}"
            return Score(0.0, "error", f"sandbox did not start: {why}")
        passed = 0
        first_fail: tuple[int, str, str] | None = None
        for i in range(n):
            ok, status, why = verdicts.get(i) or judge(suite.cases[i], None)
            if ok:
                passed += 1
            elif first_fail is None:
                if i not in verdicts and res.killed == "wall_time":
                    status, why = "timeout", f"time limit of the whole run ({wall:g}s) exceeded"
                first_fail = (i, status, why)
        if first_fail is None:
            return Score(1.0, "correct", f"{n}/{n} tests passed")
        i, status, why = first_fail
        value = passed / n if self.partial_credit else 0.0
        return Score(value, status, f"{passed}/{n} tests passed; test {i}: {why}")

    def score_many(self, responses: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[Score]:
        responses, rows = list(responses), list(rows)
        if len(responses) != len(rows):
            raise ValueError(f"{len(responses)} responses but {len(rows)} rows")
        if len(responses) <= 1 or self.workers == 1:
            return [self.score(r, row) for r, row in zip(responses, rows, strict=True)]
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="or1-code")
            pool = self._pool
        return list(pool.map(self.score, responses, rows))

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)

    def __enter__(self) -> CodeVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
