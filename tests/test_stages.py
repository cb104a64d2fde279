"""The multi-stage schedule: step -> stage, and config errors at start."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from or1.errors import ConfigError
from or1_plugins.stages import Schedule, ScheduleConfig, StageSpec
from tests.conftest import FAST_RUN, run_cli
from tests.test_cli import assert_one_line_error


def schedule(*specs: StageSpec) -> Schedule:
    return Schedule(OmegaConf.structured(ScheduleConfig(stages=list(specs))))


def test_steps_map_to_stages():
    s = schedule(
        StageSpec("a", 3, 8, truncation="mask_after"), StageSpec("b", 2, 16, reset_optimizer=True)
    )
    assert s.total_steps == 5
    assert [s.stage_at(k).name for k in range(7)] == ["a", "a", "a", "b", "b", "b", "b"]
    b = s.stage_at(3)
    assert (b.start_step, b.max_response_length, b.reset_optimizer, b.index) == (3, 16, True, 1)
    assert s.stage_at(0).truncation == "mask_after"


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
