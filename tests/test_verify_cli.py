"""The ``auto`` verifier (routing by ability) and the ``or1-verify`` command."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from or1.core.errors import ConfigError
from or1.core.registry import get_registry

ADD = {"inputs": ["1 2\n", "3 4\n"], "outputs": ["3\n", "7\n"]}
ADD_OK = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
ADD_BAD = "```python\nprint(0)\n```"


def test_auto_routes_by_ability_and_builds_lazily():
    registry = get_registry()

    def auto(routes: dict | None = None):
        return registry.build_partial("verifier", "auto", {"routes": routes or {}}, None)

    v = auto(
        {
            "math": {"name": "math", "timeout_s": 2.0, "workers": 1},
            "code": {"name": "code", "test_timeout_s": 2.0, "workers": 1},
        }
    )
    try:
        rows = [
            {"ability": "math", "reward_model": {"ground_truth": "\\frac{1}{2}"}},
            {"ability": "code", "reward_model": {"ground_truth": ADD}},
            {"ability": "math", "reward_model": {"ground_truth": "3"}},
            {"ability": "poetry", "reward_model": {"ground_truth": "x"}},
            {"reward_model": {"ground_truth": "3"}},
        ]
        responses = ["\\boxed{0.5}", ADD_OK, "\\boxed{4}", "roses", "\\boxed{3}"]
        scores = v.score_many(responses, rows)
        assert [s.status for s in scores] == ["correct", "correct", "wrong", "error", "error"]
        assert "poetry" in scores[3].reason and "ability" in scores[4].reason
        assert sorted(v._built) == ["code", "math"]
        assert v.answer_key("\\boxed{\\dfrac{1}{2}}", rows[0]) == "\\frac{1}{2}"
    finally:
        v.close()
    math_only = registry.build_partial("verifier", "auto", None, None)
    try:
        assert (
            math_only.score(
                "\\boxed{3}", {"ability": "math", "reward_model": {"ground_truth": "3"}}
            ).status
            == "correct"
        )
        assert list(math_only._built) == ["math"]  # no sandbox needed for math-only data
        with pytest.raises(ConfigError, match="unknown verifier component 'nope'"):
            auto({"code": {"name": "nope"}}).verifier_for("code")
        with pytest.raises(ConfigError, match="tiemout_s"):
            auto({"math": {"name": "math", "tiemout_s": 1}}).verifier_for("math")
    finally:
        math_only.close()


def run_cli(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "or1.cli.verify", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_or1_verify_scores_every_row_and_never_stops(tmp_path):
    src = tmp_path / "rows.jsonl"
    rows = [
        {
            "ability": "math",
            "response": "<think>hmm</think>\\boxed{\\sqrt{8}}",
            "ground_truth": "2\\sqrt{2}",
            "id": 1,
        },
        {
            "ability": "math",
            "response": "\\boxed{5}",
            "reward_model": {"ground_truth": ["4", "6"]},
            "id": 2,
        },
        {"ability": "code", "response": ADD_OK, "ground_truth": json.dumps(ADD), "id": 3},
        {"ability": "code", "response": ADD_BAD, "ground_truth": ADD, "id": 4},
        {"ability": "code", "response": ADD_OK, "ground_truth": {"weird": 1}, "id": 5},
        {"ability": "math", "ground_truth": "1", "id": 6},
        {"ability": "code", "response": "no code", "ground_truth": ADD, "id": 7},
    ]
    lines = [json.dumps(r) for r in rows]
    lines.insert(3, "{not json")
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    res = run_cli(
        str(src),
        "-o",
        str(out),
        "--workers",
        "1",
        "--no-progress",
        "--set",
        "routes.code.test_timeout_s=3",
    )
    assert res.returncode == 0, res.stderr
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(got) == 8
    assert [g.get("id") for g in got] == [1, 2, 3, None, 4, 5, 6, 7]  # input order kept
    assert [g["status"] for g in got] == [
        "correct",
        "wrong",
        "correct",
        "error",
        "wrong",
        "error",
        "error",
        "no_answer",
    ]
    assert [g["score"] for g in got] == [1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    assert "invalid JSON" in got[3]["message"] and "line 4" in got[3]["message"]
    assert "schema" in got[5]["message"] and "response" in got[6]["message"]
    assert got[0]["ground_truth"] == "2\\sqrt{2}"  # the input row is kept as it was
    assert "8 rows in" in res.stderr and "rows/s" in res.stderr


def test_or1_verify_bad_input_is_one_line(tmp_path):
    res = run_cli(str(tmp_path / "missing.jsonl"))
    assert res.returncode == 2 and res.stderr.strip().startswith("or1: error: input file not found")
    (tmp_path / "a.jsonl").write_text('{"ability": "math", "response": "x", "ground_truth": "1"}\n')
    res = run_cli(str(tmp_path / "a.jsonl"), "--set", "routes.math.nope=1", "--no-progress")
    assert res.returncode == 0  # the config problem concerns the rows, which get status error
    assert '"status": "error"' in (tmp_path / "a.verified.jsonl").read_text()
    res = run_cli(str(tmp_path / "a.jsonl"), "--verifier", "nope", "--no-progress")
    assert res.returncode == 2 and "unknown verifier component 'nope'" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
