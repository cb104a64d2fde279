"""Evaluation metrics against hand-computed values, and `or1-eval` end to end: report, resume,
checkpoints, bad input."""

from __future__ import annotations

import json
from math import comb

import pytest

from or1.core.types import Completion
from or1.rl.evaluation import (
    ProblemResult,
    avg_at_k,
    check_pass_ks,
    majority_correct,
    pass_at_k,
    sample_nll,
    summarize,
)
from tests.conftest import UNTRAINED_MODEL, read_jsonl, run_cli, shared_data
from tests.test_cli import assert_one_line_error

# ------------------------------------------------------------------------- hand-computed metrics


def test_pass_at_k_hand_values():
    # n=4 samples, c=1 correct: pass@1 = 1/4; pass@2 = 1 - C(3,2)/C(4,2) = 1 - 3/6 = 1/2
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    # n=4, c=2: pass@2 = 1 - C(2,2)/C(4,2) = 1 - 1/6 = 5/6; pass@3 = 1 (n - c = 2 < 3)
    assert pass_at_k(4, 2, 2) == pytest.approx(5 / 6)
    assert pass_at_k(4, 2, 3) == 1.0
    # n=8, c=3: pass@4 = 1 - C(5,4)/C(8,4) = 1 - 5/70 = 13/14
    assert pass_at_k(8, 3, 4) == pytest.approx(13 / 14)
    assert pass_at_k(8, 0, 8) == 0.0 and pass_at_k(8, 8, 1) == 1.0
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k(4, 1, 5)


def test_pass_at_k_is_the_chance_that_k_draws_without_replacement_hit():
    """Independent computation: enumerate every k-subset of n samples."""
    from itertools import combinations

    n, c = 6, 2
    samples = [1] * c + [0] * (n - c)
    for k in range(1, n + 1):
        subsets = list(combinations(samples, k))
        assert pass_at_k(n, c, k) == pytest.approx(sum(any(s) for s in subsets) / comb(n, k))


def test_avg_at_k_and_majority_hand_values():
    assert avg_at_k([[1, 0, 0, 1], [0, 0, 0, 0], [1, 1, 1, 0]]) == pytest.approx(5 / 12)
    assert majority_correct([1, 0, 1, 0], ["7", "8", "7", None]) == 1.0  # 7 twice, correct
    assert (
        majority_correct([0, 1, 1, 0], ["3", "5", "5", "3"]) == 0.0
    )  # tie 3/5: first seen (3) wins
    assert (
        majority_correct([0, 0, 1, 1], [None, None, "9", "9"]) == 1.0
    )  # no-answer samples do not vote
    assert majority_correct([0, 0], [None, None]) == 0.0


def test_summarize_hand_values():
    results = [
        ProblemResult(
            "a", [1, 0, 0, 0], [10, 20, 30, 40], [False, False, False, True], ["1", "2", "2", None]
        ),
        ProblemResult("b", [1, 1, 0, 0], [5, 5, 5, 5], [False] * 4, ["4", "4", "6", "6"]),
        ProblemResult("c", [0, 0, 0, 0], [8, 8, 8, 8], [True] * 4, [None] * 4),
    ]
    m = summarize(results, 4, majority=True)
    assert m["avg@4"] == pytest.approx(3 / 12)
    assert m["pass@1"] == pytest.approx((1 / 4 + 2 / 4 + 0) / 3)
    assert m["pass@2"] == pytest.approx(((1 - 3 / 6) + (1 - 1 / 6) + 0) / 3)
    assert m["pass@4"] == pytest.approx(2 / 3)
    assert m["maj@4"] == pytest.approx(
        1 / 3
    )  # a: "2" wins (wrong); b: tie, "4" first (right); c: none
    assert m["response_length"] == pytest.approx((100 + 20 + 32) / 12)
    assert m["truncated_frac"] == pytest.approx(5 / 12)
    assert m["accuracy"] == m["avg@4"]  # the foundation's name for the same number
    assert set(m) == {
        "accuracy",
        "avg@4",
        "pass@1",
        "pass@2",
        "pass@4",
        "maj@4",
        "response_length",
        "truncated_frac",
        "problems",
    }
    assert check_pass_ks(8, []) == [1, 2, 4, 8] and check_pass_ks(6, []) == [1, 2, 4, 6]
    with pytest.raises(ValueError, match="pass@8 needs at least 8 samples"):
        check_pass_ks(4, [1, 8])


def test_sample_entropy_is_the_mean_negative_logprob_per_token():
    def done(logprobs):
        return Completion([1], list(range(len(logprobs))), logprobs, "stop", "")

    # two samples: 3 tokens summing to -log p = 0.6 and 1 token of 0.2
    nll = sample_nll([done([-0.1, -0.2, -0.3]), done([-0.2])])
    assert nll == pytest.approx([0.6, 0.2])
    assert sample_nll([done([-0.1]), Completion([1], [5, 6], [], "stop", "")]) == []
    results = [
        ProblemResult("a", [1, 0], [3, 1], [False, False], ["1", "2"], nll),
        ProblemResult("b", [0, 0], [4, 2], [False, True], [None, None], [1.0, 0.6]),
    ]
    # (0.6 + 0.2 + 1.0 + 0.6) / (3 + 1 + 4 + 2) tokens
    assert summarize(results, 2)["sample_entropy"] == pytest.approx(0.24)
    # a problem resumed from a record without log-probs: left out, not averaged over fewer
    record = results[1].to_dict()
    del record["nll"]
    old = ProblemResult.from_dict(record)
    assert "sample_entropy" not in summarize([results[0], old], 2)
    assert ProblemResult.from_dict(results[0].to_dict()) == results[0]
    with pytest.raises(ValueError, match="pass@8 needs at least 8 samples"):
        check_pass_ks(4, [1, 8])


# ------------------------------------------------------------------------------- or1-eval


EVAL = [*UNTRAINED_MODEL, "eval.k=4", "eval.max_problems=8", "eval.chunk=4", "eval.max_tokens=24"]


def recompute(records: list[dict], k: int) -> dict[str, float]:
    """Avg@K and pass@k from the per-problem records, by direct counting."""
    correct = [sum(r["scores"]) for r in records]
    return {
        f"avg@{k}": sum(correct) / (k * len(records)),
        "pass@2": sum(pass_at_k(k, int(c), 2) for c in correct) / len(records),
        f"pass@{k}": sum(1 for c in correct if c > 0) / len(records),
    }


def test_or1_eval_reports_and_resumes_per_problem(tmp_path, cache_dir):
    run = tmp_path / "eval"
    proc = run_cli("or1-eval", [f"hydra.run.dir={run}", *EVAL], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((run / "eval_report.json").read_text())
    assert list(report) == ["tiny_arith"]  # the data source's held-out split, by its name
    m = report["tiny_arith"]
    assert {
        "avg@4",
        "pass@1",
        "pass@2",
        "pass@4",
        "maj@4",
        "response_length",
        "truncated_frac",
    } <= set(m)
    records = read_jsonl(run / "eval_progress.jsonl")[1:]
    assert [r["uid"] for r in records] == [f"val:{i}" for i in range(8)]
    for key, value in recompute(records, 4).items():
        assert m[key] == pytest.approx(value), key
    tokens = sum(n for r in records for n in r["lengths"])
    assert m["sample_entropy"] == pytest.approx(sum(x for r in records for x in r["nll"]) / tokens)
    assert all(x > 0 for r in records for x in r["nll"])
    assert m["pass@1"] == pytest.approx(m["avg@4"])
    assert "| tiny_arith |" in (run / "eval_report.md").read_text()

    # Interrupted after the first chunk (4 problems) and in the middle of writing a line; the
    # first problem's record is also altered, to show that it is reused, not sampled again.
    lines = (run / "eval_progress.jsonl").read_text().splitlines()
    first = json.loads(lines[1])
    c0 = sum(first["scores"])
    first["scores"] = [1.0] * 4
    (run / "eval_progress.jsonl").write_text(
        "\n".join([lines[0], json.dumps(first), *lines[2:5]]) + "\n" + lines[5][:17]
    )
    (run / "eval_report.json").unlink()
    proc = run_cli("or1-eval", [f"hydra.run.dir={run}", *EVAL], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming, 4 problems already evaluated" in proc.stdout + proc.stderr
    resumed = json.loads((run / "eval_report.json").read_text())["tiny_arith"]
    # the second chunk was sampled again with the same seed: everything equal but problem 0
    assert resumed["avg@4"] == pytest.approx(m["avg@4"] + (4 - c0) / 32)
    again = read_jsonl(run / "eval_progress.jsonl")[1:]
    assert again[4:] == records[4:]

    # different settings in the same folder: refused, naming the setting
    proc = run_cli("or1-eval", [f"hydra.run.dir={run}", *EVAL, "eval.temperature=0.6"], tmp_path)
    assert_one_line_error(proc, "temperature", "eval_progress.jsonl")


def test_or1_eval_bad_input(tmp_path, cache_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [  # the OR1 row schema without its reward_model column
        {
            "data_source": "hand",
            "prompt": [{"role": "user", "content": f"{i} + 1 = ?"}],
            "ability": "math",
            "extra_info": {"index": i, "split": "test"},
        }
        for i in range(3)
    ]
    bad = tmp_path / "no_answers.parquet"
    pq.write_table(pa.Table.from_pylist(rows), bad)
    proc = run_cli("or1-eval", [*EVAL, f"eval.datasets=[{bad}]"], tmp_path)
    assert_one_line_error(proc, str(bad), "row 0", "reward_model.ground_truth")

    proc = run_cli("or1-eval", [*EVAL, "eval.k=2", "eval.pass_k=[1,4]"], tmp_path)
    assert_one_line_error(proc, "eval.pass_k", "pass@4 needs at least 4 samples", "eval.k=2")


def test_or1_eval_prompts_longer_than_the_context(tmp_path, cache_dir):
    # AIME prompts do not fit the tiny model's 256-token context: one line naming the set
    aime = shared_data("aime25.parquet")
    proc = run_cli(
        "or1-eval",
        [*EVAL, f"eval.datasets=[{aime}]", f"hydra.run.dir={tmp_path / 'aime'}"],
        tmp_path,
    )
    assert_one_line_error(proc, "aime25", "context")
