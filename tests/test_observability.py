"""Loggers and evaluation on a real short training run: the wandb offline run and the
TensorBoard events read back by their own libraries, validation keys and the summary,
or1-eval on the run's checkpoint, or1-plot on its folder; an unreachable wandb server."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from tests.conftest import FAST_RUN, read_jsonl, run_cli

LOGGERS = "logger=[jsonl,wandb,tensorboard]"
RUN_ARGS = [a for a in FAST_RUN if not a.startswith("logger=")] + [
    LOGGERS,
    "trainer.total_steps=2",
    "trainer.eval_every=2",
    "trainer.samples_every=2",
    "filter=none",
    "logger.wandb.mode=offline",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, cache_dir) -> Path:
    run = tmp_path_factory.mktemp("obs") / "run"
    proc = run_cli("or1-train", [f"hydra.run.dir={run}", *RUN_ARGS], run.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run


def wandb_records(path: Path):
    """Records of a wandb transaction log (``run-<id>.wandb``), decoded with wandb's protobuf
    schema. Framing: a 7-byte header (``:W&B``, magic, version), then LevelDB-log records
    (crc32 4, length 2, type 1; FULL=1 FIRST=2 MIDDLE=3 LAST=4) in 32 KiB blocks."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", data[:7]
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            raw = chunk
        elif kind == 2:
            pending = chunk
            continue
        elif kind == 3:
            pending += chunk
            continue
        else:
            raw, pending = pending + chunk, b""
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        yield record


def test_validation_keys_and_summary(run_dir):
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [0, 1, 2]  # step 0: validation before training
    for m in (metrics[0], metrics[2]):
        assert {
            "val/tiny_arith/avg@2",
            "val/tiny_arith/pass@1",
            "val/tiny_arith/pass@2",
            "val/tiny_arith/maj@2",
        } <= set(m)
        assert m["val/tiny_arith/pass@1"] == pytest.approx(m["val/tiny_arith/avg@2"])
        assert (
            m["val/tiny_arith/accuracy"] == m["val/tiny_arith/avg@2"]
        )  # the foundation's key, kept as an alias
    assert "val/tiny_arith/avg@2" not in metrics[1]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert (
        summary["tiny_arith/start_avg@2"]
        == metrics[0]["val/tiny_arith/avg@2"]
        == summary["tiny_arith/start_accuracy"]
    )
    assert (
        summary["tiny_arith/end_avg@2"]
        == metrics[2]["val/tiny_arith/avg@2"]
        == summary["tiny_arith/end_accuracy"]
    )
    samples = read_jsonl(run_dir / "samples.jsonl")  # samples_every=2: step 2 only
    assert {s["step"] for s in samples} == {2} and len(samples) == 4 * 4
    assert {"prompt", "response", "reward", "advantage", "ground_truth"} <= set(samples[0])
    assert "+" in samples[0]["prompt"]  # the tiny task's problem text


def test_wandb_offline_run_reads_back(run_dir):
    metrics = {m["step"]: m for m in read_jsonl(run_dir / "metrics.jsonl")}
    logs = list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(logs) == 1, logs
    history: dict[int, dict[str, str]] = {}
    config, artifacts = {}, []
    for record in wandb_records(logs[0]):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            items = {i.key or "/".join(i.nested_key): i.value_json for i in record.history.item}
            history[int(items["_step"])] = items
        elif kind == "run":
            config = {i.key: json.loads(i.value_json) for i in record.run.config.update}
        elif kind == "artifact":
            artifacts.append((record.artifact.name, record.artifact.type))
    assert sorted(history) == [0, 1, 2]
    for step in (1, 2):
        assert float(history[step]["reward/mean"]) == pytest.approx(metrics[step]["reward/mean"])
        assert float(history[step]["loss/pg"]) == pytest.approx(metrics[step]["loss/pg"])
    assert float(history[2]["val/tiny_arith/avg@2"]) == pytest.approx(
        metrics[2]["val/tiny_arith/avg@2"]
    )
    assert json.loads(history[2]["samples/_type"]) == "table-file"
    assert int(history[2]["samples/nrows"]) == 16
    assert config["trainer"]["group_size"] == 4  # the run config, as wandb stored it
    assert ("final_model", "model") in artifacts
    table_file = logs[0].parent / "files" / json.loads(history[2]["samples/path"])
    table = json.loads(table_file.read_text())
    assert "response" in table["columns"] and len(table["data"]) == 16
    # wandb's own CLI recognises it as a run to upload
    proc = run_cli("wandb", ["sync", "--dry-run", str(logs[0].parent)], run_dir)
    assert "Would sync 1 run" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_tensorboard_events_read_back(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    metrics = {m["step"]: m for m in read_jsonl(run_dir / "metrics.jsonl")}
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"tensors": 0, "scalars": 0})
    acc.Reload()
    reward = acc.Scalars("reward/mean")
    assert [e.step for e in reward] == [1, 2]
    for e in reward:
        assert e.value == pytest.approx(metrics[e.step]["reward/mean"], rel=1e-6)
    assert [e.step for e in acc.Scalars("val/tiny_arith/avg@2")] == [0, 2]
    texts = acc.Tensors("samples/text_summary")  # text summaries are stored as string tensors
    assert [e.step for e in texts] == [2]
    table = texts[0].tensor_proto.string_val[0].decode()
    assert table.startswith("| group | reward | advantage |") and table.count("\n") == 2 + 16


def test_or1_eval_on_a_checkpoint_repeats_the_last_validation(run_dir, tmp_path):
    """Same weights, settings and seed as the run's final validation: the same Avg@K."""
    last = read_jsonl(run_dir / "metrics.jsonl")[-1]
    out = tmp_path / "eval"
    args = [a for a in FAST_RUN if not a.startswith("logger=")]
    proc = run_cli(
        "or1-eval",
        [f"hydra.run.dir={out}", f"model.path={run_dir / 'checkpoints' / 'step_2'}", *args],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "eval_report.json").read_text())["tiny_arith"]
    assert report["avg@2"] == pytest.approx(last["val/tiny_arith/avg@2"])
    assert report["pass@2"] == pytest.approx(last["val/tiny_arith/pass@2"])
    assert (out / "model" / "config.json").is_file()  # the exported checkpoint


def test_or1_eval_on_a_checkpoint_with_a_broken_run_config_fails_in_one_line(run_dir, tmp_path):
    import shutil

    from omegaconf import OmegaConf

    run = tmp_path / "run"
    shutil.copytree(run_dir / ".hydra", run / ".hydra")
    shutil.copytree(run_dir / "checkpoints" / "step_2", run / "checkpoints" / "step_2")
    config = run / ".hydra" / "config.yaml"
    cfg = OmegaConf.load(config)
    del cfg.trainer["seed"]
    OmegaConf.save(cfg, config)
    args = [a for a in FAST_RUN if not a.startswith("logger=")]
    model = f"model.path={run / 'checkpoints' / 'step_2'}"
    proc = run_cli("or1-eval", [f"hydra.run.dir={tmp_path / 'eval'}", model, *args], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"or1: error: {config}: not an or1 run config (Missing key seed)"
    )


def test_or1_plot_on_the_run(run_dir, tmp_path):
    proc = run_cli("or1-plot", [str(run_dir)], tmp_path)
    assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in (run_dir / "plots").iterdir())
    assert names == [
        "entropy.png",
        "length.png",
        "reward.png",
        "timing.png",
        "training.png",
        "validation.png",
    ]
    for name in names:
        assert (run_dir / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_training_goes_on_when_wandb_is_unreachable(tmp_path, cache_dir):
    run = tmp_path / "run"
    args = [a for a in FAST_RUN if not a.startswith("logger=")]
    env = {"WANDB_API_KEY": "f" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9"}
    proc = run_cli(
        "or1-train",
        [
            f"hydra.run.dir={run}",
            *args,
            "logger=[jsonl,wandb]",
            "logger.wandb.mode=online",
            "logger.wandb.init_timeout_s=1",
            "trainer.total_steps=1",
            "trainer.eval_at_start=false",
        ],
        tmp_path,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (run / "train.log").read_text()
    assert "wandb: online start failed" in log and "127.0.0.1:9" in log and "logging offline" in log
    assert [m["step"] for m in read_jsonl(run / "metrics.jsonl")] == [1]
    assert list((run / "wandb").glob("offline-run-*/run-*.wandb"))

    proc = run_cli(
        "or1-train", [*args, "logger=[jsonl,wandb]", "logger.wandb.mode=sometimes"], tmp_path
    )
    assert proc.returncode != 0 and "logger.wandb.mode=sometimes" in proc.stderr


def test_adding_a_logger_keeps_the_console_and_jsonl_loggers(tmp_path, cache_dir):
    import yaml

    args = [a for a in FAST_RUN if not a.startswith("logger=")]
    args += ["trainer.total_steps=1", "trainer.eval_at_start=false", "trainer.export_final=false"]
    kept, alone = tmp_path / "kept", tmp_path / "alone"
    proc = run_cli("or1-train", [f"hydra.run.dir={kept}", *args, "logger=tensorboard"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = yaml.safe_load((kept / ".hydra" / "config.yaml").read_text())
    assert set(saved["logger"]) == {"tensorboard", "console", "jsonl"}
    assert [m["step"] for m in read_jsonl(kept / "metrics.jsonl")] == [1]
    assert list((kept / "tensorboard").glob("events.out.tfevents.*"))
    assert "or1 step 1/1" in proc.stdout  # the console logger's progress bar

    proc = run_cli(
        "or1-train",
        [f"hydra.run.dir={alone}", *args, "logger=tensorboard", "trainer.default_loggers=false"],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not (alone / "metrics.jsonl").exists()
    assert list((alone / "tensorboard").glob("events.out.tfevents.*"))
