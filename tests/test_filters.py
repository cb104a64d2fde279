"""The online zero-variance filter: which groups it keeps, and refilling a batch in a run."""

from __future__ import annotations

from types import SimpleNamespace

from or1.core.types import Group, Prompt
from or1_plugins.filter.zero_variance import NoFilter, ZeroVarianceFilter
from tests.conftest import FAST_RUN, read_jsonl, run_cli


def _group(rewards: list[float]) -> Group:
    return Group(prompt=Prompt(uid="p0", row={}, prompt_ids=[1]), completions=[], rewards=rewards)


def test_zero_variance_keeps_only_groups_whose_rewards_differ():
    groups = [
        _group(r)
        for r in (
            [1, 1, 1, 1],
            [0, 0, 0, 0],
            [0, 1, 0, 0],
            [1, 1, 1, 0],
            [0.5, 0.5 + 1e-9, 0.5, 0.5],
        )
    ]
    f = ZeroVarianceFilter(SimpleNamespace(tolerance=1e-6, refill=False))
    # all correct, all wrong: dropped; one differing sample: kept; a difference below tolerance: dropped
    assert f.keep(groups) == [False, False, True, True, False]
    strict = ZeroVarianceFilter(SimpleNamespace(tolerance=0.0, refill=True))
    assert strict.keep(groups) == [False, False, True, True, True]
    assert strict.refill and not f.refill
    assert NoFilter(SimpleNamespace(refill=True)).keep(groups) == [True] * 5


def test_refill_tops_the_batch_up_and_counts_extra_rollouts(tmp_path, cache_dir):
    # The untrained tiny model answers almost nothing right: most groups are all-zero and dropped,
    # so refill rounds happen; every extra group costs group_size rollouts.
    run_dir = tmp_path / "run"
    args = [
        *FAST_RUN,
        f"hydra.run.dir={run_dir}",
        "trainer.total_steps=3",
        "trainer.eval_at_start=false",
        "trainer.eval_every=0",
        "trainer.export_final=false",
        "filter.refill=true",
        "trainer.max_refill_rounds=2",
        "eval.max_problems=2",
    ]
    proc = run_cli("or1-train", args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    steps = [r for r in read_jsonl(run_dir / "metrics.jsonl") if "filter/groups_kept" in r]
    assert len(steps) == 3
    prompts, group = 4, 4
    for r in steps:
        total = r["filter/groups_kept"] + r["filter/groups_dropped"]
        rounds_extra = total - prompts  # groups sampled in refill rounds
        assert r["filter/extra_rollouts"] == rounds_extra * group
        assert 0 <= rounds_extra <= 2 * prompts  # at most max_refill_rounds rounds of <= 4 prompts
        if rounds_extra:  # a refill happened only because the first round left the batch short
            assert r["filter/groups_dropped"] >= 1
    assert any(r["filter/extra_rollouts"] > 0 for r in steps)
