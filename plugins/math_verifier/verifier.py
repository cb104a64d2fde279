"""The math reward verifier: binary reward from math-verify, bounded by killable workers.

Design. math-verify (latex2sympy + sympy) can hang or eat memory on model text
(``9^{9^{9^9}}``), and its own ``signal.alarm`` timeout only works in a main thread and cannot
interrupt long C-level big-integer work. So verification runs in a small pool of persistent
worker processes (plain ``subprocess`` children running ``verify.py`` by path, so they never
import the trainer's modules or torch, and need no ``spawn``/``fork`` of a threaded parent),
talking over private pipes:

* a request is sent only to an idle worker; its *hard* deadline is ``timeout_s`` after it was
  sent. The caller waits on all busy workers at once (``multiprocessing.connection.wait``) and
  SIGKILLs a worker past its deadline, scores that item ``timeout`` and starts a replacement;
* inside the worker a *soft* ``ITIMER_REAL`` alarm (a bit shorter) raises out of pure-Python
  sympy loops, so most timeouts cost no restart;
* workers die with the trainer (``PR_SET_PDEATHSIG``, end of input on their pipe) and are killed
  by :meth:`MathVerifier.close`, a ``weakref.finalize`` and therefore also at exit; their address
  space is capped (``max_memory_mb``).

The trainer process does only cheap string work: cutting at ``</think>``, finding the final
box(es), and the fast paths (box equal to a gold answer after normalisation, or both plain
numbers / fractions whose verdict is certain without sympy: see ``verify.quick_verdict``).
Comparison options come from the config, overridden per row ``data_source``
(``verifier.sources``), and travel with each request.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from or1.config import VerifierConfig
from or1.interfaces import RewardVerifier
from or1.types import Score

from .verify import (
    MathOptions,
    answer_region,
    final_answers,
    gold_answers,
    normalize,
    quick_verdict,
)

_VERIFY_PY = str(Path(__file__).with_name("verify.py"))
_START_TIMEOUT_S = 120.0  # a worker that is not ready by then is killed
_MAX_START_FAILURES = 3  # consecutive failed starts before a call gives up (items -> error)


@dataclass
class MathSourceOptions:
    """Per-data-source overrides of the comparison options (``verifier.sources.<data_source>.
    <key>``); a key left ``None`` keeps the verifier's own value."""

    precision: int | None = None
    """Decimal places floats are rounded to (None: the verifier's ``precision``)."""
    numeric_precision: int | None = None
    """Significant digits of numeric evaluation (None: the verifier's)."""
    strict: bool | None = None
    """Variables matter (None: the verifier's ``strict``)."""
    allow_set_relation_comp: bool | None = None
    """A solved relation equals its solution set (None: the verifier's)."""
    extraction: list[str] | None = None
    """math-verify's extraction targets, in order (None: the verifier's)."""
    decimal_comma: bool | None = None
    """Read ``1,22`` as ``1.22`` where unambiguous (None: the verifier's)."""


@dataclass
class MathVerifierConfig(VerifierConfig):
    """The ``math`` verifier: worker pool bounds and math-verify's comparison options (see
    ``docs/verifiers.md``), with per-``data_source`` overrides in ``sources``."""

    name: str = "math"
    timeout_s: float = 5.0
    """The hard per-response limit (seconds)."""
    workers: int = 2
    """Worker processes (<= 0: min(2, CPU count))."""
    max_memory_mb: int = 4096
    """Each worker's address-space cap (0: none)."""
    precision: int = 6
    """Decimal places floats are rounded to before comparing (math-verify's ``float_rounding``)."""
    numeric_precision: int = 15
    """Significant digits of math-verify's numeric evaluation."""
    strict: bool = True
    """Variables matter (``y+1`` != ``x+1``); false: variables are matched by position."""
    allow_set_relation_comp: bool = True
    """A solved relation in one variable equals its solution set (``x<3`` = ``(-\\infty,3)``)."""
    extraction: list[str] = field(default_factory=lambda: ["latex", "expr"])
    """math-verify's extraction targets, in order: ``latex``, ``expr``, ``string`` (A-D)."""
    decimal_comma: bool = True
    """Read a whole-answer ``1,22`` as ``1.22`` where it cannot be a thousands separator."""
    sources: dict[str, MathSourceOptions] = field(default_factory=dict)
    """Option overrides per row ``data_source`` (``+verifier.sources.aime.precision=0``)."""


_OPTION_KEYS = tuple(f.name for f in fields(MathSourceOptions))


def _cfg_get(cfg: Any, key: str, default: Any) -> Any:
    if cfg is None:
        return default
    if isinstance(cfg, dict):
        return cfg.get(key, default)
    try:
        value = getattr(cfg, key)
    except Exception:
        return default
    return default if value is None else value


def _as_mapping(value: Any, what: str) -> dict[str, Any]:
    """A plain dict of a config node (dict, OmegaConf node or dataclass)."""
    if value is None:
        return {}
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in fields(value)}
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(value, DictConfig):
            value = OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency of or1
        pass
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a mapping, got {value!r}")
    return dict(value)


def _merge_options(base: MathOptions, overrides: Mapping[str, Any], what: str) -> MathOptions:
    unknown = sorted(set(overrides) - set(_OPTION_KEYS))
    if unknown:
        raise ValueError(f"{what}: unknown key(s) {unknown} (known: {list(_OPTION_KEYS)})")
    d = base.to_dict()
    d.update({k: v for k, v in overrides.items() if v is not None})
    if isinstance(d.get("extraction"), str):
        d["extraction"] = [d["extraction"]]
    d["extraction"] = tuple(d["extraction"])
    return MathOptions(**d)


def math_options(cfg: Any) -> tuple[MathOptions, dict[str, MathOptions]]:
    """The default comparison options of a verifier config and those of each data source in
    ``cfg.sources`` (a ValueError names a bad key or value)."""
    defaults = {k: _cfg_get(cfg, k, None) for k in _OPTION_KEYS}
    if defaults.get("extraction") is not None:
        defaults["extraction"] = list(defaults["extraction"])
    base = _merge_options(MathOptions(), defaults, "verifier")
    sources = _as_mapping(_cfg_get(cfg, "sources", None), "verifier.sources")
    per_source = {
        str(name): _merge_options(
            base, _as_mapping(node, f"verifier.sources.{name}"), f"verifier.sources.{name}"
        )
        for name, node in sources.items()
    }
    return base, per_source


class _Worker:
    """One worker process and its two pipe ends."""

    def __init__(self, mem_mb: int):
        r_in, w_in = os.pipe()  # parent -> worker
        r_out, w_out = os.pipe()  # worker -> parent
        try:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-P",
                    _VERIFY_PY,
                    str(r_in),
                    str(w_out),
                    str(os.getpid()),
                    str(int(mem_mb)),
                    str(int(threading.current_thread() is threading.main_thread())),
                ],
                pass_fds=(r_in, w_out),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                close_fds=True,
            )
        except BaseException:
            for fd in (r_in, w_in, r_out, w_out):
                os.close(fd)
            raise
        os.close(r_in)
        os.close(w_out)
        self.tx = Connection(w_in, readable=False)
        self.rx = Connection(r_out, writable=False)
        self.started = time.monotonic()
        self.ready = False
        self.task: int | None = None  # index of the item in flight
        self.deadline = 0.0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        for conn in (self.tx, self.rx):
            try:
                conn.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
            pass


class _Pool:
    """A fixed number of persistent workers, started lazily, replaced when killed or dead."""

    def __init__(self, size: int, timeout_s: float, mem_mb: int):
        self.size = max(1, int(size))
        self.timeout_s = float(timeout_s)
        grace = min(max(0.25, 0.1 * self.timeout_s), 0.5 * self.timeout_s)
        self.soft_timeout_s = max(self.timeout_s - grace, 0.0)  # 0 disables the worker's alarm
        self.mem_mb = int(mem_mb)
        self.workers: list[_Worker] = []
        self.lock = threading.Lock()
        self.owner = os.getpid()
        self.restarts = 0  # workers replaced after a kill or death (for tests and metrics)
        self._start_failures = 0
        self._last_start_error = ""

    # -- lifecycle

    def _spawn(self) -> _Worker | None:
        try:
            return _Worker(self.mem_mb)
        except OSError as e:
            self._start_failures += 1
            self._last_start_error = f"cannot start a worker: {e}"
            return None

    def _fill(self) -> None:
        while len(self.workers) < self.size and self._start_failures < _MAX_START_FAILURES:
            w = self._spawn()
            if w is None:
                continue
            self.workers.append(w)

    def _drop(self, w: _Worker, replace: bool) -> None:
        w.kill()
        self.workers.remove(w)
        if replace:
            self.restarts += 1

    def close(self) -> None:
        with self.lock:
            if os.getpid() == self.owner:  # never kill a parent's workers from a forked child
                for w in self.workers:
                    w.kill()
            self.workers = []

    def start(self, timeout: float = _START_TIMEOUT_S) -> bool:
        """Start the missing workers and wait until all are ready (or ``timeout``)."""
        with self.lock:
            self._start_failures = 0
            end = time.monotonic() + timeout
            while True:
                self._fill()
                starting = [w for w in self.workers if not w.ready]
                left = end - time.monotonic()
                if not starting or left <= 0:
                    return bool(self.workers) and not starting
                for conn in wait([w.rx for w in starting], left):
                    w = next(w for w in starting if w.rx is conn)
                    try:
                        conn.recv_bytes()
                        w.ready = True
                    except (EOFError, OSError):
                        self._start_failures += 1
                        self._drop(w, replace=False)
                if self._start_failures >= _MAX_START_FAILURES:
                    return False

    def pids(self) -> list[int]:
        return [w.pid for w in self.workers]

    # -- dispatch

    def run(self, tasks: list[tuple[int, dict[str, Any]]], results: list[Score | None]) -> None:
        """Run ``tasks`` (index, request) and put each Score at ``results[index]``."""
        with self.lock:
            self._start_failures = 0
            queue = deque(tasks)
            sends: dict[int, int] = {}
            while True:
                self._fill()
                now = time.monotonic()
                for w in [w for w in self.workers if w.ready and w.task is None]:
                    if not queue:
                        break
                    idx, req = queue.popleft()
                    try:
                        w.tx.send_bytes(json.dumps(req).encode())
                    except OSError:  # died while idle: replace it, retry the item
                        self._drop(w, replace=True)
                        sends[idx] = sends.get(idx, 0) + 1
                        if sends[idx] > 2:
                            results[idx] = Score(0.0, "error", "math verifier worker died")
                        else:
                            queue.appendleft((idx, req))
                        break
                    w.task = idx
                    w.deadline = now + self.timeout_s
                if not queue and not any(w.task is not None for w in self.workers):
                    return
                if len(self.workers) < self.size and self._start_failures < _MAX_START_FAILURES:
                    continue  # replace the dead worker first
                if not self.workers:  # every start failed
                    reason = self._last_start_error or "math verifier workers did not start"
                    while queue:
                        results[queue.popleft()[0]] = Score(0.0, "error", reason)
                    return
                self._wait(results, bool(queue))

    def _wait(self, results: list[Score | None], have_queue: bool) -> None:
        now = time.monotonic()
        busy = [w for w in self.workers if w.task is not None]
        starting = [w for w in self.workers if not w.ready] if have_queue or not busy else []
        ends = [w.deadline for w in busy] + [w.started + _START_TIMEOUT_S for w in starting]
        if not busy and not starting:
            return
        timeout = max(0.0, min(ends) - now) if ends else None
        ready = wait([w.rx for w in busy + starting], timeout)
        by_conn = {id(w.rx): w for w in busy + starting}
        for conn in ready:
            w = by_conn[id(conn)]
            try:
                msg = json.loads(conn.recv_bytes())
            except (EOFError, OSError, ValueError):
                if w.task is not None:
                    results[w.task] = Score(0.0, "error", "math verifier worker died")
                else:
                    self._start_failures += 1
                    code = w.proc.poll()
                    self._last_start_error = f"math verifier worker exited at start (code {code})"
                self._drop(w, replace=w.task is not None)
                continue
            if not w.ready:
                w.ready = True
                self._start_failures = 0
                continue
            score, status, reason = msg
            results[w.task] = Score(float(score), str(status), str(reason))
            w.task = None
        now = time.monotonic()
        for w in list(self.workers):
            if w.task is not None and now >= w.deadline:
                results[w.task] = Score(
                    0.0, "timeout", f"verification killed after {self.timeout_s:g}s"
                )
                self._drop(w, replace=True)
            elif not w.ready and now >= w.started + _START_TIMEOUT_S:
                self._start_failures += 1
                self._last_start_error = (
                    f"math verifier worker not ready after {_START_TIMEOUT_S:g}s"
                )
                self._drop(w, replace=False)


class MathVerifier(RewardVerifier):
    """Binary math reward: the final ``\\boxed{}`` answer(s) after ``</think>`` vs
    ``reward_model.ground_truth`` (a string, a number or a list of acceptable answers), by
    math-verify's forward comparison, with options per ``data_source``."""

    def __init__(self, cfg: Any = None, ctx: Any = None):
        self.timeout_s = float(_cfg_get(cfg, "timeout_s", 5.0))
        if self.timeout_s <= 0:
            raise ValueError(f"verifier.timeout_s must be > 0, got {self.timeout_s}")
        workers = int(_cfg_get(cfg, "workers", 2))
        if workers <= 0:
            workers = min(2, os.cpu_count() or 1)
        mem_mb = int(_cfg_get(cfg, "max_memory_mb", 4096))
        self.options, self.source_options = math_options(cfg)
        self._pool = _Pool(workers, self.timeout_s, mem_mb)
        self._finalizer = weakref.finalize(self, self._pool.close)

    def options_for(self, row: Any) -> MathOptions:
        """The comparison options of a row: its ``data_source``'s, else the defaults."""
        source = row.get("data_source") if isinstance(row, Mapping) else None
        if isinstance(source, str) and source in self.source_options:
            return self.source_options[source]
        return self.options

    def _prepare(self, response: str, row: Any) -> Score | dict[str, Any]:
        """A Score decided here (error, fast paths) or the worker's request."""
        gt = None
        rm = row.get("reward_model") if isinstance(row, Mapping) else None
        if isinstance(rm, Mapping):
            gt = rm.get("ground_truth")
        if gt is None:
            return Score(0.0, "error", "row has no reward_model.ground_truth")
        golds = gold_answers(gt)
        if not golds:
            return Score(0.0, "error", f"unusable ground truth {repr(gt)[:80]}")
        opts = self.options_for(row)
        region = answer_region(response)
        found, answers = final_answers(region)
        answers = [a for a in answers or [] if a.strip()]
        if found and answers:
            quick = quick_verdict(answers, golds, opts)
            if quick is not None:
                return Score(*quick)
        return {"r": region, "g": golds, "t": self._pool.soft_timeout_s, "o": opts.to_dict()}

    def score(self, response: str, row: dict[str, Any]) -> Score:
        return self.score_many([response], [row])[0]

    def answer_key(self, response: str, row: dict[str, Any]) -> str | None:
        """The final boxed answer(s) after ``</think>``, textually normalised (maj@K votes)."""
        _, answers = final_answers(answer_region(response))
        key = ",".join(normalize(a) for a in answers or [] if a.strip())
        return key or None

    def score_many(self, responses: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[Score]:
        responses, rows = list(responses), list(rows)
        if len(responses) != len(rows):
            raise ValueError(f"{len(responses)} responses but {len(rows)} rows")
        results: list[Score | None] = [None] * len(responses)
        tasks: list[tuple[int, dict[str, Any]]] = []
        for i, (response, row) in enumerate(zip(responses, rows, strict=True)):
            prepared = self._prepare(response, row)
            if isinstance(prepared, Score):
                results[i] = prepared
            else:
                tasks.append((i, prepared))
        if tasks:
            self._pool.run(tasks, results)
        return [r if r is not None else Score(0.0, "error", "not scored") for r in results]

    def warmup(self, timeout: float = _START_TIMEOUT_S) -> bool:
        """Start the workers now (they otherwise start on first use); True once all are ready."""
        return self._pool.start(timeout)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> MathVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
