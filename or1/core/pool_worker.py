"""The worker side of :mod:`or1.core.worker_pool`: what a worker script runs.

A worker script is run by path (``python -P script.py FD_IN FD_OUT PPID MEM_MB PDEATHSIG
[ARGS...]``) and does::

    from or1.core.pool_worker import WorkerArgs, serve

    def handle(request):  # a decoded JSON request -> a JSON-serialisable reply
        ...

    if __name__ == "__main__":
        serve(handle, WorkerArgs.parse())

Importing this module is cheap (the standard library only, never torch or the trainer), and
so is ``import or1``. :func:`serve` makes the process die with the trainer, caps its address
space, ignores Ctrl-C (the trainer's to handle), runs an optional ``load`` step, says it is
ready, then answers one reply per request until its input ends. :func:`soft_deadline` is the
worker's own alarm: it raises :class:`SoftTimeout` out of pure-Python code, so a slow request
usually stops before the pool's hard deadline kills the worker.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class WorkerArgs:
    """The command line :class:`or1.core.worker_pool.PoolWorker` gives a worker script."""

    fd_in: int
    """The pipe requests arrive on."""
    fd_out: int
    """The pipe replies go to."""
    ppid: int
    """The trainer's process id (the worker exits when it is gone)."""
    mem_mb: int = 0
    """The address-space cap in MiB (0: none)."""
    pdeathsig: bool = False
    """Whether to ask for SIGKILL when the parent thread dies (spawned from the main thread)."""
    extra: list[str] = field(default_factory=list)
    """The pool's ``args``."""

    @classmethod
    def parse(cls, argv: Sequence[str] | None = None) -> WorkerArgs:
        """The arguments of ``argv`` (default ``sys.argv[1:]``)."""
        argv = list(sys.argv[1:] if argv is None else argv)
        fd_in, fd_out, ppid, mem_mb, pdeathsig = (int(a) for a in argv[:5])
        return cls(fd_in, fd_out, ppid, mem_mb, bool(pdeathsig), argv[5:])


class StartError(Exception):
    """Raised by a worker's ``load`` step: its message is sent to the trainer as it is (any
    other exception is sent as ``Type: message``)."""


class SoftTimeout(BaseException):
    """Raised by :func:`soft_deadline`'s alarm; a BaseException so that library code's
    ``except Exception`` does not swallow it."""


_armed = False


def _on_alarm(signum: int, frame: Any) -> None:  # pragma: no cover - runs in a worker
    if _armed:
        raise SoftTimeout()


@contextmanager
def soft_deadline(seconds: float) -> Iterator[None]:
    """Raise :class:`SoftTimeout` in the block after ``seconds`` (<= 0: no limit). Only in the
    main thread of a process whose SIGALRM handler :func:`serve` installed."""
    global _armed
    try:
        if seconds > 0:
            _armed = True
            signal.setitimer(signal.ITIMER_REAL, seconds)
        yield
    finally:
        _armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)


def die_with_parent(ppid: int, pdeathsig: bool) -> None:  # pragma: no cover - runs in a worker
    """Exit when the trainer does: ``PR_SET_PDEATHSIG`` (only when the spawning thread was the
    trainer's main thread: the signal follows the *thread* that forked) and a watchdog thread
    that notices re-parenting (it cannot run while C code holds the GIL; the end of input on
    the pipe and the pool's deadline cover the rest)."""
    if pdeathsig:
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except Exception:
            pass
    if os.getppid() != ppid:
        os._exit(0)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != ppid:
                os._exit(0)

    threading.Thread(target=watch, name="or1-parent-watch", daemon=True).start()


def cap_memory(mem_mb: int) -> None:
    """Cap this process's address space at ``mem_mb`` MiB (0: leave it; never above the
    inherited hard limit)."""
    if mem_mb <= 0:
        return
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    soft = mem_mb * 2**20
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    except (ValueError, OSError):
        pass


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message`` (at most 200 characters)."""
    text = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."


def serve(
    handle: Callable[[Any], Any],
    args: WorkerArgs,
    load: Callable[[], None] | None = None,
) -> None:  # pragma: no cover - runs in a worker
    """The worker loop. Sets the process up, runs ``load()`` (an exception there is sent as
    ``{"ready": false, "error": one line}`` and ends the worker; see :class:`StartError`), sends ``{"ready": true}``,
    then for each JSON request sends ``handle(request)`` as JSON, until the input ends.
    ``handle`` must not raise: an exception ends the worker, and the pool reports the request
    as an ``error`` (the worker died)."""
    die_with_parent(args.ppid, args.pdeathsig)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle
    cap_memory(args.mem_mb)
    from multiprocessing.connection import Connection

    rx = Connection(args.fd_in, writable=False)
    tx = Connection(args.fd_out, readable=False)
    if load is not None:
        try:
            load()
        except BaseException as e:  # the reason goes to the trainer, then the worker ends
            reason = str(e) if isinstance(e, StartError) else one_line(e)
            tx.send_bytes(json.dumps({"ready": False, "error": reason}).encode())
            return
    signal.signal(signal.SIGALRM, _on_alarm)
    tx.send_bytes(b'{"ready": true}')
    while True:
        try:
            request = json.loads(rx.recv_bytes())
        except (EOFError, OSError):
            return
        try:
            tx.send_bytes(json.dumps(handle(request)).encode())
        except OSError:  # the trainer is gone
            return
