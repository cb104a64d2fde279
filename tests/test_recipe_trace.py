"""From a CPU run's samples.jsonl and metrics.jsonl alone, recompute the advantages, the
online filter's kept flags and the entropy controller's coefficients (issue: the recipe)."""

from __future__ import annotations

import statistics
from collections import defaultdict

import pytest

from tests.conftest import LIGHTLY_WARMED, REFERENCE_ENGINES, read_jsonl, run_cli

TARGET, DELTA, COEF_MAX = 100.0, 1e-3, 2.5e-3  # target above any entropy: the gate is always on


@pytest.mark.slow  # a 30-step run recomputed from its logs (~70-130 s): make test-slow
def test_advantages_filter_and_controller_recomputed_from_the_logs(tmp_path, cache_dir):
    run_dir = tmp_path / "run"
    args = [
        f"hydra.run.dir={run_dir}",
        "trainer.total_steps=5",
        "trainer.dump_samples=true",
        "trainer.eval_at_start=false",
        "trainer.prompts_per_step=8",
        "trainer.group_size=4",
        "trainer.num_threads=1",
        "eval.max_problems=4",
        "eval.k=1",
        "logger=[jsonl]",
        "filter=zero_variance",
        "entropy=adaptive",
        f"entropy.target={TARGET}",
        f"entropy.delta={DELTA}",
        f"entropy.coef_max={COEF_MAX}",
        *LIGHTLY_WARMED,
        *REFERENCE_ENGINES,
    ]
    proc = run_cli("or1-train", args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    samples = read_jsonl(run_dir / "samples.jsonl")
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    assert len(samples) == 5 * 8 * 4

    groups = defaultdict(list)
    for s in samples:
        groups[(s["step"], s["group"])].append(s)
    kept_per_step = defaultdict(int)
    saw_kept = saw_dropped = False
    for (step, _), members in groups.items():
        rewards = [m["reward"] for m in members]
        kept = max(rewards) - min(rewards) > 1e-6
        assert all(m["kept"] == kept for m in members)
        kept_per_step[step] += kept
        if kept:
            saw_kept = True
            mean, std = statistics.fmean(rewards), statistics.stdev(rewards)
            for m in members:
                assert m["advantage"] == pytest.approx(
                    (m["reward"] - mean) / (std + 1e-6), rel=1e-5, abs=1e-6
                )
        else:
            saw_dropped = True
            assert all(m["advantage"] == 0.0 for m in members)
    assert saw_kept, "the warmed-up model should solve some prompts and miss others"
    assert saw_dropped or len(groups) > 0

    coef = 0.0
    for m in metrics:
        assert m["filter/groups_kept"] == kept_per_step[m["step"]]
        assert m["filter/groups_kept"] + m["filter/groups_dropped"] == 8
        if m["train/skipped"]:
            continue
        assert m["entropy/coef"] == pytest.approx(coef, abs=1e-12)
        assert m["entropy/active"] == float(m["entropy/value"] < TARGET)
        coef = min(max(coef + (DELTA if m["entropy/value"] < TARGET else -DELTA), 0.0), COEF_MAX)
