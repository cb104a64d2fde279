"""``or1-train learner=megatron`` as users launch it: one process (TP=1), torchrun (TP=2 and
DP=2, every rank generating), two "nodes", a killed rank and a killed launch resumed."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import torch

from tests.conftest import (
    BIN,
    COMPARED,
    FAST_RUN,
    LIGHTLY_WARMED,
    kill_launch,
    kill_launch_after_checkpoint,
    read_jsonl,
    run_cli,
    torchrun,
)
from tests.megatron_jobs import free_port

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


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["learner=megatron", "learner.tensor_parallel_size=2"],
            "learner.tensor_parallel_size=2 does not divide the 1 process(es) of this launch "
            "(launch with torchrun --nproc-per-node 2)",
        ),
        (
            ["rollout=vllm", "rollout.tensor_parallel_size=2"],
            "rollout.tensor_parallel_size=2 does not divide the 1 process(es) of this launch",
        ),
    ],
)
def test_a_parallel_size_without_the_processes_is_a_one_line_error(
    tmp_path, cache_dir, overrides, message
):
    proc = run_cli("or1-train", [*FAST_RUN, *overrides], tmp_path)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"or1: error: {message}")
    assert "Traceback" not in proc.stderr and not list(tmp_path.rglob("metrics.jsonl"))


@pytest.mark.slow
def test_tp2_and_dp2_under_torchrun_agree(tmp_path, cache_dir):
    # both launches have two rollout engines (one per rank, same seeds) and differ only in
    # the learner's layout: TP=2 x DP=1 against TP=1 x DP=2 (token-balanced split)
    common = [*RUN, *WARM, "trainer.total_steps=2", "trainer.eval_at_start=false"]
    runs = {}
    for name, tp in (("tp2", 2), ("dp2", 1)):
        launch = torchrun(
            [*common, f"learner.tensor_parallel_size={tp}", f"hydra.run.dir={tmp_path / name}"],
            tmp_path,
        )
        out, _ = launch.communicate(timeout=900)
        assert launch.returncode == 0, out[-6000:]
        runs[name] = read_jsonl(tmp_path / name / "metrics.jsonl")
    a, b = runs["tp2"], runs["dp2"]
    assert [m["step"] for m in a] == [m["step"] for m in b] == [1, 2]
    for x, y in zip(a, b, strict=True):
        assert x["rollout/engines"] == y["rollout/engines"] == 2
        assert x["rollout/engine0_samples"] == x["rollout/engine1_samples"] == 8
        for key in ("loss/pg", "entropy/value", "loss/entropy", "reward/mean", "grad_norm"):
            assert y[key] == pytest.approx(x[key], rel=1e-3, abs=1e-6), (x["step"], key)
    # rewards varied, and step 1's gradient (entropy coefficient still 0) is the policy
    # gradient's alone: the comparison is not 0 == 0
    assert 0 < a[0]["reward/mean"] < 1 and a[0]["entropy/coef"] == 0 and a[0]["grad_norm"] > 0.1
    assert (tmp_path / "tp2" / "final_model" / "model.safetensors").is_file()


@pytest.mark.slow
def test_a_dead_rank_ends_the_launch_within_a_minute_and_the_next_launch_resumes(
    tmp_path, cache_dir
):
    mark = uuid.uuid4().hex
    args = [
        *FAST_RUN,
        *RUN[:1],
        "learner.tensor_parallel_size=2",
        "trainer.total_steps=500",
        "trainer.save_every=1",
        f"hydra.run.dir={tmp_path / 'run'}",
    ]
    launch = torchrun(args, tmp_path, env={"OR1_TEST_MARK": mark}, start_new_session=True)
    try:
        metrics = tmp_path / "run" / "metrics.jsonl"
        deadline = time.time() + 300
        while not (metrics.is_file() and len(read_jsonl(metrics)) >= 3):  # training has started
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
            kill_launch(launch)
    from or1.rl import checkpoint

    last = checkpoint.step_of(checkpoint.latest(tmp_path / "run" / "checkpoints"))
    assert last >= 1
    again = torchrun(
        [*args[:-3], f"trainer.total_steps={last + 1}", *args[-2:], "trainer.resume=auto"], tmp_path
    )
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0, out[-6000:]
    assert read_jsonl(tmp_path / "run" / "metrics.jsonl")[-1]["step"] == last + 1


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


VLLM_DP2 = [
    *FAST_RUN,
    "learner=megatron",
    "rollout=vllm",
    "filter=none",
    "trainer.eval_at_start=false",
    "eval.max_problems=4",
    "entropy.target=100",
    "entropy.delta=0.05",
    "entropy.coef_max=1.0",
    "learner.lr=0.01",
    "trainer.save_every=2",
]


@pytest.mark.slow
def test_vllm_dp2_every_rank_generates_and_a_killed_launch_resumes_exactly(tmp_path, cache_dir):
    """The default engines under torchrun, TP=1 so DP=2: one vLLM engine per rank, weights
    synced in memory (no file under the run folder), and kill -9 after a checkpoint followed
    by trainer.resume=auto repeats the uninterrupted run's later steps exactly."""
    whole = torchrun(
        [*VLLM_DP2, "trainer.total_steps=4", f"hydra.run.dir={tmp_path / 'a'}"], tmp_path
    )
    out, _ = whole.communicate(timeout=900)
    assert whole.returncode == 0, out[-6000:]
    a = read_jsonl(tmp_path / "a" / "metrics.jsonl")
    assert [m["step"] for m in a] == [1, 2, 3, 4]
    for m in a:
        assert m["rollout/engines"] == 2
        assert m["rollout/engine0_samples"] == m["rollout/engine1_samples"] == 8
        assert m["weight_sync/bytes"] > 1e6 and m["weight_sync/s"] > 0
    written = [p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.safetensors")]
    # no weight-sync files: only the final export and the checkpoints' learner shards
    assert all(p.parts[0] in ("final_model", "checkpoints") for p in written), written
    assert not list((tmp_path / "a" / "vllm").rglob("weights-*"))
    assert a[3]["entropy/value"] != pytest.approx(a[0]["entropy/value"], rel=1e-4)  # it moved

    run_dir = tmp_path / "b"
    args = [*VLLM_DP2, "trainer.total_steps=4", f"hydra.run.dir={run_dir}"]
    launch = torchrun(args, tmp_path, start_new_session=True)
    kill_launch_after_checkpoint(launch, run_dir, 2)
    resumed = torchrun([*args, "trainer.resume=auto"], tmp_path)
    out, _ = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, out[-6000:]
    b = {m["step"]: m for m in read_jsonl(run_dir / "metrics.jsonl")}
    for m in a[2:]:
        for key in COMPARED:
            assert b[m["step"]][key] == pytest.approx(m[key], rel=1e-5, abs=1e-7), (m["step"], key)

    # or1-eval exports a sharded checkpoint: the weights of the run's own final export
    from safetensors.torch import load_file

    out = tmp_path / "eval"
    step4 = tmp_path / "a" / "checkpoints" / "step_4"
    ev = run_cli(
        "or1-eval",
        [f"hydra.run.dir={out}", f"model.path={step4}", *FAST_RUN[:-1], "eval.max_problems=2"],
        tmp_path,
        timeout=600,
    )
    assert ev.returncode == 0, ev.stderr[-3000:]
    exported = load_file(str(out / "model" / "model.safetensors"))
    final = load_file(str(tmp_path / "a" / "final_model" / "model.safetensors"))
    assert exported.keys() == final.keys()
    assert all(torch.equal(exported[k], final[k]) for k in final)

    # a DP=2 checkpoint resumes in one process
    one = run_cli(
        "or1-train",
        [
            *VLLM_DP2,
            "trainer.total_steps=5",
            "trainer.resume=auto",
            f"hydra.run.dir={tmp_path / 'a'}",
        ],
        tmp_path,
        timeout=900,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    steps = [m["step"] for m in read_jsonl(tmp_path / "a" / "metrics.jsonl")]
    assert steps[-1] == 5 and steps.count(5) == 1


@pytest.mark.slow
def test_two_node_launch_runs_three_steps(tmp_path, cache_dir):
    """Two torchrun launches of one process each, as two "nodes" meeting at a rendezvous
    endpoint: three steps and exit 0 on both."""
    port = free_port()
    args = [*FAST_RUN, *RUN[:1], "trainer.total_steps=3", f"hydra.run.dir={tmp_path / 'run'}"]
    nodes = [
        subprocess.Popen(
            [
                str(BIN / "torchrun"),
                "--nnodes=2",
                f"--node-rank={rank}",
                "--nproc-per-node=1",
                "--rdzv-backend=c10d",
                f"--rdzv-endpoint=127.0.0.1:{port}",
                str(BIN / "or1-train"),
                *args,
            ],
            cwd=tmp_path,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for rank in (0, 1)
    ]
    outs = [n.communicate(timeout=900)[0] for n in nodes]
    for n, out in zip(nodes, outs, strict=True):
        assert n.returncode == 0, out[-6000:]
    m = [x for x in read_jsonl(tmp_path / "run" / "metrics.jsonl") if x["step"] > 0]
    assert [x["step"] for x in m] == [1, 2, 3] and m[0]["rollout/engines"] == 2


def test_ranks_that_disagree_on_the_config_stop_on_every_rank(tmp_path, cache_dir):
    """Two ranks of one launch (torchrun's variables set by hand) with different seeds: both
    exit 2 with one line naming the key, before any model is built."""
    port = free_port()
    procs = []
    for rank, seed in ((0, 1), (1, 2)):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
        args = [*FAST_RUN, *RUN[:1], f"trainer.seed={seed}", f"hydra.run.dir={tmp_path / 'run'}"]
        procs.append(
            subprocess.Popen(
                [str(BIN / "or1-train"), *args],
                cwd=tmp_path,
                env=env,
                text=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        )
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 2, err[-3000:]
        assert err.strip().splitlines()[-1] == (
            "or1: error: the ranks of this launch disagree on the config: trainer.seed differs "
            "between rank 0 and rank 1 (start every rank with the same overrides)"
        )
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_one_vllm_engine_across_two_ranks_samples_what_one_process_samples(tmp_path, cache_dir):
    """``rollout.tensor_parallel_size=2``: one vLLM engine spans both ranks (shared-memory TP
    on CPU), the learner is DP=2; weights move every step (entropy bonus on), so equal samples
    at steps 2-3 show the in-memory sync reached both ranks' halves of the engine."""
    common = [*RUN, *WARM, "rollout=vllm", "trainer.total_steps=3"]
    one = run_cli(
        "or1-train", [*common, f"hydra.run.dir={tmp_path / 'one'}"], tmp_path, timeout=900
    )
    assert one.returncode == 0, one.stderr[-3000:]
    two = torchrun(
        [*common, "rollout.tensor_parallel_size=2", f"hydra.run.dir={tmp_path / 'two'}"], tmp_path
    )
    out, _ = two.communicate(timeout=900)
    assert two.returncode == 0, out[-6000:]
    a, b = (read_jsonl(tmp_path / n / "metrics.jsonl") for n in ("one", "two"))
    assert [m["step"] for m in a] == [m["step"] for m in b] == [0, 1, 2, 3]
    assert b[0]["val/tiny_arith/avg@2"] == a[0]["val/tiny_arith/avg@2"]
    for x, y in zip(a[1:], b[1:], strict=True):
        assert y["rollout/engines"] == 1 and y["rollout/engine0_samples"] == 16
        assert y["response_length/mean"] == x["response_length/mean"]
        assert y["reward/mean"] == x["reward/mean"]
        for key in ("entropy/value", "grad_norm"):
            assert y[key] == pytest.approx(x[key], rel=1e-5), (x["step"], key)
    assert a[3]["entropy/value"] != pytest.approx(a[1]["entropy/value"], rel=1e-4)
