"""``or1-train learner=megatron`` as users launch it: one process (TP=1) and torchrun (TP=2)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import BIN, FAST_RUN, LIGHTLY_WARMED, read_jsonl, run_cli

# A lightly warmed tiny model (about 20% accuracy; its answers need up to 64 tokens) so that
# groups have reward variance and loss/pg is not trivially zero; built once into the test cache.
WARM = LIGHTLY_WARMED
RUN = [
    "learner=megatron",
    "rollout=transformers",
    "trainer.prompts_per_step=4",
    "trainer.group_size=4",
    "trainer.num_threads=1",
    "eval.max_problems=8",
    "eval.k=2",
    "stages.stages.0.max_response_length=64",
    "logger=[jsonl]",
    "trainer.seed=3",
    "filter=none",
    "entropy.target=100",
    "entropy.delta=0.05",
    "entropy.coef_max=1.0",
]


def torchrun(
    args: list[str], cwd: Path, nproc: int = 2, env: dict | None = None, **kw
) -> subprocess.Popen:
    return subprocess.Popen(
        # --standalone: a free rendezvous port, so concurrent launches on the machine do not clash
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


def test_tp_size_without_the_processes_is_a_one_line_error(tmp_path, cache_dir):
    proc = run_cli(
        "or1-train", [*FAST_RUN, "learner=megatron", "learner.tensor_parallel_size=2"], tmp_path
    )
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "or1: error: learner.tensor_parallel_size=2 does not divide the 1 process"
    )
    assert "torchrun --nproc-per-node 2" in last and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_two_steps_at_tp1_and_under_torchrun_at_tp2_agree(tmp_path, cache_dir):
    common = [*RUN, *WARM, "trainer.total_steps=2", "trainer.eval_at_start=false"]
    one = run_cli(
        "or1-train", [*common, f"hydra.run.dir={tmp_path / 'tp1'}"], tmp_path, timeout=900
    )
    assert one.returncode == 0, one.stderr[-3000:]
    two = torchrun(
        [*common, "learner.tensor_parallel_size=2", f"hydra.run.dir={tmp_path / 'tp2'}"], tmp_path
    )
    out, _ = two.communicate(timeout=900)
    assert two.returncode == 0, out[-6000:]
    a, b = (
        read_jsonl(tmp_path / "tp1" / "metrics.jsonl"),
        read_jsonl(tmp_path / "tp2" / "metrics.jsonl"),
    )
    assert [m["step"] for m in a] == [m["step"] for m in b] == [1, 2]
    for x, y in zip(a, b, strict=True):
        for key in ("loss/pg", "entropy/value", "loss/entropy", "reward/mean"):
            assert y[key] == pytest.approx(x[key], rel=1e-3, abs=1e-6), (x["step"], key)
    assert any(abs(m["loss/pg"]) > 1e-4 for m in a)  # rewards varied: the comparison is not 0 == 0
    assert (tmp_path / "tp2" / "final_model" / "model.safetensors").is_file()


@pytest.mark.slow
def test_a_dead_rank_ends_the_launch_within_a_minute(tmp_path, cache_dir):
    mark = uuid.uuid4().hex
    args = [
        *FAST_RUN,
        *RUN[:1],
        "learner.tensor_parallel_size=2",
        "trainer.total_steps=500",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    launch = torchrun(args, tmp_path, env={"OR1_TEST_MARK": mark}, start_new_session=True)
    try:
        metrics = tmp_path / "run" / "metrics.jsonl"
        deadline = time.time() + 300
        while not (metrics.is_file() and len(read_jsonl(metrics)) >= 2):  # training has started
            assert launch.poll() is None and time.time() < deadline
            time.sleep(1)
        victim = next(
            pid for pid in _pids_with(f"OR1_TEST_MARK={mark}") if "RANK=1" in _environ(pid)
        )
        killed = time.time()
        os.kill(victim, signal.SIGKILL)
        launch.communicate(timeout=60)
        assert launch.returncode != 0
        assert time.time() - killed < 60
    finally:
        if launch.poll() is None:
            os.killpg(launch.pid, signal.SIGKILL)


def _environ(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _pids_with(entry: str) -> list[int]:
    return [
        int(p.name)
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and entry in _environ(int(p.name))
    ]


@pytest.mark.slow
def test_vllm_rollout_under_torchrun_samples_what_one_process_samples(tmp_path, cache_dir):
    # rank 0's vLLM engine runs in its own process under torchrun; weights move every step
    # (entropy bonus always on), so equal samples at steps 2-3 show the weight sync worked
    common = [
        *FAST_RUN,
        "learner=megatron",
        "rollout=vllm",
        "trainer.total_steps=3",
        "filter=none",
        "trainer.eval_at_start=false",
        "eval.max_problems=2",
        "entropy.target=100",
        "entropy.delta=0.05",
        "entropy.coef_max=1.0",
        "learner.lr=0.01",
    ]
    one = run_cli(
        "or1-train", [*common, f"hydra.run.dir={tmp_path / 'one'}"], tmp_path, timeout=900
    )
    assert one.returncode == 0, one.stderr[-3000:]
    two = torchrun(
        [*common, "learner.tensor_parallel_size=2", f"hydra.run.dir={tmp_path / 'two'}"], tmp_path
    )
    out, _ = two.communicate(timeout=900)
    assert two.returncode == 0, out[-6000:]
    a, b = (
        read_jsonl(tmp_path / "one" / "metrics.jsonl"),
        read_jsonl(tmp_path / "two" / "metrics.jsonl"),
    )
    assert [m["step"] for m in a] == [m["step"] for m in b] == [1, 2, 3]
    for x, y in zip(a, b, strict=True):
        assert y["response_length/mean"] == x["response_length/mean"]
        assert y["entropy/value"] == pytest.approx(x["entropy/value"], rel=1e-5)
        assert y["timing/weight_sync_s"] > 0
    assert a[2]["entropy/value"] != pytest.approx(a[0]["entropy/value"], rel=1e-4)
