"""Verifier throughput on this machine, in one run: math verifications/s, and code test
executions/s with the bubblewrap sandbox, without any sandbox (``sandbox=none``) and, as the
bare baseline, one plain ``python3`` process per test written here without or1's code.

    .venv/bin/python benchmarks/verifiers.py [--workers 2 --math 400 --code 64 --tests 10]

Math: ``--math`` responses (a mix of correct, wrong, fast-path and symbolic answers) scored
with ``score_many`` by the ``math`` verifier (workers started before timing). Code: ``--code``
correct responses, each with a stdin/stdout suite of ``--tests`` tests and a function-call
suite of as many, scored with ``score_many``; "test executions" counts test records that came
back. Bare: the same programs, each test one ``subprocess.run([python3, "-I", file])`` with
the test's stdin (a call test: the solution plus two lines that read the arguments as JSON and
print the result), ``--workers`` at a time, output compared here. The three variants run
alternately, ``--reps`` times, on the whole mix and then on its stdin/stdout half alone (where
each variant starts one process per test; call tests share one driver process per response
in or1); the median is reported. The last line is ``math_per_s=<m>
code_tests_per_s_sandbox=<a> code_tests_per_s_none=<b> overhead=<b/a>
math_per_s_per_worker=<m/workers> overhead_vs_bare=<bare/a>
overhead_vs_bare_stdio=<the same on the stdin/stdout half>``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from or1.core.registry import get_registry

MATH = [
    ("\\boxed{\\frac{1}{2}}", "0.5"),
    ("\\boxed{2\\sqrt{2}}", "\\sqrt{8}"),
    ("\\boxed{68}", "68"),
    ("\\boxed{69}", "68"),
    ("The answer is \\boxed{(-\\infty, 3)}", "x<3"),
    ("\\boxed{10\\%}", "10"),
    ("\\boxed{\\{1,2,3\\}}", "\\{3,2,1\\}"),
    ("no answer here", "7"),
]

STDIO_CODE = "import sys\na, b = map(int, sys.stdin.read().split())\nprint(a + b)\n"
CALL_CODE = "class Solution:\n    def add(self, a, b):\n        return a + b\n"
STDIO_SRC = f"```python\n{STDIO_CODE}```"
CALL_SRC = f"```python\n{CALL_CODE}```"
# The bare baseline's call harness: arguments as JSON on stdin, the result as JSON on stdout.
CALL_MAIN = "\nimport json, sys\nprint(json.dumps(Solution().add(*json.loads(sys.stdin.read()))))\n"


def build(name: str, **cfg):
    return get_registry().build_partial("verifier", name, cfg, None)


def bench_math(n: int, workers: int) -> float:
    v = build("math", workers=workers, timeout_s=5.0)
    try:
        v.warmup()
        items = [MATH[i % len(MATH)] for i in range(n)]
        rows = [{"ability": "math", "reward_model": {"ground_truth": g}} for _, g in items]
        t0 = time.perf_counter()
        scores = v.score_many([r for r, _ in items], rows)
        dt = time.perf_counter() - t0
        assert sum(s.status == "correct" for s in scores) >= n // 2
        return n / dt
    finally:
        v.close()


def code_rows(n: int, tests: int) -> tuple[list[str], list[dict]]:
    stdio = {
        "inputs": [f"{k} {k + 1}\n" for k in range(tests)],
        "outputs": [f"{2 * k + 1}\n" for k in range(tests)],
    }
    call = {
        "inputs": [[k, k] for k in range(tests)],
        "outputs": [[2 * k] for k in range(tests)],
        "fn_name": "add",
    }
    responses, rows = [], []
    for i in range(n):
        gt, src = (stdio, STDIO_SRC) if i % 2 == 0 else (call, CALL_SRC)
        responses.append(src)
        rows.append({"ability": "code", "reward_model": {"ground_truth": gt}})
    return responses, rows


def bench_code(v, responses: list[str], rows: list[dict]) -> float:
    before = v.tests_run
    t0 = time.perf_counter()
    scores = v.score_many(responses, rows)
    dt = time.perf_counter() - t0
    bad = [s for s in scores if s.status != "correct"]
    assert not bad, bad[:2]
    return (v.tests_run - before) / dt


def bare_jobs(n: int, tests: int, folder: str) -> list[tuple[str, str, str]]:
    """The bare baseline's work, one (program file, stdin, expected stdout) per test, for the
    same ``n`` responses as :func:`code_rows` (even: stdin/stdout, odd: calls)."""
    stdio_file = os.path.join(folder, "stdio.py")
    call_file = os.path.join(folder, "call.py")
    with open(stdio_file, "w", encoding="utf-8") as fh:
        fh.write(STDIO_CODE)
    with open(call_file, "w", encoding="utf-8") as fh:
        fh.write(CALL_CODE + CALL_MAIN)
    jobs = []
    for i in range(n):
        for k in range(tests):
            if i % 2 == 0:
                jobs.append((stdio_file, f"{k} {k + 1}\n", f"{2 * k + 1}"))
            else:
                jobs.append((call_file, json.dumps([k, k]), json.dumps(2 * k)))
    return jobs


def bench_bare(python: str, jobs: list[tuple[str, str, str]], workers: int) -> float:
    """Test executions/s of one plain ``python -I file`` process per test, ``workers`` at once."""

    def one(job: tuple[str, str, str]) -> bool:
        path, stdin, expected = job
        done = subprocess.run(
            [python, "-I", path], input=stdin, capture_output=True, text=True, timeout=30
        )
        return done.returncode == 0 and done.stdout.strip() == expected

    with ThreadPoolExecutor(workers) as pool:
        t0 = time.perf_counter()
        ok = list(pool.map(one, jobs))
        dt = time.perf_counter() - t0
    assert all(ok), ok.count(False)
    return len(jobs) / dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--math", type=int, default=400)
    ap.add_argument("--code", type=int, default=64)
    ap.add_argument("--tests", type=int, default=10)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()

    math_rate = bench_math(args.math, args.workers)
    print(
        f"math: {args.math} verifications, {args.workers} workers: {math_rate:.1f} verifications/s"
    )

    responses, rows = code_rows(args.code, args.tests)
    sandboxed = build("code", workers=args.workers, sandbox="bwrap")
    unsandboxed = build("code", workers=args.workers, sandbox="none")
    python = sandboxed.sandbox.python  # the interpreter the sandbox runs model code with
    # "mix": the half stdin/stdout, half call-based responses; "stdio": the stdin/stdout half
    # alone, where every variant starts one process per test (calls share one per response).
    rates: dict[tuple[str, str], list[float]] = {
        (v, k): [] for k in ("mix", "stdio") for v in ("bwrap", "none", "bare")
    }
    try:
        with tempfile.TemporaryDirectory(prefix="or1-bench-bare-") as folder:
            jobs = bare_jobs(args.code, args.tests, folder)
            stdio_jobs = [j for j in jobs if j[0].endswith("stdio.py")]
            for _ in range(args.reps):
                rates["bwrap", "mix"].append(bench_code(sandboxed, responses, rows))
                rates["none", "mix"].append(bench_code(unsandboxed, responses, rows))
                rates["bare", "mix"].append(bench_bare(python, jobs, args.workers))
            for _ in range(args.reps):
                rates["bwrap", "stdio"].append(bench_code(sandboxed, responses[::2], rows[::2]))
                rates["none", "stdio"].append(bench_code(unsandboxed, responses[::2], rows[::2]))
                rates["bare", "stdio"].append(bench_bare(python, stdio_jobs, args.workers))
    finally:
        sandboxed.close()
        unsandboxed.close()
    med = {key: statistics.median(v) for key, v in rates.items()}
    names = {
        "bwrap": "sandbox",
        "none": "NO sandbox",
        "bare": f"bare {os.path.basename(python)} per test",
    }
    for kind, what in (("mix", "responses"), ("stdio", "stdin/stdout responses")):
        n = args.code if kind == "mix" else len(responses[::2])
        for v, name in names.items():
            runs = ", ".join(f"{r:.1f}" for r in rates[v, kind])
            print(
                f"code ({name}): {n} {what} x {args.tests} tests, {args.workers} workers: "
                f"{med[v, kind]:.1f} test executions/s (runs: {runs})"
            )
    print(
        f"math_per_s={math_rate:.1f} code_tests_per_s_sandbox={med['bwrap', 'mix']:.1f} "
        f"code_tests_per_s_none={med['none', 'mix']:.1f} "
        f"overhead={med['none', 'mix'] / med['bwrap', 'mix']:.2f} "
        f"math_per_s_per_worker={math_rate / args.workers:.1f} "
        f"overhead_vs_bare={med['bare', 'mix'] / med['bwrap', 'mix']:.2f} "
        f"overhead_vs_bare_stdio={med['bare', 'stdio'] / med['bwrap', 'stdio']:.2f}"
    )


if __name__ == "__main__":
    main()
