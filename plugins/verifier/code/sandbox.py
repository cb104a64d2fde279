"""The sandbox: one bubblewrap container per verified response.

Isolation (``mode="bwrap"``):

* namespaces: ``--unshare-all`` (user, mount, PID, network, IPC, UTS, cgroup) plus
  ``--disable-userns`` (no nested namespaces); the network namespace has only a loopback;
* filesystem: a new empty root with ``/usr`` (and the top-level ``/bin``, ``/lib``... links or
  folders) read-only, a fresh ``/proc`` and minimal ``/dev``, and a size-limited tmpfs ``/tmp``
  that is the run's scratch folder and vanishes with it. No home folder, no ``/etc``, nothing
  of the working tree;
* identity: when or1 runs as root, bubblewrap itself is started as an unprivileged user
  (``sandbox_uid``, default 65534 ``nobody``) so that nothing inside has any privilege on the
  host and the process limit applies; inside, every capability is dropped. The switch is made
  by util-linux's ``setpriv`` (real, effective and saved ids, no supplementary groups), which
  lets Python start it with ``vfork``: with ``Popen(user=...)`` Python must ``fork`` the
  whole trainer process for each sandbox, which costs ~90 ms per response at 1 GiB resident
  (the page tables are copied) and grows with the trainer. Without ``setpriv``, ``Popen``
  switches ids itself (same result, slower);
* environment: cleared (``--clearenv``), only ``PATH``, ``HOME``, ``LANG`` set;
* system calls: a seccomp filter (:mod:`.seccomp`, handed to bubblewrap as ``--seccomp FD``)
  on the runner and everything it starts denies ptrace, mount, namespaces, the keyring, bpf,
  perf events, userfaultfd, io_uring, kexec, module loading, reboot and swap with ``EPERM``;
* limits: set by the in-sandbox runner in each test's child process (address space, CPU
  seconds, number of processes, file size, open files); wall time per test by the runner and
  per sandbox here; output size capped on both sides;
* cleanup: the whole container is SIGKILLed at the end (``--die-with-parent`` kills the
  PID-namespace init, which takes every process in the namespace with it).

``mode="none"`` runs the same runner without any isolation, for the benchmark's "without"
column only (the config value says so). Nothing here falls back to it silently.
"""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from or1.core.errors import ConfigError

from . import seccomp

_HERE = Path(__file__).parent
RUNNER_SRC = (_HERE / "_runner.py").read_text(encoding="utf-8")
DRIVER_SRC = (_HERE / "_driver.py").read_text(encoding="utf-8")
_TOP_LEVEL = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_SYSTEM_PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3")


class SandboxUnavailable(ConfigError):
    """The sandbox cannot run on this machine; the message says why and what to install."""


PROBE_TIMEOUT_S = 30.0
"""The time limit of the probe's one test (``print(6 * 7)``)."""


@dataclass
class Limits:
    test_timeout_s: float = 6.0
    memory_mb: int = 1024
    max_procs: int = 32
    max_output_bytes: int = 1 << 20
    max_file_mb: int = 16
    tmpfs_mb: int = 64
    startup_s: float = 10.0

    def as_job(self) -> dict[str, Any]:
        return {
            "test_timeout_s": self.test_timeout_s,
            "memory_mb": self.memory_mb,
            "max_procs": self.max_procs,
            "max_output_bytes": self.max_output_bytes,
            "max_file_mb": self.max_file_mb,
            "startup_s": self.startup_s,
        }


@dataclass
class RunResult:
    """What came back from one sandbox: the per-test records by index, whether the runner
    started (``hello``) and finished (``done``), why the run was cut short (``killed``:
    ``wall_time``, ``output_limit``, ``stopped`` or None) and bubblewrap's stderr tail."""

    records: dict[int, dict[str, Any]] = field(default_factory=dict)
    hello: bool = False
    done: bool = False
    killed: str | None = None
    stderr: str = ""
    returncode: int | None = None


def _world_reachable(path: str) -> bool:
    """Whether any user can execute ``path``: every folder above it searchable by others and
    the file readable and executable by others."""
    p = Path(path)
    try:
        for parent in list(p.parents)[:-1]:
            if not parent.stat().st_mode & stat.S_IXOTH:
                return False
        mode = p.stat().st_mode
    except OSError:
        return False
    return bool(mode & stat.S_IROTH and mode & stat.S_IXOTH)


def find_python(configured: str, need_world: bool) -> str:
    """The interpreter that runs model code: ``configured`` if set, else the system Python
    (``/usr/bin/python3``), else or1's own base interpreter when the sandbox user can reach it."""
    if configured:
        path = os.path.realpath(configured)
        if not os.path.isfile(path):
            raise SandboxUnavailable(f"verifier python '{configured}' not found")
        if need_world and not _world_reachable(path):
            raise SandboxUnavailable(
                f"verifier python '{path}' is not readable by the sandbox user"
            )
        return path
    candidates = [*_SYSTEM_PYTHONS, os.path.realpath(sys.executable)]
    for c in candidates:
        path = os.path.realpath(c)
        if os.path.isfile(path) and (not need_world or _world_reachable(path)):
            return path
    raise SandboxUnavailable(
        "no Python interpreter the sandbox user can run (install python3 or set verifier.python)"
    )


def _child_pid(info: bytes | bytearray) -> int:
    """bubblewrap's ``--info-fd`` document -> the host PID of the sandbox's init (0: unknown)."""
    try:
        return int(json.loads(bytes(info).decode()).get("child-pid", 0))
    except (ValueError, AttributeError, TypeError):
        return 0


class Sandbox:
    """Runs the in-sandbox runner on one job and streams back its records."""

    def __init__(
        self,
        mode: str,
        limits: Limits,
        python: str = "",
        sandbox_uid: int = 65534,
        bwrap: str = "",
        *,
        syscall_filter: bool = True,
    ):
        """``syscall_filter=False`` leaves the seccomp filter out of a ``bwrap`` sandbox: only
        for tests that show what the kernel answers without it (no config value reaches it)."""
        if mode not in ("bwrap", "none"):
            raise ConfigError(f"verifier.sandbox must be 'bwrap' or 'none', got '{mode}'")
        self.mode = mode
        self.limits = limits
        self.as_root = os.geteuid() == 0
        self.uid = int(sandbox_uid)
        if mode == "bwrap":
            found = bwrap or shutil.which("bwrap") or ""
            if not found or not os.path.isfile(found):
                raise SandboxUnavailable(
                    "bubblewrap (bwrap) is not installed; the code verifier needs it to run model "
                    "code (apt-get install bubblewrap, or `make setup`)"
                )
            self.bwrap = found
        else:
            self.bwrap = ""
        self.syscall_filter = mode == "bwrap" and syscall_filter
        if self.syscall_filter:
            try:
                seccomp.bpf_program()  # compiled once per process, here rather than per run
            except seccomp.SeccompUnavailable as e:
                raise SandboxUnavailable(str(e)) from None
        # As root: drop to sandbox_uid with setpriv (vfork-able), else in Popen's child (fork).
        self.setpriv = (shutil.which("setpriv") or "") if mode == "bwrap" and self.as_root else ""
        self.python = find_python(python, need_world=mode == "bwrap" and self.as_root)
        self.prefix = os.path.realpath(os.path.dirname(os.path.dirname(self.python)))

    # ----------------------------------------------------------------------- command line

    def argv(self, info_fd: int | None = None, seccomp_fd: int | None = None) -> list[str]:
        """The command line; ``info_fd``: bubblewrap's ``--info-fd``, ``seccomp_fd``: a
        descriptor that reads as the compiled syscall filter (``--seccomp``)."""
        # -S: the runner needs the standard library only (no site-packages .pth files to run).
        runner = [self.python, "-I", "-S", "-c", RUNNER_SRC]
        if self.mode == "none":
            return runner
        a = []
        if self.setpriv:
            a += [self.setpriv, f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups"]
            a += ["--"]
        a += [self.bwrap, "--unshare-all", "--unshare-user", "--disable-userns"]
        if info_fd is not None:
            a += ["--info-fd", str(info_fd)]
        if seccomp_fd is not None:
            a += ["--seccomp", str(seccomp_fd)]
        a += ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        a += ["--uid", "65534", "--gid", "65534", "--hostname", "or1-sandbox"]
        a += ["--ro-bind", "/usr", "/usr"]
        for top in _TOP_LEVEL:
            if os.path.islink(top):
                a += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                a += ["--ro-bind", top, top]
        if not self.prefix.startswith("/usr/") and self.prefix != "/usr":
            a += ["--ro-bind", self.prefix, self.prefix]
        a += ["--proc", "/proc", "--dev", "/dev"]
        a += ["--size", str(int(self.limits.tmpfs_mb) * 2**20), "--tmpfs", "/tmp"]
        a += ["--clearenv", "--setenv", "PATH", "/usr/bin:/bin", "--setenv", "HOME", "/tmp/or1"]
        a += ["--setenv", "LANG", "C.UTF-8", "--chdir", "/tmp", "--"]
        return a + runner

    def _popen(
        self, work: str | None, info_fd: int | None, seccomp_fd: int | None
    ) -> subprocess.Popen:
        kwargs: dict[str, Any] = {}
        if self.mode == "bwrap" and self.as_root and not self.setpriv:
            kwargs.update(user=self.uid, group=self.uid, extra_groups=[])
        # Inherited descriptors survive the switch to ``sandbox_uid`` (it happens before exec).
        kwargs["pass_fds"] = tuple(fd for fd in (info_fd, seccomp_fd) if fd is not None)
        return subprocess.Popen(
            self.argv(info_fd, seccomp_fd),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            cwd=work or "/",
            close_fds=True,
            **kwargs,
        )

    # ------------------------------------------------------------------------------ run

    def run(
        self,
        solution: str,
        tests: list[dict[str, Any]],
        *,
        prefix: str = "",
        entry: str | None = None,
        wall_s: float,
        stop_on_failure: bool = True,
        on_record: Callable[[dict[str, Any]], bool] | None = None,
        limits: Limits | None = None,
    ) -> RunResult:
        """Run ``tests`` against ``solution``; ``on_record`` sees each test record as it
        arrives and returns False to stop the run early (the container is killed); ``limits``
        replaces the sandbox's own for this run. The container never outlives this call."""
        limits = limits or self.limits
        work = tempfile.mkdtemp(prefix="or1-code-") if self.mode == "none" else None
        outer = secrets.token_hex(16)  # runner -> here; the driver (and model code) never sees it
        job = {
            "solution": solution,
            "driver": DRIVER_SRC,
            "tests": tests,
            "prefix": prefix,
            "entry": entry,
            "limits": limits.as_job(),
            "nonce": secrets.token_hex(16),
            "outer": outer,
            "python": self.python,
            "sweep": self.mode == "bwrap",
            "stop_on_failure": stop_on_failure,
            "work": work or "/tmp/or1",
        }
        payload = json.dumps(job).encode()
        result = RunResult()
        cap = 4 * int(limits.max_output_bytes) * max(1, len(tests)) + (1 << 20)
        info_r, info_w = os.pipe() if self.mode == "bwrap" else (None, None)
        filter_fd = seccomp.program_fd() if self.syscall_filter else None
        try:
            proc = self._popen(work, info_w, filter_fd)
        except OSError as e:
            for fd in (info_r, info_w):
                if fd is not None:
                    os.close(fd)
            raise SandboxUnavailable(f"cannot start the sandbox: {e}") from None
        finally:
            if filter_fd is not None:
                os.close(filter_fd)
        if info_w is not None:
            os.close(info_w)
        child = [0]
        try:
            self._talk(proc, payload, outer, wall_s, cap, result, on_record, info_r, child)
        finally:
            self._end(proc, child[0], graceful=result.done and result.killed is None)
            if info_r is not None:
                os.close(info_r)
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                try:
                    stream.close()
                except OSError:
                    pass
            result.returncode = proc.returncode
            if work:
                shutil.rmtree(work, ignore_errors=True)
        return result

    @staticmethod
    def _end(proc: subprocess.Popen, child: int, graceful: bool) -> None:
        """End the container: let a finished one exit by itself; otherwise SIGKILL its
        PID-namespace init (``child``, from ``--info-fd``), which takes every process inside
        with it and lets bubblewrap exit and reap it; SIGKILL bubblewrap as the last resort."""
        if graceful:
            try:
                proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                pass
        if proc.poll() is None and child > 0:
            try:
                os.kill(child, signal.SIGKILL)
                proc.wait(timeout=2.0)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if proc.poll() is None:
            try:
                proc.kill()
            except OSError:
                pass
        proc.wait()

    def _talk(self, proc, payload, outer, wall_s, cap, result, on_record, info_r, child) -> None:  # noqa: ANN001
        deadline = time.monotonic() + wall_s
        sel = selectors.DefaultSelector()
        info = bytearray()
        if info_r is not None:
            sel.register(info_r, selectors.EVENT_READ, "info")
        os.set_blocking(proc.stdin.fileno(), False)
        view = memoryview(payload)
        sel.register(proc.stdin, selectors.EVENT_WRITE, "in")
        sel.register(proc.stdout, selectors.EVENT_READ, "out")
        sel.register(proc.stderr, selectors.EVENT_READ, "err")
        buf, err, total = b"", bytearray(), 0
        out_open = True
        try:
            while out_open:
                left = deadline - time.monotonic()
                if left <= 0:
                    result.killed = "wall_time"
                    return
                for key, _ in sel.select(left):
                    if key.data == "in":
                        try:
                            n = os.write(key.fd, view[:65536])
                        except (BrokenPipeError, OSError):
                            n = len(view)
                        view = view[n:]
                        if not view:
                            sel.unregister(proc.stdin)
                            proc.stdin.close()
                        continue
                    chunk = os.read(key.fd, 65536)
                    if key.data == "info":
                        info.extend(chunk)
                        if not chunk:
                            sel.unregister(info_r)
                            child[0] = _child_pid(info)
                        continue
                    if key.data == "err":
                        if not chunk:
                            sel.unregister(proc.stderr)
                        else:
                            err.extend(chunk)
                            del err[:-2000]
                        continue
                    if not chunk:
                        out_open = False
                        break
                    total += len(chunk)
                    if total > cap:
                        result.killed = "output_limit"
                        return
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        try:
                            rec = json.loads(line)
                        except ValueError:
                            continue
                        if not isinstance(rec, dict) or rec.get("n") != outer:
                            continue
                        if rec.get("hello"):
                            result.hello = True
                        elif rec.get("done"):
                            result.done = True
                        elif isinstance(rec.get("i"), int) and rec["i"] not in result.records:
                            result.records[rec["i"]] = rec
                            if on_record is not None and not on_record(rec):
                                result.killed = "stopped"
                                return
        finally:
            sel.close()
            if not child[0]:
                child[0] = _child_pid(info)
            result.stderr = err.decode("utf-8", "replace").strip()

    def probe(self) -> None:
        """Run one trivial test in the sandbox; raise :class:`SandboxUnavailable` with
        bubblewrap's own message when it cannot run here."""
        # its own time limit: an interpreter start on a loaded machine can take longer than a
        # short test_timeout_s, which is not the sandbox failing
        slow = dataclasses.replace(
            self.limits, test_timeout_s=max(self.limits.test_timeout_s, PROBE_TIMEOUT_S)
        )
        res = self.run(
            "print(6 * 7)", [{"i": 0, "kind": "stdio", "input": ""}], wall_s=60.0, limits=slow
        )
        rec = res.records.get(0)
        if rec is None or rec.get("status") != "ran" or rec.get("out", "").strip() != "42":
            why = res.stderr.splitlines()[-1] if res.stderr else f"exit status {res.returncode}"
            raise SandboxUnavailable(
                f"the code sandbox does not work on this machine ({self.mode}: {why})"
            )
