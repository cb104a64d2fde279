"""In-sandbox test runner: the first process inside the sandbox. Standard library only; never
imported by or1 (its source is passed to ``python -I -c``).

It reads one JSON job on stdin (``solution``, ``driver`` source, ``tests`` WITHOUT expected
answers, ``limits``, ``nonce``, ``python``, ``sweep``), writes the solution into the sandbox's
scratch folder, and runs the tests, each in a child process that gets the resource limits
(set in the child between fork and exec: address space, CPU seconds, processes, file size,
open files, no core dumps) and its own session:

* ``stdio`` tests: ``python solution.py`` with the test input on stdin; the record holds its
  stdout (at most ``max_output_bytes``), exit status and the tail of stderr;
* every other kind: one ``_driver.py`` process for a run of tests, whose records (checked for
  the nonce) are relayed; a test that does not finish within ``test_timeout_s`` is killed.

After each child the runner kills every other process of the sandbox (``sweep``: only when it
is inside a PID namespace, where that means the model's leftovers and nothing else). It writes
one JSON line per event on stdout: ``{"hello": 1}``, then ``{"i": ..., "status": ...}`` per
test, then ``{"done": 1}``. It makes itself non-dumpable so that the model's processes (same
uid) cannot open its file descriptors through ``/proc``.
"""

import json
import os
import resource
import selectors
import signal
import subprocess
import sys
import time

WORK = "/tmp/or1"
OUTER = ""


def _nondumpable():
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE, 0
    except Exception:  # noqa: BLE001 - best effort
        pass


def _out(record):
    record["n"] = OUTER  # the harness drops lines without it (forged through /proc/1/fd/1)
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def _limiter(limits):
    mem = int(limits["memory_mb"]) * 2**20
    cpu = max(1, int(float(limits["test_timeout_s"]) + 1.999))
    nproc = int(limits["max_procs"])
    fsize = int(limits["max_file_mb"]) * 2**20

    def apply():  # runs in the child between fork and exec (this process is single-threaded)
        os.setsid()
        for res, value in (
            (resource.RLIMIT_AS, mem),
            (resource.RLIMIT_NPROC, nproc),
            (resource.RLIMIT_FSIZE, fsize),
            (resource.RLIMIT_NOFILE, 256),
            (resource.RLIMIT_CORE, 0),
        ):
            if value > 0:
                try:
                    resource.setrlimit(res, (value, value))
                except (ValueError, OSError):
                    pass
        # SIGXCPU at the soft limit, SIGKILL one second later.
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))

    return apply


def _sweep(enabled):
    """Kill every process of the sandbox but PID 1 (bubblewrap's init) and this one."""
    if not enabled:
        return
    me = os.getpid()
    for _ in range(3):
        found = False
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            if pid in (1, me):
                continue
            try:
                os.kill(pid, signal.SIGKILL)
                found = True
            except OSError:
                pass
        if not found:
            break
        while True:  # reap what was ours
            try:
                if os.waitpid(-1, os.WNOHANG) == (0, 0):
                    break
            except ChildProcessError:
                break
        time.sleep(0.005)


def _kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass
    try:
        proc.kill()
    except OSError:
        pass


def _tail(data, n=400):
    text = data[-n:].decode("utf-8", "replace")
    return text


def _env():
    return {"PATH": "/usr/bin:/bin", "HOME": WORK, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}


def _signal_status(rc):
    if rc is not None and rc < 0:
        sig = -rc
        if sig == signal.SIGXCPU or sig == signal.SIGKILL:
            return "timeout"
        if sig == signal.SIGXFSZ:
            return "output_limit"
        return "crash"
    return "crash"


def run_stdio(job, test, limits):
    timeout = float(limits["test_timeout_s"])
    cap = int(limits["max_output_bytes"])
    in_path = os.path.join(WORK, ".stdin")
    with open(in_path, "w", encoding="utf-8") as fh:
        fh.write(test.get("input", ""))
    t0 = time.monotonic()
    with open(in_path, "rb") as stdin:
        proc = subprocess.Popen(
            [job["python"], "-I", os.path.join(WORK, "solution.py")],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=WORK,
            env=_env(),
            preexec_fn=_limiter(limits),
            close_fds=True,
        )
    os.unlink(in_path)
    out, err = bytearray(), bytearray()
    status = None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    open_streams = 2
    deadline = t0 + timeout
    exited_at = None
    while open_streams:
        now = time.monotonic()
        left = deadline - now
        if left <= 0:
            status = "timeout"
            break
        if exited_at is None and proc.poll() is not None:
            exited_at = now
        elif exited_at is not None and now - exited_at > 0.05:
            break  # it exited; a leftover child still holds the pipes open
        for key, _ in sel.select(min(left, 0.02 if exited_at else 0.1)):
            chunk = os.read(key.fd, 65536)
            if not chunk:
                sel.unregister(key.fileobj)
                open_streams -= 1
                continue
            buf = key.data
            if buf is err:
                err.extend(chunk)
                del err[:-4096]
            else:
                out.extend(chunk)
                if len(out) > cap:
                    status = "output_limit"
                    break
        if status:
            break
    if status is None:
        try:
            rc = proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            rc, status = None, "timeout"
    _kill(proc)
    proc.wait()
    sel.close()
    proc.stdout.close()
    proc.stderr.close()
    elapsed = time.monotonic() - t0
    if status is None:
        rc = proc.returncode
        status = "ran" if rc == 0 else ("crash" if rc > 0 else _signal_status(rc))
    record = {"i": test["i"], "status": status, "t": round(elapsed, 4), "rc": proc.returncode}
    if status == "ran":
        record["out"] = out[:cap].decode("utf-8", "replace")
    else:
        record["err"] = _tail(bytes(err))
    return record


def run_driver(job, tests, limits):
    """Run ``tests`` (function kinds) in one driver process; yield one record per test. A test
    that times out or kills the driver ends the run (the caller restarts it for the rest)."""
    timeout = float(limits["test_timeout_s"])
    startup = float(limits.get("startup_s", timeout))
    r, w = os.pipe()
    payload = json.dumps(
        {
            "nonce": job["nonce"],
            "prefix": job.get("prefix", ""),
            "solution": job["solution"],
            "entry": job.get("entry"),
            "tests": tests,
        }
    ).encode()
    proc = subprocess.Popen(
        [job["python"], "-I", os.path.join(WORK, "_driver.py"), str(w)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=WORK,
        env=_env(),
        preexec_fn=_limiter(limits),
        pass_fds=(w,),
    )
    os.close(w)
    try:
        proc.stdin.write(payload)
        proc.stdin.close()
    except OSError:
        pass
    nonce = job["nonce"]
    pending = {t["i"] for t in tests}
    current = None
    deadline = time.monotonic() + startup + timeout
    buf = b""
    err = bytearray()
    sel = selectors.DefaultSelector()
    sel.register(r, selectors.EVENT_READ, "out")
    sel.register(proc.stderr, selectors.EVENT_READ, "err")
    reader_open = True
    t_start = time.monotonic()
    exited_at = None
    while pending and reader_open:
        now = time.monotonic()
        left = deadline - now
        if left <= 0:
            break
        if exited_at is None and proc.poll() is not None:
            exited_at = now
        elif exited_at is not None and now - exited_at > 0.05:
            reader_open = False  # it exited; a leftover child still holds the pipe open
            break
        for key, _ in sel.select(min(left, 0.02 if exited_at else 0.1)):
            if key.data == "err":
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                else:
                    err.extend(chunk)
                    del err[:-4096]
                continue
            chunk = os.read(r, 65536)
            if not chunk:
                reader_open = False
                break
            buf += chunk
            if len(buf) > 4 * int(limits["max_output_bytes"]) + 65536:
                reader_open = False
                break
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(rec, dict) or rec.get("n") != nonce:
                    continue
                if "s" in rec:
                    current = rec["s"]
                    t_start = time.monotonic()
                    deadline = t_start + timeout
                    continue
                i = rec.get("i")
                if i not in pending:
                    continue
                pending.discard(i)
                out = {"i": i, "status": "ran", "t": round(time.monotonic() - t_start, 4)}
                for k in ("value", "ok", "error"):
                    if k in rec:
                        out[k] = rec[k]
                if "error" in rec and "ok" not in rec:
                    out["status"] = "error"
                current = None
                yield out
    _kill(proc)
    proc.wait()
    sel.close()
    os.close(r)
    proc.stderr.close()
    if pending:
        # The test in flight (or the first one left) timed out or took the driver down.
        stuck = current if current in pending else min(pending)
        if reader_open and time.monotonic() >= deadline:
            status = "timeout"
        else:
            status = "timeout" if _signal_status(proc.returncode) == "timeout" else "crash"
        yield {"i": stuck, "status": status, "err": _tail(bytes(err)), "rc": proc.returncode}


def main():
    global WORK, OUTER
    job = json.loads(sys.stdin.buffer.read())
    WORK = job.get("work") or WORK
    OUTER = job.pop("outer")
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    _nondumpable()
    os.makedirs(WORK, exist_ok=True)
    os.chdir(WORK)
    with open(os.path.join(WORK, "solution.py"), "w", encoding="utf-8") as fh:
        fh.write(job["solution"])
    with open(os.path.join(WORK, "_driver.py"), "w", encoding="utf-8") as fh:
        fh.write(job["driver"])
    limits = job["limits"]
    sweep = bool(job.get("sweep"))
    stop = bool(job.get("stop_on_failure", True))
    _out({"hello": 1})
    tests = job["tests"]
    k = 0
    while k < len(tests):
        test = tests[k]
        if test["kind"] == "stdio":
            rec = run_stdio(job, test, limits)
            _sweep(sweep)
            _out(rec)
            k += 1
            if stop and rec["status"] != "ran":
                break
            continue
        run = []
        while k + len(run) < len(tests) and tests[k + len(run)]["kind"] != "stdio":
            run.append(tests[k + len(run)])
        failed = False
        done = set()
        for rec in run_driver(job, run, limits):
            done.add(rec["i"])
            _out(rec)
            if rec["status"] in ("timeout", "crash"):
                failed = True
        _sweep(sweep)
        # Resume after the test that took the driver down; the others get a new driver.
        if failed:
            if stop:
                break
            last = max(done)
            remaining = [t for t in run if t["i"] > last]
            k += len(run) - len(remaining)
            continue
        k += len(run)
    _out({"done": 1})


if __name__ == "__main__":
    main()
