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
