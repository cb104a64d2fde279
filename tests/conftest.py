"""Shared fixtures: a per-session model cache, the untrained tiny model, and CLI runners."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SHARED_DATA = ROOT.parent / "shared" / "data"
"""The AIME evaluation files beside the project on its own machines; a user's clone has none."""


def shared_data(name: str) -> Path:
    """``SHARED_DATA / name``, or skip the test with a reason naming the missing file."""
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"{path} is absent (the AIME files live beside the project, not in it)")
    return path


# The portable reference engines (HF generate, plain PyTorch): tests of everything but the
# engines themselves use them, since they start in a second (vLLM's import alone takes ~11 s).
REFERENCE_ENGINES = ["rollout=transformers", "learner=torch"]
# The tiny model without warm-up: builds in seconds; CLI tests select it with these overrides.
UNTRAINED_MODEL = ["model.warmup_max_steps=0", "model.num_threads=1", *REFERENCE_ENGINES]
# Entropy bonus always on: weights change every step even though an untrained model earns no
# reward, so a resume that lost any state would diverge (resume and restart tests use it).
MOVING = [
    "filter=none",
    "entropy.target=100",
    "entropy.delta=0.05",
    "entropy.coef_max=1.0",
    "learner.lr=0.01",
]
# A lightly warmed tiny model (~20% accuracy): groups with and without reward variance.
LIGHTLY_WARMED = ["model.warmup_target_accuracy=0.2", "model.num_threads=1"]
# A small, fast run: 4 prompts x 4 samples, short responses, 8 held-out problems.
FAST_RUN = [
    *UNTRAINED_MODEL,
    "trainer.prompts_per_step=4",
    "trainer.group_size=4",
    "trainer.num_threads=1",
    "eval.max_problems=8",
    "eval.k=2",
    "stages.stages.0.max_response_length=24",
    "logger=[jsonl]",
]


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One model/data cache for the whole session (``OR1_TEST_CACHE`` keeps it across runs)."""
    path = Path(os.environ.get("OR1_TEST_CACHE") or tmp_path_factory.mktemp("or1-cache"))
    os.environ["OR1_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_model(cache_dir: Path) -> Path:
    """The untrained tiny Qwen2 folder (random weights, trained tokenizer, chat template)."""
    from omegaconf import OmegaConf

    from or1_plugins.sources.tiny.model import TinyModelConfig, prepare_tiny_model

    cfg = OmegaConf.structured(TinyModelConfig(warmup_max_steps=0, num_threads=1))
    return Path(prepare_tiny_model(cfg, cache_dir))


COMPARED = [
    "reward/mean",
    "response_length/mean",
    "loss/pg",
    "loss/entropy",
    "entropy/value",
    "entropy/coef",
    "grad_norm",
    "filter/groups_kept",
]
"""The per-step metrics a resumed run must repeat exactly (resume and reliability tests)."""


def run_cli(
    command: str, args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600
):
    """Run an installed or1 command; returns the CompletedProcess (text, captured)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [str(BIN / command), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def torchrun(
    args: list[str], cwd: Path, nproc: int = 2, env: dict | None = None, **kw
) -> subprocess.Popen:
    """``torchrun --standalone --nproc-per-node=nproc or1-train args`` (stdout and stderr
    together); --standalone: a free rendezvous port, so concurrent launches do not clash."""
    return subprocess.Popen(
        [
            str(BIN / "torchrun"),
            "--standalone",
            f"--nproc-per-node={nproc}",
            str(BIN / "or1-train"),
            *args,
        ],
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        **kw,
    )


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc): torchrun starts each rank in a session of
    its own, so killing torchrun's process group leaves the ranks running."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def kill_launch(launch: subprocess.Popen) -> None:
    """SIGKILL a launch started with ``start_new_session=True``: its process group and every
    process below it (the ranks first, so none outlives the launcher), then reap it."""
    for pid in [*descendants(launch.pid), launch.pid]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(launch.pid, signal.SIGKILL)
    launch.wait(timeout=60)


def kill_launch_after_checkpoint(launch: subprocess.Popen, run_dir: Path, step: int) -> None:
    """SIGKILL the whole launch (started with ``start_new_session=True``, ranks included) as
    soon as the checkpoint of ``step`` is complete under ``run_dir`` (within 10 minutes)."""
    try:
        deadline = time.time() + 600
        while not (run_dir / "checkpoints" / f"step_{step}" / "manifest.json").is_file():
            assert launch.poll() is None and time.time() < deadline
            time.sleep(0.1)
    finally:
        kill_launch(launch)


def kill_then_resume(args: list[str], run_dir: Path, cwd: Path, step: int = 2) -> tuple[str, dict]:
    """Launch ``or1-train args`` under torchrun, SIGKILL it (ranks included) once the
    checkpoint of ``step`` is complete under ``run_dir``, relaunch it with
    ``trainer.resume=auto`` to the end; the relaunch's output and the run's metrics by step."""
    launch = torchrun(args, cwd, start_new_session=True)
    kill_launch_after_checkpoint(launch, run_dir, step)
    resumed = torchrun([*args, "trainer.resume=auto"], cwd)
    out, _ = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, out[-6000:]
    return out, {m["step"]: m for m in read_jsonl(run_dir / "metrics.jsonl")}
