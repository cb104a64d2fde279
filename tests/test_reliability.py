"""Crash, stop and bad-input behaviour: kill -9 and resume, a corrupt checkpoint, SIGTERM,
non-finite updates, a crashing rollout engine, and inputs that must fail cleanly."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch

from or1.core.types import Completion, Score
from or1.rl import checkpoint
from tests.conftest import (
    BIN,
    COMPARED,
    FAST_RUN,
    MOVING,
    UNTRAINED_MODEL,
    read_jsonl,
    run_cli,
)
from tests.test_learner import make_batch, make_learner

STEPS = 5


def train_args(run_dir: Path, *extra: str) -> list[str]:
    return [
        f"hydra.run.dir={run_dir}",
        f"trainer.total_steps={STEPS}",
        "trainer.eval_at_start=false",
        "trainer.export_final=false",
        *FAST_RUN,
        *MOVING,
        "eval.max_problems=2",
        *extra,
    ]


def assert_same_steps(reference: list[dict], other: list[dict], steps: range) -> None:
    by_step = {m["step"]: m for m in other}
    for ref in reference:
        if ref["step"] not in steps:
            continue
        got = by_step[ref["step"]]
        for key in COMPARED:
            assert got[key] == pytest.approx(ref[key], rel=1e-5, abs=1e-7), (ref["step"], key)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, cache_dir) -> list[dict]:
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    proc = run_cli("or1-train", train_args(run_dir), run_dir.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    assert [m["step"] for m in metrics] == list(range(1, STEPS + 1))
    assert metrics[-1]["entropy/value"] != pytest.approx(metrics[0]["entropy/value"], rel=1e-4)
    return metrics


def start(run_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "or1-train"), *train_args(run_dir, *extra)],
        cwd=run_dir.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 300) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, f"run ended early: {proc.stderr.read()[-2000:]}"
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def kill_and_resume(tmp_path: Path, seed: int, uninterrupted: list[dict]) -> None:
    rng = random.Random(seed)
    kill_after = rng.randint(1, STEPS - 3)  # the checkpoint that must exist before the kill
    run_dir = tmp_path / f"killed{seed}"
    run_dir.mkdir()
    proc = start(run_dir, "trainer.save_every=1", "trainer.keep_checkpoints=2")
    wait_for(lambda: kill_after in checkpoint.list_steps(run_dir / "checkpoints"), proc)
    step_s = next(m for m in read_jsonl(run_dir / "metrics.jsonl") if m["step"] == kill_after)[
        "timing/step_s"
    ]
    time.sleep(
        rng.uniform(0.0, 1.2) * step_s
    )  # anywhere in the next step, its checkpoint write included
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    latest = checkpoint.latest(run_dir / "checkpoints")
    assert latest is not None
    resume_step = checkpoint.step_of(latest)
    assert kill_after <= resume_step < STEPS
    resumed = run_cli(
        "or1-train", train_args(run_dir, "trainer.save_every=1", "trainer.resume=auto"), tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    assert [m["step"] for m in metrics] == list(range(1, STEPS + 1))  # no step twice, none missing
    assert_same_steps(uninterrupted, metrics, range(resume_step + 1, STEPS + 1))
    assert_same_steps(uninterrupted, metrics, range(1, STEPS + 1))


def test_kill_9_then_resume_repeats_the_uninterrupted_run(tmp_path, uninterrupted):
    kill_and_resume(tmp_path, 0, uninterrupted)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_kill_9_at_random_moments(tmp_path, uninterrupted, seed):
    kill_and_resume(tmp_path, seed, uninterrupted)


def test_corrupt_latest_checkpoint_is_skipped_with_a_warning(tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    first = run_cli(
        "or1-train", train_args(run_dir, "trainer.total_steps=3", "trainer.save_every=1"), tmp_path
    )
    assert first.returncode == 0, first.stderr[-3000:]
    step3 = run_dir / "checkpoints" / "step_3"
    victim = max((p for p in step3.iterdir() if p.suffix == ".pt"), key=lambda p: p.stat().st_size)
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])  # a torn write
    proc = run_cli("or1-train", train_args(run_dir, "trainer.save_every=1"), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    log_text = (run_dir / "train.log").read_text()
    assert "skipping checkpoint" in log_text and "step_3" in log_text
    assert "resumed from" in log_text and "step 2" in log_text
    assert_same_steps(uninterrupted, read_jsonl(run_dir / "metrics.jsonl"), range(1, STEPS + 1))


def test_unfinished_checkpoint_folders_of_killed_writers_are_removed_at_the_next_save(tmp_path):
    root = tmp_path / "checkpoints"
    gone = subprocess.Popen(["true"])
    gone.wait()  # a writer that no longer runs
    live = os.getppid()  # a running process other than this one
    for name in (f".step_3.tmp-{gone.pid}", f".step_2.old-{gone.pid}", f".step_4.tmp-{live}"):
        (root / name).mkdir(parents=True)
        (root / name / "learner.pt").write_bytes(b"half written")
    (root / ".step_x.tmp-notapid").mkdir()  # not a checkpoint writer's name: left alone
    (root / "notes.txt").write_text("mine")
    path = checkpoint.save(root, 5, {"state": {"a": 1}})
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [f".step_4.tmp-{live}", ".step_x.tmp-notapid", "notes.txt", "step_5"]
    )
    assert checkpoint.verify(path) is None and (root / "notes.txt").read_text() == "mine"


def test_sigterm_finishes_the_step_checkpoints_and_exits_0(tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    proc = start(run_dir)  # save_every=0: without the signal only the last step is saved
    wait_for(
        lambda: (run_dir / "metrics.jsonl").exists() and (run_dir / "metrics.jsonl").read_text(),
        proc,
    )
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    steps = checkpoint.list_steps(run_dir / "checkpoints")
    assert len(steps) == 1 and 1 <= steps[0] < STEPS, steps
    assert "stopped by SIGTERM" in (run_dir / "train.log").read_text()
    assert not (run_dir / "summary.json").exists()  # the run is not finished
    done = run_cli("or1-train", train_args(run_dir), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_steps(uninterrupted, read_jsonl(run_dir / "metrics.jsonl"), range(1, STEPS + 1))


def test_nonfinite_update_is_skipped_and_weights_stay(tiny_model):
    learner = make_learner(tiny_model)
    loss = __import__("or1_plugins.loss.or1", fromlist=["OR1Loss"])
    policy_loss = loss.OR1Loss(loss.OR1LossConfig())
    before = {k: v.clone() for k, v in learner.model.state_dict().items()}
    batch = make_batch([6, 8, 5])
    batch.old_logprobs = learner.compute_logprobs(batch)[0]
    batch.advantages = batch.advantages * float("nan")
    out = learner.train_step(batch, policy_loss, 0.0)
    assert out["train/nonfinite"] == 1.0
    assert all(torch.equal(before[k], v) for k, v in learner.model.state_dict().items())
    assert not learner.optimizer.state  # AdamW never stepped: no moments were created
    good = make_batch([6, 8, 5])
    good.old_logprobs = learner.compute_logprobs(good)[0]
    assert learner.train_step(good, policy_loss, 0.0)["train/nonfinite"] == 0.0
    assert not all(torch.equal(before[k], v) for k, v in learner.model.state_dict().items())


def test_repeated_nonfinite_updates_stop_the_run(tmp_path, cache_dir):
    # advantage.eps=0 with no filter: an all-wrong group has (0 - 0) / (0 + 0) = NaN advantages
    run_dir = tmp_path / "run"
    args = [
        f"hydra.run.dir={run_dir}",
        "trainer.total_steps=6",
        "trainer.eval_at_start=false",
        *FAST_RUN,
        "filter=none",
        "advantage.eps=0",
        "trainer.max_nonfinite_steps=2",
    ]
    proc = run_cli("or1-train", args, tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("or1: error: 2 non-finite updates in a row"), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    assert metrics[0]["train/nonfinite"] == 1.0 and metrics[0]["train/nonfinite_total"] == 1.0


class FakeCrashingEngine:
    """Stands in for an engine whose process dies: outside the subject (the restart logic)."""

    def __init__(self, fail_times: int) -> None:
        self.fail_times = fail_times

    def generate(self, prompts, params):
        if self.fail_times:
            self.fail_times -= 1
            raise RuntimeError("engine process died")
        return [[] for _ in prompts]


def test_a_crashed_rollout_engine_is_restarted_once(caplog):
    from or1.core.errors import TrainingError
    from or1.core.types import Prompt, SamplingParams
    from or1.rl.steps import generate_groups

    prompts = [Prompt(uid="a", row={}, prompt_ids=[1, 2])]
    restarts: list[FakeCrashingEngine] = []

    def restart(fails: int):
        def make():
            restarts.append(FakeCrashingEngine(fails))
            return restarts[-1]

        return make

    groups = generate_groups(FakeCrashingEngine(1), prompts, SamplingParams(n=1), restart(0))
    assert len(groups) == 1 and len(restarts) == 1
    assert "restarting it with the current weights" in caplog.text
    with pytest.raises(TrainingError, match="failed again after a restart"):
        generate_groups(FakeCrashingEngine(1), prompts, SamplingParams(n=1), restart(1))
    assert len(restarts) == 2


class FakeHalfStreamingEngine:
    """Hands over prompt 0's group, then its process dies: outside the subject (which
    rewards the trainer keeps after a restart)."""

    def generate_stream(self, prompts, params, on_group):
        on_group(0, [Completion([1], [5], [-0.1], "stop", "stale")])
        raise RuntimeError("engine process died")


class FakeEchoEngine:
    """The restarted engine: one completion per prompt whose text is "fresh"."""

    def generate(self, prompts, params):
        return [[Completion(list(p), [6], [-0.2], "stop", "fresh")] for p in prompts]


class FakeTextVerifier:
    """Reward 1 for the text "fresh": outside the subject; counts its calls."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def score_many(self, texts, rows):
        self.calls.append(list(texts))
        return [Score(float(t == "fresh"), "correct" if t == "fresh" else "wrong") for t in texts]


def test_rewards_after_a_restart_mid_stream_come_from_the_new_samples():
    from or1.core.types import Prompt, SamplingParams
    from or1.rl.steps import OverlappedScoring, generate_groups

    prompts = [Prompt(uid=u, row={}, prompt_ids=[1, 2]) for u in "ab"]
    verifier = FakeTextVerifier()
    with OverlappedScoring(verifier, prompts) as scoring:
        groups = generate_groups(
            FakeHalfStreamingEngine(), prompts, SamplingParams(n=1), FakeEchoEngine, scoring.submit
        )
        scoring.finish(groups)
    assert [g.rewards for g in groups] == [[1.0], [1.0]]
    assert verifier.calls[0] == ["stale"]  # submitted before the crash, then not used
    assert verifier.calls[1:] == [["fresh", "fresh"]]  # both scored from the new samples


def _tree_digest(folder: Path) -> dict[str, str]:
    """Every file's digest; ``train.log`` (appended to, never truncated) by its content."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "train.log"
    }


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, cache_dir) -> Path:
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    proc = run_cli(
        "or1-train",
        [
            f"hydra.run.dir={run_dir}",
            "trainer.total_steps=1",
            "trainer.eval_at_start=false",
            *FAST_RUN,
            "eval.max_problems=2",
        ],
        run_dir.parent,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def _broken_model(tmp_path: Path, tiny_model: Path, what: str) -> Path:
    folder = tmp_path / f"model-{what}"
    folder.mkdir()
    for f in tiny_model.iterdir():
        if what == "no_tokenizer" and f.name.startswith("tokenizer"):
            continue
        (folder / f.name).write_bytes(f.read_bytes())
    if what == "unknown_arch":
        cfg = json.loads((folder / "config.json").read_text())
        cfg["model_type"], cfg["architectures"] = "vit", ["ViTModel"]
        (folder / "config.json").write_text(json.dumps(cfg))
    return folder


@pytest.mark.parametrize(
    "case, needle",
    [
        ("missing_file", "dataset file not found"),
        ("wrong_columns", "bad.jsonl: row 0: missing column 'prompt'"),
        ("no_tokenizer", "tokenizer"),
        ("unknown_arch", "model_type 'vit' is not a causal language model"),
        ("disk", "not enough free disk space"),
        ("negative_limit", "trainer.max_nonfinite_steps=-1"),
    ],
)
def test_bad_input_fails_in_one_line_and_the_run_folder_is_untouched(
    tmp_path, tiny_model, finished_run, case, needle
):
    before = _tree_digest(finished_run)
    log_before = (finished_run / "train.log").read_text()
    extra = {
        "missing_file": [f"data.path={tmp_path / 'nope.jsonl'}"],
        "wrong_columns": [f"data.path={tmp_path / 'bad.jsonl'}"],
        "no_tokenizer": [f"model.path={_broken_model(tmp_path, tiny_model, 'no_tokenizer')}"],
        "unknown_arch": [f"model.path={_broken_model(tmp_path, tiny_model, 'unknown_arch')}"],
        "disk": ["trainer.min_free_disk_gb=1000000"],
        "negative_limit": ["trainer.max_nonfinite_steps=-1"],
    }[case]
    (tmp_path / "bad.jsonl").write_text(json.dumps({"question": "1+1", "answer": "2"}) + "\n")
    args = [
        f"hydra.run.dir={finished_run}",
        "trainer.total_steps=3",
        *UNTRAINED_MODEL,
        "logger=[jsonl]",
        *extra,
    ]
    proc = run_cli("or1-train", args, tmp_path, env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("or1: error: ") and needle.lower() in last.lower(), last
    assert "Traceback" not in proc.stderr
    assert _tree_digest(finished_run) == before  # config snapshot, checkpoints, metrics, model
    assert (finished_run / "train.log").read_text().startswith(log_before)


def test_free_disk_check_default_needs_room_for_checkpoints(tmp_path, tiny_model):
    from omegaconf import OmegaConf

    from or1.core.errors import ConfigError
    from or1.launch.launch_checks import check_free_disk, fp32_weight_bytes

    weights = fp32_weight_bytes(tiny_model)
    assert weights == 4 * sum(
        p.numel() for p in make_learner(tiny_model).model.state_dict().values()
    )
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    fits = OmegaConf.create({"trainer": {"min_free_disk_gb": None, "keep_checkpoints": 2}})
    check_free_disk(fits, tmp_path, tiny_model)  # 10 x a 1.6 MB model fits anywhere
    # a keep_checkpoints so large that (3 * (keep + 1) + 1) x weights exceeds the free space
    keep = int(free / weights / 3) + 1
    too_many = OmegaConf.create({"trainer": {"min_free_disk_gb": None, "keep_checkpoints": keep}})
    with pytest.raises(ConfigError, match="not enough free disk space"):
        check_free_disk(too_many, tmp_path, tiny_model)
