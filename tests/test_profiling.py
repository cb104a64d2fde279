"""Profile mode: ``trainer.profile=true`` writes a Chrome trace of the chosen steps only."""

from __future__ import annotations

import json

from tests.conftest import FAST_RUN, read_jsonl, run_cli


def test_profile_writes_chrome_trace_of_chosen_step(tmp_path, cache_dir):
    run_dir = tmp_path / "run"
    args = [
        *FAST_RUN,
        "trainer.total_steps=2",
        "trainer.eval_at_start=false",
        "trainer.export_final=false",
        "trainer.profile=true",
        "trainer.profile_steps=[2]",
        f"hydra.run.dir={run_dir}",
    ]
    proc = run_cli("or1-train", args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    traces = sorted(p.name for p in (run_dir / "profile").iterdir())
    assert traces == ["step_2.json"]  # step 1 is not profiled
    trace = json.loads((run_dir / "profile" / "step_2.json").read_text())
    events = trace["traceEvents"]
    # CPU operators of the learner ran inside the profiled step: aten ops appear as events
    names = {e.get("name", "") for e in events}
    assert any(n.startswith("aten::") for n in names), sorted(names)[:20]
    # the trace spans no more than the step itself (microseconds, as Chrome traces count)
    rows = {r["step"]: r for r in read_jsonl(run_dir / "metrics.jsonl") if "timing/step_s" in r}
    spans = [e["ts"] + e.get("dur", 0) for e in events if "ts" in e and e.get("ph") == "X"]
    starts = [e["ts"] for e in events if "ts" in e and e.get("ph") == "X"]
    assert (max(spans) - min(starts)) / 1e6 <= rows[2]["timing/step_s"] + 0.5
