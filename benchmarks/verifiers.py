"""Verifier throughput on this machine, in one run: math verifications/s, and code test
executions/s with the bubblewrap sandbox vs without any sandbox (``sandbox=none``).

    .venv/bin/python benchmarks/verifiers.py [--workers 2 --math 400 --code 64 --tests 10]

Math: ``--math`` responses (a mix of correct, wrong, fast-path and symbolic answers) scored
with ``score_many`` by the ``math`` verifier (workers started before timing). Code: ``--code``
correct responses, each with a stdin/stdout suite of ``--tests`` tests and a function-call
suite of as many, scored with ``score_many``; "test executions" counts test records that came
back. Both sandbox modes run alternately, ``--reps`` times; the median is reported. The last
line is ``math_per_s=<m> code_tests_per_s_sandbox=<a> code_tests_per_s_none=<b> overhead=<b/a>``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from or1.plugins import get_registry

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

STDIO_SRC = "```python\nimport sys\na, b = map(int, sys.stdin.read().split())\nprint(a + b)\n```"
CALL_SRC = "```python\nclass Solution:\n    def add(self, a, b):\n        return a + b\n```"


def build(name: str, **cfg):
    comp = get_registry().get("verifier", name)
    return comp.factory(comp.schema(**cfg), None)


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
    bare = build("code", workers=args.workers, sandbox="none")
    rates: dict[str, list[float]] = {"bwrap": [], "none": []}
    try:
        for _ in range(args.reps):
            rates["bwrap"].append(bench_code(sandboxed, responses, rows))
            rates["none"].append(bench_code(bare, responses, rows))
    finally:
        sandboxed.close()
        bare.close()
    med = {k: statistics.median(v) for k, v in rates.items()}
    for k in ("bwrap", "none"):
        runs = ", ".join(f"{r:.1f}" for r in rates[k])
        print(
            f"code ({'sandbox' if k == 'bwrap' else 'NO sandbox'}): {args.code} responses x {args.tests} tests, "
            f"{args.workers} workers: {med[k]:.1f} test executions/s (runs: {runs})"
        )
    print(
        f"math_per_s={math_rate:.1f} code_tests_per_s_sandbox={med['bwrap']:.1f} "
        f"code_tests_per_s_none={med['none']:.1f} overhead={med['none'] / med['bwrap']:.2f}"
    )


if __name__ == "__main__":
    main()
