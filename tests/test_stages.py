"""The multi-stage schedule: step -> stage (a fixed one, and one that moves on by the truncated
fraction, also across a resume), and config errors at start."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from or1.core.errors import ConfigError
from or1_plugins.stages.schedule import Schedule, ScheduleConfig, StageSpec
from tests.conftest import FAST_RUN, run_cli
from tests.test_cli import assert_one_line_error


def schedule(*specs: StageSpec, **kw) -> Schedule:
    return Schedule(OmegaConf.structured(ScheduleConfig(stages=list(specs), **kw)))


def by_truncation(*specs: StageSpec, threshold: float = 0.1, patience: int = 2) -> Schedule:
    return schedule(
        *specs, advance="truncation", advance_threshold=threshold, advance_patience=patience
    )


def walk(s: Schedule, fractions: list[float], first: int = 0) -> list[str]:
    """The trainer's use of a scheduler: the stage of each step, then the step's metrics."""
    names = []
    for step, frac in enumerate(fractions, start=first):
        names.append(s.stage_at(step).name)
        s.observe(step, {"response/truncated_frac": frac, "reward/mean": 0.5})
    return names


THREE = (StageSpec("a", 5, 8), StageSpec("b", 4, 16), StageSpec("c", 3, 32))
# a: .3, then .05 and .09 below 0.1 twice in a row -> b from step 3; b never drops below 0.1,
# so it ends after its 4 steps (step 7); c, the last stage, runs to the end whatever happens
FRACTIONS = [0.3, 0.05, 0.09, 0.4, 0.3, 0.3, 0.3, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_steps_map_to_stages():
    s = schedule(
        StageSpec("a", 3, 8, truncation="mask_after"), StageSpec("b", 2, 16, reset_optimizer=True)
    )
    assert s.total_steps == 5
    assert [s.stage_at(k).name for k in range(7)] == ["a", "a", "a", "b", "b", "b", "b"]
    b = s.stage_at(3)
    assert (b.start_step, b.max_response_length, b.reset_optimizer, b.index) == (3, 16, True, 1)
    assert s.stage_at(0).truncation == "mask_after"


def test_truncation_advance_by_hand():
    s = by_truncation(*THREE)
    assert s.total_steps == 12  # the run length is still the sum of the steps
    assert [s.stage_at(k).name for k in (4, 5, 9)] == ["a", "b", "c"]  # the plan, before
    names = walk(s, FRACTIONS)
    assert names == ["a"] * 3 + ["b"] * 4 + ["c"] * 5
    assert [(s.stage_at(k).index, s.stage_at(k).start_step) for k in (0, 2, 3, 6, 7, 11, 20)] == [
        (0, 0),
        (0, 0),
        (1, 3),
        (1, 3),
        (2, 7),
        (2, 7),
        (2, 7),
    ]
    assert s.state_dict() == {"starts": [0, 3, 7], "below": 0}


def test_a_step_above_the_threshold_restarts_the_count():
    # .05 (1), .2 (0), .05 (1), .05 (2): b from step 4; b: .05 (1), .01 (2): c from step 6
    s = by_truncation(*THREE)
    assert walk(s, [0.05, 0.2, 0.05, 0.05, 0.05, 0.01, 0.3]) == ["a"] * 4 + ["b"] * 2 + ["c"]


def test_steps_mode_is_the_fixed_schedule_whatever_the_signal():
    s = schedule(*THREE)
    assert walk(s, FRACTIONS) == ["a"] * 5 + ["b"] * 4 + ["c"] * 3
    assert s.state_dict() == {}
    with_patience = by_truncation(*THREE, threshold=0.0)  # nothing is ever below 0
    assert walk(with_patience, FRACTIONS) == ["a"] * 5 + ["b"] * 4 + ["c"] * 3


def test_a_resume_mid_stage_continues_the_patience_count():
    specs = (StageSpec("a", 6, 8), StageSpec("b", 4, 16), StageSpec("c", 3, 32))
    fractions = [0.3, 0.05, 0.05, 0.05, 0.5, 0.5]  # below 0.1 for steps 1-3: 3 in a row
    straight = by_truncation(*specs, patience=3)
    assert walk(straight, fractions) == ["a"] * 4 + ["b"] * 2  # b from step 4

    first = by_truncation(*specs, patience=3)
    walk(first, fractions[:3])  # a checkpoint after step 2: two steps below so far
    state = first.state_dict()
    assert state == {"starts": [0], "below": 2}
    resumed = by_truncation(*specs, patience=3)
    resumed.load_state_dict(state)
    assert resumed.stage_at(2).name == "a"  # the trainer's stage of the last step taken
    assert walk(resumed, fractions[3:], first=3) == ["a"] + ["b"] * 2  # as the straight run

    fresh = by_truncation(*specs, patience=3)  # the same steps without the state: no advance
    assert walk(fresh, fractions[3:], first=3) == ["a"] * 3


def test_truncation_advance_needs_the_metric():
    s = by_truncation(*THREE)
    with pytest.raises(KeyError, match="response/truncated_frac"):
        s.observe(0, {"reward/mean": 0.5})


@pytest.mark.parametrize(
    "kw, needle",
    [
        ({"advance": "reward"}, "stages.advance=reward is not one of steps, truncation"),
        ({"advance_threshold": 1.5}, "stages.advance_threshold=1.5"),
        ({"advance_patience": 0}, "stages.advance_patience=0"),
    ],
)
def test_bad_advance_settings_are_config_errors(kw, needle):
    with pytest.raises(ConfigError) as err:
        schedule(*THREE, **kw)
    assert needle in str(err.value)


@pytest.mark.parametrize(
    "specs, needle",
    [
        ([], "empty"),
        (
            [StageSpec("a", 3, 16), StageSpec("b", 3, 16)],
            "stages.stages[1].max_response_length=16 must be larger",
        ),
        ([StageSpec("a", 3, 16), StageSpec("b", 3, 8)], "stages.stages[1].max_response_length=8"),
        ([StageSpec("a", 0, 16)], "stages.stages[0].steps=0"),
        ([StageSpec("a", 3, 16, truncation="drop")], "stages.stages[0].truncation=drop"),
    ],
)
def test_bad_schedules_are_config_errors(specs, needle):
    with pytest.raises(ConfigError) as err:
        schedule(*specs)
    assert needle in str(err.value)


def test_bad_schedule_fails_the_command_in_one_line(tmp_path, cache_dir):
    proc = run_cli("or1-train", [*FAST_RUN, "stages.stages=[]"], tmp_path)
    assert_one_line_error(proc, "stages.stages is empty")


def test_every_validation_uses_the_last_stages_budget(tmp_path, cache_dir):
    # stage 0 answers in at most 8 tokens, stage 1 in 24: the validation before the first step
    # already samples with 24, like the one after the last (the untrained model runs long)
    from tests.conftest import FAST_RUN, read_jsonl, run_cli

    run = tmp_path / "run"
    args = [a for a in FAST_RUN if not a.startswith("stages.")]
    proc = run_cli(
        "or1-train",
        [
            f"hydra.run.dir={run}",
            *args,
            "stages=cpu_two_stage",
            "stages.stages.0.steps=1",
            "stages.stages.0.max_response_length=8",
            "stages.stages.1.steps=1",
            "stages.stages.1.max_response_length=24",
            "trainer.export_final=false",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = read_jsonl(run / "metrics.jsonl")
    first, last = metrics[0], metrics[-1]
    assert first["step"] == 0 and last["step"] == 2
    assert [m["stage/max_response_length"] for m in metrics[1:]] == [8, 24]
    assert first["val/tiny_arith/response_length"] > 8  # sampled with the last stage's 24 tokens
    assert (
        max(first["val/tiny_arith/response_length"], last["val/tiny_arith/response_length"]) <= 24
    )


@pytest.mark.slow  # several or1 processes: make test-slow
def test_a_resumed_run_moves_on_by_truncation_as_the_straight_run_did(tmp_path, cache_dir):
    """A real run that moves on from stage 0 (24 tokens, at most 2 steps) once one step has
    fewer than all of its samples truncated (threshold 1.0, patience 1); stage 1 (32 tokens)
    resets the entropy controller; two updates per step. Straight for 3 steps, and stopped
    after step 1 then resumed: the same stages and the same numbers, the reset included
    (the adaptive coefficient of MOVING: +0.05 a step from 0, back to 0 on entering stage 1)."""
    from tests.conftest import COMPARED, MOVING, read_jsonl

    args = [
        *[a for a in FAST_RUN if not a.startswith("stages.")],
        *MOVING,
        "stages=cpu_two_stage",
        "stages.advance=truncation",
        "stages.advance_threshold=1.0",
        "stages.advance_patience=1",
        "stages.stages.0.steps=2",
        "stages.stages.0.max_response_length=24",
        "stages.stages.1.steps=1",
        "stages.stages.1.max_response_length=32",
        "stages.stages.1.reset_entropy=true",
        "trainer.updates_per_step=2",
        "trainer.eval_at_start=false",
        "trainer.export_final=false",
    ]

    def steps(run, total):
        proc = run_cli(
            "or1-train", [f"hydra.run.dir={run}", f"trainer.total_steps={total}", *args], tmp_path
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return [m for m in read_jsonl(run / "metrics.jsonl") if "train/skipped" in m]

    straight = steps(tmp_path / "straight", 3)
    expect, stage = [], 0  # the rule, applied to the run's own truncated fractions
    for k, m in enumerate(straight, start=1):
        expect.append(stage)
        if stage == 0 and (m["response/truncated_frac"] < 1.0 or k == 2):
            stage = 1
    assert [m["stage"] for m in straight] == expect
    assert expect == [0, 1, 1]  # this seed: step 1 already has an untruncated sample
    assert [m["stage/max_response_length"] for m in straight] == [24, 32, 32]
    assert [m["entropy/coef"] for m in straight] == pytest.approx([0.0, 0.0, 0.05])
    assert all(m["train/updates"] == 2.0 for m in straight)  # 4 groups kept (filter=none)

    steps(tmp_path / "resumed", 1)
    resumed = steps(tmp_path / "resumed", 3)
    assert [m["step"] for m in resumed] == [1, 2, 3]
    for a, b in zip(straight, resumed, strict=True):
        for key in [*COMPARED, "stage", "entropy/coef", "response/truncated_frac"]:
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), (a["step"], key)
