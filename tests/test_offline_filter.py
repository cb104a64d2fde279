"""or1-filter: pass-rate band, the new column, resumability, and band errors."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from or1.errors import ConfigError
from or1.offline_filter import check_band
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
    # a previous, interrupted run already counted rows 0 and 1: they are not sampled again
    progress = tmp_path / "kept.parquet.progress.jsonl"
    progress.write_text(
        '{"uid": "mine:0", "correct": 3}\n{"uid": "mine:1", "correct": 4}\n{"uid": "mi'
    )
    args = [
        f"data.path={data}",
        f"offline.output={out}",
        "offline.samples=4",
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
