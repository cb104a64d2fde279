"""A pool of persistent, killable worker processes that run a script by path.

Verifiers run untrusted or unbounded work (sympy on model text, a user's reward function) in
worker processes that the trainer can always stop. This module is the trainer's side; the
worker's side (the loop a worker script runs) is :mod:`or1.core.pool_worker`.

Design:

* a worker is a plain ``subprocess`` child running ``python -P SCRIPT FD_IN FD_OUT PPID MEM_MB
  PDEATHSIG [ARGS...]`` (no ``fork`` of a threaded trainer, no ``spawn`` re-importing the
  trainer's modules: the script imports only what it needs, never torch), talking over two
  private pipes with ``multiprocessing.connection`` framing. Messages are JSON;
* the first message of a worker says it is ready (``{"ready": true}``) or why it cannot be
  (``{"ready": false, "error": "..."}``); then each request gets one reply;
* a request goes only to an idle, ready worker; its *hard* deadline is ``timeout_s`` after it
  was sent. :meth:`WorkerPool.run` waits on every busy worker at once
  (``multiprocessing.connection.wait``), SIGKILLs a worker past its deadline, reports that
  request as a ``timeout`` :class:`WorkerFailure` and starts a replacement; a worker that dies
  mid-request gives an ``error`` failure and is replaced too;
* :attr:`WorkerPool.soft_timeout_s` (a bit shorter than ``timeout_s``) is for the worker's own
  alarm (:func:`or1.core.pool_worker.soft_deadline`), so that most timeouts cost no restart; the
  caller puts it in its requests;
* workers start lazily (on the first :meth:`~WorkerPool.run`, or :meth:`~WorkerPool.start`),
  die with the trainer (``PR_SET_PDEATHSIG``, end of input on their pipe, a watchdog) and are
  killed by :meth:`~WorkerPool.close`; their address space is capped (``max_memory_mb``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

START_TIMEOUT_S = 120.0
"""A worker that has not said it is ready by then is killed (a start failure)."""
MAX_START_FAILURES = 3
"""Consecutive failed starts after which a call stops trying (its requests fail)."""
MAX_SENDS = 3
"""Times one request is offered to a worker that turns out to be dead before it fails."""


@dataclass(frozen=True)
class WorkerFailure:
    """The result of a request that got no reply: ``status`` is ``timeout`` (the worker was
    killed at the deadline) or ``error`` (it died, or no worker could start); ``reason`` says
    which, in one line."""

    status: str
    reason: str


def soft_timeout(timeout_s: float) -> float:
    """The worker-side alarm for a hard limit ``timeout_s``: a grace of 10% (at least 0.25 s,
    at most half the limit) before it, so the worker usually stops itself first."""
    grace = min(max(0.25, 0.1 * timeout_s), 0.5 * timeout_s)
    return max(timeout_s - grace, 0.0)


class PoolWorker:
    """One worker process and its two pipe ends. ``task`` is the index of the request in
    flight (None when idle), ``deadline`` its hard deadline (``time.monotonic()``)."""

    def __init__(self, script: str, mem_mb: int, args: Sequence[str]) -> None:
        r_in, w_in = os.pipe()  # trainer -> worker
        r_out, w_out = os.pipe()  # worker -> trainer
        main_thread = threading.current_thread() is threading.main_thread()
        try:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-P",
                    script,
                    str(r_in),
                    str(w_out),
                    str(os.getpid()),
                    str(int(mem_mb)),
                    str(int(main_thread)),  # PR_SET_PDEATHSIG follows the spawning thread
                    *args,
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
        self.task: int | None = None
        self.deadline = 0.0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL the process, close the pipes and reap it."""
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


class WorkerPool:
    """A fixed number of persistent workers running ``script``, started lazily, replaced when
    killed or dead. ``name`` names the pool in failure reasons (``"math verifier"``); ``args``
    are passed to every worker after the fixed arguments. Thread-safe: calls are serialised."""

    def __init__(
        self,
        script: str | Path,
        *,
        size: int,
        timeout_s: float,
        max_memory_mb: int = 0,
        args: Sequence[str] = (),
        name: str = "worker",
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> None:
        if float(timeout_s) <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.script = str(script)
        self.size = max(1, int(size))
        self.timeout_s = float(timeout_s)
        self.soft_timeout_s = soft_timeout(self.timeout_s)
        """The limit for the worker's own alarm (callers send it; 0 disables it)."""
        self.mem_mb = int(max_memory_mb)
        self.args = [str(a) for a in args]
        self.name = name
        self.start_timeout_s = float(start_timeout_s)
        self.workers: list[PoolWorker] = []
        self.lock = threading.Lock()
        self.owner = os.getpid()
        self.restarts = 0
        """Workers replaced after a kill or a death mid-request."""
        self.last_start_error = ""
        """Why the last worker that failed to start did (its own message when it sent one)."""
        self._start_failures = 0

    # -- lifecycle

    def _fill(self) -> None:
        while len(self.workers) < self.size and self._start_failures < MAX_START_FAILURES:
            try:
                self.workers.append(PoolWorker(self.script, self.mem_mb, self.args))
            except OSError as e:
                self._start_failures += 1
                self.last_start_error = f"cannot start a {self.name} worker: {e}"

    def _drop(self, w: PoolWorker, replace: bool) -> None:
        w.kill()
        self.workers.remove(w)
        if replace:
            self.restarts += 1

    def _start_failed(self, w: PoolWorker, reason: str) -> None:
        self._start_failures += 1
        self.last_start_error = reason
        self._drop(w, replace=False)

    def _on_first_message(self, w: PoolWorker, raw: bytes) -> None:
        """A starting worker's first message: ready, or why not."""
        try:
            msg = json.loads(raw)
        except ValueError:
            msg = {"ready": False, "error": f"{self.name} worker sent {raw[:80]!r} at start"}
        if isinstance(msg, dict) and msg.get("ready") is False:
            self._start_failed(w, str(msg.get("error") or f"{self.name} worker did not start"))
            return
        w.ready = True
        self._start_failures = 0

    def close(self) -> None:
        """Kill every worker (idempotent; the pool starts new ones if used again)."""
        with self.lock:
            if os.getpid() == self.owner:  # never kill a parent's workers from a forked child
                for w in self.workers:
                    w.kill()
            self.workers = []

    def start(self, timeout: float | None = None) -> bool:
        """Start the missing workers and wait until all are ready (at most ``timeout``
        seconds, default ``start_timeout_s``); True when all are. On False,
        :attr:`last_start_error` says why."""
        timeout = self.start_timeout_s if timeout is None else float(timeout)
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
                        self._on_first_message(w, conn.recv_bytes())
                    except (EOFError, OSError):
                        self._start_failed(w, self._exit_reason(w))
                if self._start_failures >= MAX_START_FAILURES:
                    return False

    def _exit_reason(self, w: PoolWorker) -> str:
        try:
            code = w.proc.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            code = None
        return f"{self.name} worker exited at start (code {code})"

    def pids(self) -> list[int]:
        """The process ids of the current workers."""
        return [w.pid for w in self.workers]

    # -- dispatch

    def run(self, requests: Sequence[Any]) -> list[Any]:
        """Send each request (a JSON-serialisable value) to a worker and return, in order,
        each one's reply (decoded JSON) or a :class:`WorkerFailure`."""
        results: list[Any] = [None] * len(requests)
        done = [False] * len(requests)

        def put(i: int, value: Any) -> None:
            results[i], done[i] = value, True

        with self.lock:
            self._start_failures = 0
            queue = deque((i, json.dumps(r).encode()) for i, r in enumerate(requests))
            sends: dict[int, int] = {}
            while True:
                self._fill()
                now = time.monotonic()
                for w in [w for w in self.workers if w.ready and w.task is None]:
                    if not queue:
                        break
                    i, payload = queue.popleft()
                    try:
                        w.tx.send_bytes(payload)
                    except OSError:  # died while idle: replace it, offer the request again
                        self._drop(w, replace=True)
                        sends[i] = sends.get(i, 0) + 1
                        if sends[i] >= MAX_SENDS:
                            put(i, WorkerFailure("error", f"{self.name} worker died"))
                        else:
                            queue.appendleft((i, payload))
                        break
                    w.task = i
                    w.deadline = now + self.timeout_s
                if not queue and not any(w.task is not None for w in self.workers):
                    return results
                if len(self.workers) < self.size and self._start_failures < MAX_START_FAILURES:
                    continue  # replace a dead worker first
                if not self.workers:  # every start failed
                    reason = self.last_start_error or f"{self.name} workers did not start"
                    while queue:
                        put(queue.popleft()[0], WorkerFailure("error", reason))
                    return results
                self._wait(put, bool(queue))

    def _wait(self, put: Any, have_queue: bool) -> None:
        """Wait for a reply, a start or the next deadline, and handle what happened."""
        now = time.monotonic()
        busy = [w for w in self.workers if w.task is not None]
        starting = [w for w in self.workers if not w.ready] if have_queue or not busy else []
        if not busy and not starting:
            return
        ends = [w.deadline for w in busy] + [w.started + self.start_timeout_s for w in starting]
        ready = wait([w.rx for w in busy + starting], max(0.0, min(ends) - now))
        by_conn = {id(w.rx): w for w in busy + starting}
        for conn in ready:
            w = by_conn[id(conn)]
            try:
                raw = conn.recv_bytes()
            except (EOFError, OSError):
                if w.task is not None:
                    put(w.task, WorkerFailure("error", f"{self.name} worker died"))
                    self._drop(w, replace=True)
                else:
                    self._start_failed(w, self._exit_reason(w))
                continue
            if not w.ready:
                self._on_first_message(w, raw)
                continue
            try:
                put(w.task, json.loads(raw))
            except ValueError:
                put(w.task, WorkerFailure("error", f"{self.name} worker sent bad JSON"))
            w.task = None
        now = time.monotonic()
        for w in list(self.workers):
            if w.task is not None and now >= w.deadline:
                put(
                    w.task,
                    WorkerFailure("timeout", f"{self.name} killed after {self.timeout_s:g}s"),
                )
                self._drop(w, replace=True)
            elif not w.ready and now >= w.started + self.start_timeout_s:
                self._start_failed(
                    w, f"{self.name} worker not ready after {self.start_timeout_s:g}s"
                )
