"""The CPU demo's promise, end to end: `or1-train` with no arguments learns (slow: minutes)."""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import run_cli


@pytest.mark.slow
def test_default_run_raises_heldout_accuracy_by_20_points(tmp_path, cache_dir):
    run_cli(
        "or1-train", ["trainer.total_steps=1", f"hydra.run.dir={tmp_path / 'build'}"], tmp_path
    )  # build once
    t0 = time.monotonic()
    proc = run_cli("or1-train", [f"hydra.run.dir={tmp_path / 'demo'}"], tmp_path, timeout=1800)
    minutes = (time.monotonic() - t0) / 60
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    start, end = summary["tiny_arith/start_accuracy"], summary["tiny_arith/end_accuracy"]
    print(f"held-out accuracy {start:.3f} -> {end:.3f} in {minutes:.1f} min")
    assert 0.15 <= start <= 0.55
    assert end - start >= 0.20
    assert "held-out accuracy on val" in proc.stdout + proc.stderr
