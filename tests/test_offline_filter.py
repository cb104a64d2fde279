"""or1-filter: pass-rate band, the new column, resumability, and band errors."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from or1.commands.filter_prompts import check_band, count_correct
from or1.core.errors import ConfigError
from or1.core.types import Completion, Prompt, SamplingParams, Score
from tests.conftest import UNTRAINED_MODEL, run_cli


def test_band_defaults_and_errors():
    assert check_band(16, 1, None) == (1, 15)
    assert check_band(4, 0, 4) == (0, 4)
    for samples, lo, hi in [(4, 2, 1), (4, -1, 3), (4, 1, 5), (0, 0, None)]:
        with pytest.raises(ConfigError, match="offline"):
            check_band(samples, lo, hi)


def write_rows(path, n):
    rows = [
        {
            "data_source": "t",
            "prompt": [{"role": "user", "content": f"What is {i} + {i}?"}],
            "ability": "math",
            "reward_model": {"ground_truth": str(2 * i)},
            "extra_info": {"index": i},
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_or1_filter_keeps_the_band_and_resumes(tmp_path, cache_dir):
    data = tmp_path / "mine.jsonl"
    write_rows(data, 5)
    out = tmp_path / "kept.parquet"
    # a previous, interrupted run already counted rows 0 and 1 (the first chunk of two): they
    # are not sampled again
    progress = tmp_path / "kept.parquet.progress.jsonl"
    progress.write_text(
        '{"uid": "mine:0", "correct": 3}\n{"uid": "mine:1", "correct": 4}\n{"uid": "mi'
    )
    args = [
        f"data.path={data}",
        f"offline.output={out}",
        "offline.samples=4",
        "offline.prompts_per_call=2",
        "offline.min_correct=1",
        "offline.max_correct=3",
        "offline.max_tokens=8",
        f"hydra.run.dir={tmp_path / 'run'}",
        *UNTRAINED_MODEL,
    ]
    proc = run_cli("or1-filter", args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = pq.read_table(out).to_pylist()
    # the untrained model answers nothing right (rows 2-4: 0 of 4 -> too hard); row 1 is 4/4 -> too easy
    assert [r["extra_info"]["index"] for r in rows] == [0]
    assert rows[0]["pass_rate"] == 0.75
    assert not progress.exists()
    # the output is never overwritten
    proc = run_cli("or1-filter", args, tmp_path)
    assert proc.returncode == 2 and "already exists" in proc.stderr


class FakeSeededEngine:
    """Stands in for a rollout engine (sampling is not this test's subject): the j-th sample of
    the i-th prompt of a call is "right" or "wrong" by a hash of (call seed, i, j), as a real
    engine's per-call seeding makes samples depend on the call's seed and the prompt's place."""

    def __init__(self) -> None:
        self.calls: list[int] = []  # prompts per call

    def generate(self, prompts, params):
        import hashlib

        self.calls.append(len(prompts))

        def text(i, j):
            h = hashlib.sha256(f"{params.seed}:{i}:{j}".encode()).digest()[0]
            return "right" if h % 2 else "wrong"

        return [
            [Completion(list(p), [1], [0.0], "stop", text(i, j)) for j in range(params.n)]
            for i, p in enumerate(prompts)
        ]


class FakeVerifier:
    """Scores the fake engine's texts (verification is not this test's subject)."""

    def score_many(self, texts, rows):
        return [Score(1.0 if t == "right" else 0.0, "correct") for t in texts]


def test_resumed_pass_counts_equal_the_uninterrupted_run(tmp_path):
    prompts = [Prompt(f"u:{i}", {}, [i + 1]) for i in range(7)]
    params = SamplingParams(n=8, seed=11)

    full = count_correct(
        FakeSeededEngine(), FakeVerifier(), prompts, params, tmp_path / "full.jsonl", 3
    )
    assert sorted(full) == sorted(p.uid for p in prompts)
    assert len(set(full.values())) > 1  # the counts differ by seed and place: the test can fail
    lines = (tmp_path / "full.jsonl").read_text().splitlines(keepends=True)
    assert len(lines) == 7 and params.seed == 11  # one record per prompt; params untouched
    # killed after the first chunk; after the first chunk and one record of the second (a torn
    # write); with a cut line
    for cut in (lines[:3], lines[:4], [*lines[:3], lines[3][:7]]):
        progress = tmp_path / f"resumed_{len(cut)}_{len(cut[-1])}.jsonl"
        progress.write_text("".join(cut))
        engine = FakeSeededEngine()
        assert count_correct(engine, FakeVerifier(), prompts, params, progress, 3) == full
        assert engine.calls == [3, 1]  # the first chunk is never sampled again
