"""Sweeps: ``or1-train -m`` runs every combination in its own folder and writes the sweep
summary; a bad value anywhere in a sweep is one line before anything runs; launcher presets."""

from __future__ import annotations

import csv
import json

from tests.conftest import FAST_RUN, read_jsonl, run_cli
from tests.test_cli import assert_one_line_error

TINY = [
    *FAST_RUN,
    "trainer.total_steps=1",
    "trainer.prompts_per_step=2",
    "trainer.group_size=2",
    "trainer.eval_at_start=false",
    "trainer.export_final=false",
    "eval.max_problems=4",
    "eval.k=1",
    "stages.stages.0.max_response_length=16",
    "filter=none",
]


def test_two_point_multirun_writes_runs_and_summary(tmp_path, cache_dir):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "or1-train",
        ["-m", "loss.clip_eps_high=0.2,0.28", f"hydra.sweep.dir={sweep}", *TINY],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(sweep / "sweep_summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == ["0", "1"]
    assert [r["loss.clip_eps_high"] for r in rows] == ["0.2", "0.28"]
    for row in rows:
        run_dir = sweep / row["run"]
        cfg = (run_dir / ".hydra" / "config.yaml").read_text()
        assert f"clip_eps_high: {row['loss.clip_eps_high']}" in cfg  # each run got its own value
        summary = json.loads((run_dir / "summary.json").read_text())
        (last,) = read_jsonl(run_dir / "metrics.jsonl")
        assert row["status"] == "done" and int(row["steps"]) == summary["steps"] == 1
        assert row["overrides"] == f"loss.clip_eps_high={row['loss.clip_eps_high']}"
        for key in ("reward/mean", "entropy/value", "response_length/mean", "loss/pg"):
            assert float(row[key]) == last[key]
        end_keys = [k for k in summary if k.endswith("/end_accuracy")]
        assert end_keys and all(float(row[k]) == summary[k] for k in end_keys)
    md = (sweep / "sweep_summary.md").read_text().splitlines()
    assert len(md) == 4 and md[0].startswith("| run | status | loss.clip_eps_high |")
    assert md[3].startswith("| 1 | done | 0.28 |")


def test_summary_of_an_unfinished_sweep(tmp_path):
    """A run without summary.json is listed as incomplete with the metrics it logged."""
    from or1.commands.sweep_summary import collect, write_summary

    for job, (value, steps) in enumerate([("adaptive", 3), ("none", 2)]):
        run = tmp_path / str(job)
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "overrides.yaml").write_text(f"- entropy={value}\n- trainer.seed=7\n")
        (run / "metrics.jsonl").write_text(
            "".join(
                json.dumps({"step": s + 1, "reward/mean": 0.25 * (s + 1)}) + "\n"
                for s in range(steps)
            )
            + '{"step": 9, "reward/me'  # a line cut short by a crash
        )
    (tmp_path / "0" / "summary.json").write_text(
        json.dumps({"steps": 3, "run_dir": "x", "val/end_accuracy": 0.5})
    )
    columns, rows = collect(tmp_path, metrics=("reward/mean", "entropy/value"))
    assert columns == [
        "run",
        "status",
        "entropy",
        "overrides",
        "steps",
        "val/end_accuracy",
        "reward/mean",
    ]
    assert rows[0] == {
        "run": "0",
        "status": "done",
        "entropy": "adaptive",
        "overrides": "entropy=adaptive",
        "steps": 3,
        "val/end_accuracy": 0.5,
        "reward/mean": 0.75,
    }
    assert rows[1] == {
        "run": "1",
        "status": "incomplete",
        "entropy": "none",
        "overrides": "entropy=none",
        "reward/mean": 0.5,
    }
    _, md_path, n = write_summary(tmp_path, metrics=("reward/mean",))
    assert n == 2 and md_path.read_text().splitlines()[3] == "| 1 | incomplete | none |  |  | 0.5 |"


def test_a_bad_value_in_a_sweep_fails_before_any_run(tmp_path):
    proc = run_cli(
        "or1-train", ["-m", "loss.clip_eps_high=0.2,abc", "entropy=adaptive,none"], tmp_path
    )
    assert_one_line_error(
        proc, "loss.clip_eps_high=abc", "sweep run: loss.clip_eps_high=abc entropy=adaptive"
    )
    assert not (tmp_path / "multirun").exists()


def test_launcher_presets_compose():
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from or1.core.registry import get_registry
    from or1.core.schemas import CONFIG_MODULE, CONFIG_NAME, store_schemas

    store_schemas(get_registry())
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
            cfg = compose(
                CONFIG_NAME,
                ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                return_hydra_config=True,
            )
            assert (
                cfg.hydra.launcher._target_.endswith("JoblibLauncher")
                and cfg.hydra.launcher.n_jobs == 2
            )
            cfg = compose(
                CONFIG_NAME,
                ["hydra/launcher=slurm_gpu", "hydra.launcher.partition=gpu"],
                return_hydra_config=True,
            )
            launcher = cfg.hydra.launcher
            assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
            assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (1, 1, 1)
            assert (
                cfg.hydra.callbacks.sweep_summary._target_
                == "or1.commands.sweep_summary.SweepSummary"
            )
    finally:
        GlobalHydra.instance().clear()
