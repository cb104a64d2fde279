"""or1-train end to end: bad input fails in one line; a short run writes its outputs;
a run stopped at a checkpoint and resumed repeats the uninterrupted run."""

from __future__ import annotations

import json

import pytest

from tests.conftest import COMPARED, FAST_RUN, MOVING, read_jsonl, run_cli


def assert_one_line_error(proc, *needles: str) -> str:
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("or1: error:")]
    assert len(errors) == 1, proc.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def test_config_typo_names_the_key(tmp_path):
    proc = run_cli("or1-train", ["trainer.totl_steps=3"], tmp_path)
    assert_one_line_error(proc, "trainer.totl_steps", "TrainerConfig")
    proc = run_cli("or1-train", ["trainer.seed=abc"], tmp_path)
    assert_one_line_error(proc, "trainer.seed", "abc")
    assert not (tmp_path / "outputs").exists()  # failed before Hydra made a run folder


def test_unknown_plugin_name(tmp_path):
    proc = run_cli("or1-train", ["verifier=no_such_verifier"], tmp_path)
    assert_one_line_error(proc, "verifier/no_such_verifier", "available: auto, code, math")


def test_missing_dataset_file(tmp_path, cache_dir):
    proc = run_cli("or1-train", ["data.path=/nonexistent/train.parquet", *FAST_RUN], tmp_path)
    assert_one_line_error(proc, "dataset file not found: /nonexistent/train.parquet")


def test_row_without_ground_truth_names_file_and_row(tmp_path, cache_dir):
    good = {
        "prompt": [{"role": "user", "content": "What is 1 + 1?"}],
        "ability": "math",
        "reward_model": {"ground_truth": "2"},
    }
    bad = {
        "prompt": [{"role": "user", "content": "What is 2 + 2?"}],
        "ability": "math",
        "reward_model": {},
    }
    data = tmp_path / "mine.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in (good, good, bad)) + "\n")
    proc = run_cli("or1-train", [f"data.path={data}", *FAST_RUN], tmp_path)
    assert_one_line_error(proc, str(data), "row 2", "ground_truth")


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("trainer.group_size=0", "trainer.group_size=0 must be >= 1"),
        ("stages.stages.0.max_response_length=0", "stages.stages[0].max_response_length=0"),
        ("entropy.target=-1", "entropy.target=-1.0 must be >= 0"),
        ("loss.agg=tokenmean", "loss.agg=tokenmean is not one of token_mean"),
        ("loss.dual_clip=0.5", "loss.dual_clip=0.5 must be > 1"),
        ("learner.lr_schedule=cosine", "learner.lr_decay_steps=0 must be >= 1"),
        ("trainer.totl_steps=3", "did you mean 'trainer.total_steps'?"),
    ],
)
def test_bad_values_fail_before_anything_is_written(tmp_path, override, named):
    # checked before Hydra creates the run folder and before any engine starts
    run = tmp_path / "run"
    proc = run_cli("or1-train", [f"hydra.run.dir={run}", *FAST_RUN, override], tmp_path)
    assert_one_line_error(proc, named)
    assert not run.exists()


def test_bad_values_are_config_errors(tmp_path, cache_dir):
    proc = run_cli("or1-train", [*FAST_RUN, "model.path=/nonexistent/model"], tmp_path)
    assert_one_line_error(proc, "model.path=/nonexistent/model")


REQUIRED = [
    "step",
    "stage",
    "reward/mean",
    "response_length/mean",
    "response/truncated_frac",
    "loss/pg",
    "entropy/value",
    "timing/step_s",
    "timing/rollout_s",
    "timing/train_s",
]


def run_steps(run_dir, steps, *extra):
    args = [
        f"hydra.run.dir={run_dir}",
        f"trainer.total_steps={steps}",
        "trainer.eval_at_start=false",
        *FAST_RUN,
        *MOVING,
        *extra,
    ]
    proc = run_cli("or1-train", args, run_dir.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return read_jsonl(run_dir / "metrics.jsonl")


def test_short_run_writes_metrics_samples_checkpoints_and_export(tmp_path, cache_dir):
    run_dir = tmp_path / "run"
    metrics = run_steps(
        run_dir, 3, "trainer.dump_samples=true", "trainer.save_every=2", "trainer.eval_every=2"
    )
    assert [m["step"] for m in metrics] == [1, 2, 3]
    for m in metrics:
        for key in REQUIRED:
            assert key in m, key
        assert m["timing/step_s"] >= m["timing/rollout_s"] + m["timing/train_s"]
    assert (
        "val/tiny_arith/avg@2" in metrics[1] and "val/tiny_arith/avg@2" in metrics[2]
    )  # FAST_RUN: eval.k=2
    assert "val/tiny_arith/pass@1" in metrics[1] and "val/tiny_arith/avg@2" not in metrics[0]
    assert 0 < metrics[1]["entropy/coef"] < metrics[2]["entropy/coef"]  # the controller moved
    samples = read_jsonl(run_dir / "samples.jsonl")
    assert len(samples) == 3 * 4 * 4
    assert {"step", "group", "reward", "advantage", "truncated", "kept", "response_length"} <= set(
        samples[0]
    )
    assert sorted((run_dir / "checkpoints").iterdir()) == [
        run_dir / "checkpoints" / "step_2",
        run_dir / "checkpoints" / "step_3",
    ]
    assert (run_dir / "final_model" / "model.safetensors").is_file()
    assert (run_dir / "final_model" / "tokenizer.json").is_file()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["steps"] == 3


@pytest.mark.slow  # tests/test_reliability.py covers resume after kill -9 and SIGTERM by default
def test_resume_repeats_the_uninterrupted_run(tmp_path, cache_dir):
    straight = run_steps(tmp_path / "straight", 4)
    first = run_steps(tmp_path / "resumed", 2)
    assert [m["step"] for m in first] == [1, 2]
    resumed = run_steps(tmp_path / "resumed", 4, "trainer.resume=auto")
    assert [m["step"] for m in resumed] == [1, 2, 3, 4]
    for a, b in zip(straight, resumed, strict=True):
        for key in COMPARED:
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), (a["step"], key)
    # the weights moved between steps, so equality above is not trivial
    assert straight[3]["entropy/value"] != pytest.approx(straight[0]["entropy/value"], rel=1e-4)


def test_a_resumed_run_continues_the_learning_rate_schedule(tmp_path, cache_dir):
    """Warm-up 2, then linear decay over 2 steps to half: steps 1-5 at 5e-4, 1e-3, 1e-3,
    7.5e-4 and 5e-4. A run stopped after step 2 and resumed takes steps 3-5 at 1e-3, 7.5e-4
    and 5e-4 (not the warm-up's 5e-4 and 1e-3 again)."""
    schedule = [
        "learner.lr=1e-3",
        "learner.lr_schedule=linear",
        "learner.lr_warmup_steps=2",
        "learner.lr_decay_steps=2",
        "learner.min_lr_ratio=0.5",
    ]
    first = run_steps(tmp_path / "run", 2, *schedule)
    resumed = run_steps(tmp_path / "run", 5, *schedule, "trainer.resume=auto")
    assert [m["learner/lr"] for m in first] == pytest.approx([5e-4, 1e-3], rel=1e-12)
    assert [m["step"] for m in resumed][-3:] == [3, 4, 5]
    later = [m["learner/lr"] for m in resumed][-3:]
    assert later == pytest.approx([1e-3, 7.5e-4, 5e-4], rel=1e-12)


def test_resume_never_refuses_to_overwrite_a_run(tmp_path, cache_dir):
    run_steps(tmp_path / "run", 1)
    proc = run_cli(
        "or1-train",
        [f"hydra.run.dir={tmp_path / 'run'}", "trainer.resume=never", *FAST_RUN],
        tmp_path,
    )
    assert_one_line_error(proc, "checkpoints")
    assert (tmp_path / "run" / "checkpoints" / "step_1").is_dir()


def test_resume_with_other_settings_is_refused(tmp_path, cache_dir):
    run = tmp_path / "run"
    run_steps(run, 1)
    before = (run / ".hydra" / "config.yaml").read_text()
    proc = run_cli(
        "or1-train",
        [
            f"hydra.run.dir={run}",
            "trainer.total_steps=2",
            "trainer.eval_at_start=false",
            *FAST_RUN,
            *MOVING,
            "learner.lr=0.02",
            "trainer.group_size=2",
        ],
        tmp_path,
    )
    assert_one_line_error(
        proc, "learner.lr=0.01 -> 0.02", "trainer.group_size=4 -> 2", "overrides.yaml"
    )
    assert (run / ".hydra" / "config.yaml").read_text() == before  # nothing overwritten
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step_1"]
    # more steps, other bookkeeping: the same run goes on
    metrics = run_steps(run, 2, "trainer.save_every=1", "trainer.keep_checkpoints=3")
    assert [m["step"] for m in metrics] == [1, 2]


def test_steps_that_train_nothing_are_warned_about(tmp_path, cache_dir):
    # the untrained model earns no reward: every group is all-zero and the zero-variance
    # filter drops it, so no step trains; the third such step in a row is warned about
    run = tmp_path / "run"
    proc = run_cli(
        "or1-train",
        [
            f"hydra.run.dir={run}",
            *FAST_RUN,
            "filter=zero_variance",
            "trainer.total_steps=4",
            "trainer.eval_at_start=false",
            "trainer.export_final=false",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = read_jsonl(run / "metrics.jsonl")
    assert [m["train/skipped"] for m in metrics if "train/skipped" in m] == [1.0] * 4
    log = (run / "train.log").read_text()
    warned = [ln for ln in log.splitlines() if "trained nothing" in ln]
    assert len(warned) == 1, warned  # once per streak
    assert "steps 1-3 trained nothing" in warned[0] and "every sample scored 0" in warned[0]
    assert "WARNING" in warned[0]


def test_skipped_steps_name_the_cause():
    from or1.rl.steps import SkippedSteps

    def streak(reward: float, group_size: int = 4) -> list[str]:
        watch = SkippedSteps(warn_after=2)
        return [watch.check(s, False, {"reward/mean": reward}, group_size) for s in (1, 2, 3)]

    assert streak(0.0)[0] == "" and "every sample scored 0" in streak(0.0)[1]
    assert streak(0.0)[2] == ""  # once per streak
    assert "too easy" in streak(1.0)[1]
    assert "group_size=1" in streak(0.5, group_size=1)[1]
    watch = SkippedSteps(warn_after=2)
    assert [
        watch.check(s, t, {"reward/mean": 0.0}, 4) for s, t in ((1, False), (2, True), (3, False))
    ] == ["", "", ""]


def test_own_model_runs_get_the_recipe_not_the_demo(tmp_path):
    import yaml

    own = ["model.path=/models/qwen", "data.path=/data/train.parquet", "--cfg", "job"]
    proc = run_cli("or1-train", own, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr == ""  # the notice goes to stdout, and not with --cfg (only the YAML)
    cfg = yaml.safe_load(proc.stdout)
    assert (cfg["model"]["name"], cfg["model"]["path"]) == ("hf", "/models/qwen")
    assert cfg["data"]["name"] == "files"
    assert cfg["learner"]["lr"] == 1e-6 and cfg["trainer"]["prompts_per_step"] == 256
    assert cfg["trainer"]["group_size"] == 16 and cfg["eval"]["temperature"] == 0.6
    lengths = [s["max_response_length"] for s in cfg["stages"]["stages"]]
    assert lengths == [8192, 16384, 32768]

    # a preset the command line names wins
    proc = run_cli("or1-train", ["experiment=cpu_demo", *own], tmp_path)
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["learner"]["lr"] == 3e-4 and cfg["model"]["name"] == "hf"


def test_implied_overrides():
    from or1.cli.common import implied_overrides

    assert implied_overrides(["trainer.seed=1"]) == []
    assert implied_overrides(["model.path=/m"]) == ["model=hf", "experiment=recipe"]
    assert implied_overrides(["model.path=/m", "model=tiny", "experiment=or1_7b"]) == []
    assert implied_overrides(["data.path=a.parquet", "data=tiny_arith"]) == []
    assert implied_overrides(["model.path=/m", "data.path=x"], groups=("model",)) == ["model=hf"]
    # a key of the default model source: the command line speaks of that source
    assert implied_overrides(["model.path=/ckpt", "model.warmup_max_steps=0"]) == []
    assert implied_overrides(["data.path=a", "data.val_path=b"]) == ["data=files"]
