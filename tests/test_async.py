"""``trainer.async_steps=1``: one rank generates, one trains, one step apart (torchrun, two
processes, the tiny untrained model with the entropy bonus on so the weights move)."""

from __future__ import annotations

import pytest

from tests.conftest import (
    COMPARED,
    FAST_RUN,
    MOVING,
    kill_then_resume,
    read_jsonl,
    run_cli,
    torchrun,
)

ASYNC = [
    *FAST_RUN,
    *MOVING,
    "trainer.async_steps=1",
    "trainer.eval_at_start=false",
    "eval.max_problems=4",
]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["trainer.async_steps=2"],
            "trainer.async_steps=2 is not supported (0: strictly on-policy, 1: one-step "
            "asynchronous)",
        ),
        (["trainer.async_steps=1", "trainer.rollout_ranks=0"], "trainer.rollout_ranks=0 must be"),
        (
            ["trainer.async_steps=1"],  # one process: nothing left to train on
            "trainer.rollout_ranks=1 leaves no learner rank of the 1 process(es) of this launch",
        ),
        (["trainer.async_steps=1", "loss.tis_cap=0"], "loss.tis_cap=0"),
        (
            ["trainer.partial_rollout_tokens=8"],
            "trainer.partial_rollout_tokens=8 needs trainer.async_steps=1",
        ),
        (
            [
                "trainer.async_steps=1",
                "trainer.partial_rollout_tokens=8",
                "filter=zero_variance",
                "filter.refill=true",
            ],
            "filter.refill=true cannot be combined with trainer.partial_rollout_tokens",
        ),
    ],
)
def test_bad_async_settings_are_one_line_errors_before_any_model_loads(
    tmp_path, cache_dir, overrides, message
):
    proc = run_cli("or1-train", [*FAST_RUN, *overrides], tmp_path)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"or1: error: {message}"), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not list(tmp_path.rglob("metrics.jsonl"))


def test_a_multi_process_learner_is_refused_in_async_mode_with_one_line(tmp_path, cache_dir):
    """Megatron's parallel groups would span the rollout rank too (a gloo crash mid-step)."""
    args = [o for o in FAST_RUN if o != "learner=torch"]
    proc = run_cli("or1-train", [*args, "learner=megatron", "trainer.async_steps=1"], tmp_path)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "or1: error: learner=megatron sets up its parallel groups over every rank of the launch"
    ), proc.stderr[-2000:]
    assert "use learner=torch" in last and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_one_step_async_overlaps_tags_weight_versions_and_resumes_exactly_after_kill_9(
    tmp_path, cache_dir
):
    whole = torchrun([*ASYNC, "trainer.total_steps=6", f"hydra.run.dir={tmp_path / 'a'}"], tmp_path)
    out, _ = whole.communicate(timeout=900)
    assert whole.returncode == 0, out[-6000:]
    a = read_jsonl(tmp_path / "a" / "metrics.jsonl")
    assert [m["step"] for m in a] == [1, 2, 3, 4, 5, 6]
    # step k's samples come from the weights step k-1 trained from: version max(k - 2, 0)
    assert [m["async/weight_version"] for m in a] == [0, 0, 1, 2, 3, 4]
    assert [m["async/staleness"] for m in a] == [0, 1, 1, 1, 1, 1]
    # overlap: step 2's generation (version 0, needing no update) began before step 1's
    # training ended; later steps start together with the learner's (their generation waits
    # for the weights the learner sends just before it trains), and most overlap it
    assert a[1]["async/rollout_began"] < a[0]["async/train_ended"]
    assert a[0]["async/overlap_s"] > 0
    assert sum(m["async/overlap_s"] > 0 for m in a[:-1]) >= 3
    for m in a:
        assert m["rollout/engines"] == 1 and m["rollout/engine0_samples"] == 16
        assert "loss/tis_weight" in m  # the rollout correction is on by default
    for m in a[:2]:  # version 0 on both sides: sampling and learner log-probs agree
        assert m["mismatch/kl"] < 1e-6
    assert a[2]["mismatch/kl"] > 1e-4  # a one-step-stale behaviour policy
    # version k goes to the rollout rank after step k while a later step still needs it
    assert [("weight_sync/bytes" in m) for m in a] == [True] * 4 + [False] * 2
    assert a[0]["weight_sync/bytes"] > 1e6
    assert a[3]["entropy/value"] != pytest.approx(a[0]["entropy/value"], rel=1e-4)  # it moved

    run_dir = tmp_path / "b"
    args = [*ASYNC, "trainer.total_steps=6", "trainer.save_every=2", f"hydra.run.dir={run_dir}"]
    out, b = kill_then_resume(args, run_dir, tmp_path)
    assert "resumed from" in out and b[6]["step"] == 6  # killed before the end
    for m in a[2:]:
        for key in [*COMPARED, "async/weight_version", "mismatch/kl", "response_length/mean"]:
            assert b[m["step"]][key] == pytest.approx(m[key], rel=1e-5, abs=1e-7), (m["step"], key)


@pytest.mark.slow
def test_partial_rollouts_carry_samples_across_steps_and_resume_exactly_after_kill_9(
    tmp_path, cache_dir
):
    """Responses of at most 24 tokens, 8 per step: a sample spans up to three steps."""
    partial = [*ASYNC, "trainer.partial_rollout_tokens=8", "trainer.total_steps=6"]
    whole = torchrun([*partial, f"hydra.run.dir={tmp_path / 'a'}"], tmp_path)
    out, _ = whole.communicate(timeout=900)
    assert whole.returncode == 0, out[-6000:]
    a = read_jsonl(tmp_path / "a" / "metrics.jsonl")
    assert [m["step"] for m in a] == [1, 2, 3, 4, 5, 6]
    for m in a:
        done = m["partial/finished_groups"]
        assert m["filter/groups_kept"] + m["filter/groups_dropped"] == done
        assert m["rollout/engine0_samples"] == 4 * done  # whole groups of 4 reach the learner
        assert m["partial/generated_tokens"] <= 8 * m["partial/requests"]
        assert m["response_length/max"] <= 24
    # samples open at the end of a step carry on; none lives longer than 24 / 8 = 3 steps
    assert any(m["partial/open_samples"] > 0 for m in a)
    assert max(m["partial/age_max"] for m in a) in (1.0, 2.0)
    assert sum(m["partial/finished_groups"] for m in a) >= 4 * 3  # prompts of steps 1-3 done
    trained = [m for m in a if m["train/skipped"] == 0]
    assert trained and all("loss/tis_weight" in m for m in trained)

    run_dir = tmp_path / "b"
    args = [*partial, "trainer.save_every=2", f"hydra.run.dir={run_dir}"]
    out, b = kill_then_resume(args, run_dir, tmp_path)
    assert "resumed from" in out and b[6]["step"] == 6
    keys = ["reward/mean", "response_length/mean", "partial/open_samples", "partial/requests"]
    for m in a[2:]:
        for key in keys + [k for k in COMPARED if k in m]:
            assert b[m["step"]][key] == pytest.approx(m[key], rel=1e-5, abs=1e-7), (m["step"], key)
