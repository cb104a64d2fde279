"""The Python API: the example of docs/python-api.md, run as a user would, writes the same run
folder as the commands; bad overrides raise before anything is written."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT


def docs_example() -> str:
    text = (ROOT / "docs" / "python-api.md").read_text()
    return re.search(r"```python\n(.*?)```", text, re.DOTALL).group(1)


def test_the_documented_example_trains_and_evaluates(tmp_path, cache_dir):
    script = tmp_path / "example.py"
    script.write_text(docs_example())
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "runs" / "api-demo"
    summary = json.loads((run / "summary.json").read_text())
    printed = proc.stdout.splitlines()  # the example's prints among the run's log lines
    assert f"2 {summary['run_dir']}" in printed
    assert [m["step"] for m in map(json.loads, (run / "metrics.jsonl").open())][-2:] == [1, 2]
    assert (run / "final_model" / "model.safetensors").is_file()
    assert (run / "train.log").is_file() and (run / ".hydra" / "config.yaml").is_file()
    overrides = (run / ".hydra" / "overrides.yaml").read_text()
    assert "trainer.total_steps=2" in overrides
    report = json.loads((tmp_path / "runs" / "api-demo-eval" / "eval_report.json").read_text())
    assert str(report["tiny_arith"]["avg@2"]) in printed


def test_bad_overrides_raise_before_anything_is_written(tmp_path, monkeypatch):
    import or1
    from or1.core.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="did you mean 'trainer.total_steps'"):
        or1.train(["trainer.totl_steps=2"], run_dir=tmp_path / "a")
    with pytest.raises(ConfigError, match="entropy.target=-1.0 must be >= 0"):
        or1.train(["entropy.target=-1"], run_dir=tmp_path / "b")
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        or1.train(["--cfg"], run_dir=tmp_path / "c")
    assert list(tmp_path.iterdir()) == []
