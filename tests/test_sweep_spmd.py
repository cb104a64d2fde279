"""Sweeps of multi-process jobs (``hydra/launcher=local_spmd`` / ``slurm_spmd``): each job one SPMD
launch whose ranks come from the job's environment; bad launcher settings are one line before
anything is submitted; the summary marks unfinished jobs; the same command resumes them."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from or1.core.errors import ConfigError
from or1.launch import distributed
from tests.conftest import BIN, FAST_RUN, read_jsonl, run_cli
from tests.test_cli import assert_one_line_error

# One process per rank, as the torchrun tests run them: the tiny untrained model, the
# transformers rollout and the Megatron learner (the learner that runs in several processes).
SPMD_RUN = [*FAST_RUN, "learner=megatron"]
LOCAL_SPMD = ["-m", "hydra/launcher=local_spmd", "hydra.launcher.tasks_per_node=2"]


# --- the job's environment -> this process's rank (fake environments, no processes) ---------

LOCAL_TASK = {  # what submitit's local executor sets for task 1 of a 2-task job
    "SUBMITIT_EXECUTOR": "local",
    "SUBMITIT_LOCAL_NTASKS": "2",
    "SUBMITIT_LOCAL_JOB_NUM_NODES": "1",
    "SUBMITIT_LOCAL_NODEID": "0",
    "SUBMITIT_LOCAL_GLOBALID": "1",
    "SUBMITIT_LOCAL_LOCALID": "1",
    "SUBMITIT_LOCAL_JOB_ID": "4242",
}


def slurm_task(rank: int, node: int, job: str = "918273") -> dict[str, str]:
    """What ``srun`` sets for global rank ``rank`` of a 2-node x 4-task job step."""
    return {
        "SUBMITIT_EXECUTOR": "slurm",
        "SLURM_JOB_ID": job,
        "SLURM_STEP_ID": "0",
        "SLURM_NTASKS": "8",
        "SLURM_STEP_NUM_TASKS": "8",
        "SLURM_STEP_NUM_NODES": "2",
        "SLURM_JOB_NUM_NODES": "2",
        "SLURM_STEP_TASKS_PER_NODE": "4(x2)",
        "SLURM_NODEID": str(node),
        "SLURM_PROCID": str(rank),
        "SLURM_LOCALID": str(rank - 4 * node),
        "SLURM_JOB_NODELIST": "gpu-[017-018]",
        "SLURM_STEP_NODELIST": "gpu-[017-018]",
    }


def test_a_local_executor_task_is_one_rank_of_its_job():
    job = distributed.job_launch(LOCAL_TASK)
    assert job is not None and job.source == "submitit-local"
    assert (job.rank, job.local_rank, job.world_size, job.local_world_size) == (1, 1, 2, 2)
    assert job.master_addr == "127.0.0.1" and job.job_id == "4242"
    low, high = distributed.RENDEZVOUS_PORTS
    assert low <= job.master_port < high
    # task 0 of the same job meets it at the same port
    rank0 = distributed.job_launch({**LOCAL_TASK, "SUBMITIT_LOCAL_GLOBALID": "0"})
    assert rank0.rank == 0 and rank0.master_port == job.master_port


def test_the_local_reading_agrees_with_submitits_own(monkeypatch):
    from submitit.local.local import LocalJobEnvironment

    for key, value in LOCAL_TASK.items():
        monkeypatch.setenv(key, value)
    theirs = LocalJobEnvironment()
    ours = distributed.job_launch()
    assert (ours.rank, ours.local_rank, ours.world_size, ours.job_id) == (
        theirs.global_rank,
        theirs.local_rank,
        theirs.num_tasks,
        theirs.job_id,
    )


def test_a_slurm_step_task_is_one_rank_with_the_rendezvous_on_the_first_node(monkeypatch):
    ranks = [distributed.job_launch(slurm_task(r, r // 4)) for r in range(8)]
    assert [j.rank for j in ranks] == list(range(8))
    assert [j.local_rank for j in ranks] == [0, 1, 2, 3] * 2
    assert {(j.world_size, j.local_world_size, j.master_addr) for j in ranks} == {(8, 4, "gpu-017")}
    assert len({j.master_port for j in ranks}) == 1  # every rank derives the same port
    other = distributed.job_launch(slurm_task(0, 0, job="918274"))
    assert other.master_port != ranks[0].master_port  # another job (these two ids differ)
    from submitit.slurm.slurm import SlurmJobEnvironment

    for key, value in slurm_task(5, 1).items():
        monkeypatch.setenv(key, value)
    theirs = SlurmJobEnvironment()
    assert (ranks[5].rank, ranks[5].local_rank, ranks[5].world_size) == (
        theirs.global_rank,
        theirs.local_rank,
        theirs.num_tasks,
    )
    assert ranks[5].master_addr == theirs.hostnames[0]


def test_torchrun_a_batch_script_and_a_plain_process_are_no_job_launch():
    assert distributed.job_launch({**LOCAL_TASK, "WORLD_SIZE": "2", "RANK": "0"}) is None
    batch = {k: v for k, v in slurm_task(0, 0).items() if not k.startswith("SLURM_STEP")}
    assert distributed.job_launch(batch) is None  # sbatch's script: one process, not 8 ranks
    assert distributed.job_launch({}) is None


def test_adopting_a_job_launch_sets_torchruns_variables():
    env = dict(slurm_task(6, 1))
    job = distributed.adopt_job_launch(env)
    assert job is not None
    assert {k: env[k] for k in distributed.TORCHRUN_VARIABLES} == {
        "RANK": "6",
        "LOCAL_RANK": "2",
        "WORLD_SIZE": "8",
        "LOCAL_WORLD_SIZE": "4",
        "MASTER_ADDR": "gpu-017",
        "MASTER_PORT": str(job.master_port),
    }
    one = {**LOCAL_TASK, "SUBMITIT_LOCAL_NTASKS": "1", "SUBMITIT_LOCAL_GLOBALID": "0"}
    assert distributed.adopt_job_launch(one) is None and "WORLD_SIZE" not in one


@pytest.mark.parametrize(
    ("nodelist", "first"),
    [
        ("gpu-[003-004,007],cpu1", "gpu-003"),
        ("node1,node2", "node1"),
        ("a[1-2]", "a1"),
        ("rack[01-02]-n[5-6]", "rack01-n5"),
        ("login", "login"),
    ],
)
def test_first_host_of_a_slurm_node_list(nodelist, first):
    assert distributed.first_host(nodelist) == first


def test_tasks_on_a_node_from_slurms_count_format():
    assert [distributed.tasks_on_node("4(x2),3", n) for n in range(4)] == [4, 4, 3, None]
    assert distributed.tasks_on_node("2,1", 1) == 1 and distributed.tasks_on_node("x", 0) is None


def test_a_bad_value_in_the_jobs_environment_names_the_variable():
    with pytest.raises(ConfigError, match="SLURM_PROCID=abc in this job's environment"):
        distributed.job_launch({**slurm_task(0, 0), "SLURM_PROCID": "abc"})


def test_more_ranks_on_a_node_than_gpus_names_the_launcher_key(monkeypatch):
    job = distributed.job_launch(slurm_task(0, 0))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    with pytest.raises(ConfigError) as err:
        distributed.check_gpus_per_node(2, job)
    assert str(err.value) == (
        "hydra.launcher.tasks_per_node=4 ranks on this node but it has 2 GPU(s) visible: each "
        "rank needs a GPU of its own"
    )
    distributed.check_gpus_per_node(4, job)  # one each: fine


# --- bad launcher settings: one line before anything is submitted ------------------------


def test_more_tasks_than_gpus_per_node_is_one_line(tmp_path):
    proc = run_cli(
        "or1-train",
        [
            "-m",
            "hydra/launcher=slurm_spmd",
            "hydra.launcher.gpus_per_node=4",
            "hydra.launcher.tasks_per_node=8",
            "trainer.seed=1,2",
        ],
        tmp_path,
    )
    assert proc.returncode == 2
    assert_one_line_error(
        proc,
        "hydra.launcher.tasks_per_node=8 is more than hydra.launcher.gpus_per_node=4: each task "
        "is one rank and needs a GPU of its own",
    )
    assert not (tmp_path / "multirun").exists()


def test_a_parallel_size_that_does_not_divide_the_ranks_of_a_job_is_one_line(tmp_path):
    proc = run_cli(
        "or1-train",
        [*LOCAL_SPMD, "learner=megatron", "learner.tensor_parallel_size=4", "trainer.seed=1,2"],
        tmp_path,
    )
    assert proc.returncode == 2
    assert_one_line_error(
        proc,
        "learner.tensor_parallel_size=4 does not divide the 2 rank(s) of each sweep job "
        "(hydra.launcher.nodes=1 x hydra.launcher.tasks_per_node=2)",
    )
    assert not (tmp_path / "multirun").exists()


FAKE_MISSING_SUBMITIT = '''
import importlib.abc, sys

class FakeMissingSubmitit(importlib.abc.MetaPathFinder):
    """A fake for this test: imports of submitit and its Hydra plugin fail as if absent."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "submitit" or name.startswith("hydra_plugins.hydra_submitit"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, FakeMissingSubmitit())
'''


def test_a_missing_submitit_install_is_one_line(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(FAKE_MISSING_SUBMITIT)
    proc = run_cli(
        "or1-train", [*LOCAL_SPMD, "trainer.seed=1,2"], tmp_path, env={"PYTHONPATH": str(site)}
    )
    assert proc.returncode == 2
    assert_one_line_error(
        proc,
        "hydra/launcher=local_spmd needs the submitit launcher, which is not installed "
        "(submitit, hydra_submitit_launcher missing): pip install 'or1[slurm]'",
    )
    assert not (tmp_path / "multirun").exists()


def documented_slurm_recipe() -> list[str]:
    """The arguments of the "3 seeds x 2 nodes x 8 GPUs" command in docs/sweeps.md."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "sweeps.md").read_text()
    block = text.split("### SLURM", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    command = next(ln for ln in block.replace("\\\n", " ").splitlines() if "or1-train" in ln)
    return command.split()[1:]


def test_the_documented_slurm_recipe_passes_every_check_up_to_the_submission(tmp_path):
    """No SLURM here: the 16-rank jobs of the 7B preset compose, fit the checks of every run,
    and the submission itself is one line (no srun)."""
    args = documented_slurm_recipe()
    assert args[:2] == ["-m", "hydra/launcher=slurm_spmd"] and "trainer.seed=0,1,2" in args
    sweep = tmp_path / "sweep"
    args = [a if not a.startswith("hydra.sweep.dir=") else f"hydra.sweep.dir={sweep}" for a in args]
    proc = run_cli("or1-train", args, tmp_path)
    assert proc.returncode == 2
    assert_one_line_error(
        proc, 'hydra/launcher: cannot submit the sweep\'s jobs: Could not detect "srun"'
    )
    assert not list(sweep.glob("*/.hydra"))  # no run started


def compose_run(*overrides: str):
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from or1.core.registry import get_registry
    from or1.core.schemas import CONFIG_MODULE, CONFIG_NAME, store_schemas

    store_schemas(get_registry())
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
            return compose(CONFIG_NAME, list(overrides), return_hydra_config=True)
    finally:
        GlobalHydra.instance().clear()


def test_the_layout_checks_of_a_run_against_a_jobs_ranks():
    from or1.commands.sweep_jobs import JobShape, check_job_shape, check_run_layout
    from or1.core.registry import get_registry

    registry = get_registry()
    two = JobShape("local_spmd", 1, 2, 2, local=True)
    check_run_layout(compose_run("learner=megatron"), registry, two)  # TP=1: two engines
    cases = [
        (
            ("learner=torch", "rollout=transformers"),
            "learner=torch runs in a single process, not in the 2 rank(s) of each sweep job "
            "(hydra.launcher.nodes=1 x hydra.launcher.tasks_per_node=2); use learner=megatron "
            "or hydra.launcher.tasks_per_node=1",
        ),
        (
            ("rollout.tensor_parallel_size=4",),
            "rollout.tensor_parallel_size=4 does not divide the 2 rank(s) of each sweep job",
        ),
    ]
    for overrides, message in cases:
        with pytest.raises(ConfigError) as err:
            check_run_layout(compose_run(*overrides), registry, two)
        assert str(err.value).startswith(message)
    sixteen = JobShape("slurm_spmd", 2, 8, 8, local=False)
    check_run_layout(compose_run("rollout.tensor_parallel_size=4"), registry, sixteen)
    with pytest.raises(ConfigError, match=r"hydra.launcher.nodes=2: hydra/launcher=local_spmd"):
        check_job_shape(JobShape("local_spmd", 2, 2, 2, local=True), 0)
    with pytest.raises(ConfigError, match=r"is more than the 1 GPU\(s\) of this machine"):
        check_job_shape(two, 1)
    check_job_shape(two, 0)  # a CPU machine: the GPU settings do nothing


def test_the_spmd_presets_compose():
    local = compose_run("hydra/launcher=local_spmd", "hydra.launcher.tasks_per_node=3")
    launcher = local.hydra.launcher
    assert launcher._target_.endswith("spmd_launcher.SpmdLocalLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (1, 3, 3)
    slurm = compose_run("hydra/launcher=slurm_spmd", "hydra.launcher.nodes=2").hydra.launcher
    assert slurm._target_.endswith("spmd_launcher.SpmdSlurmLauncher")
    assert (slurm.nodes, slurm.tasks_per_node, slurm.gpus_per_node) == (2, 8, 8)
    gpu = compose_run("hydra/launcher=slurm_gpu").hydra.launcher
    assert gpu._target_ == slurm._target_ and (gpu.tasks_per_node, gpu.gpus_per_node) == (1, 1)


# --- the launcher's reading of how a job ended --------------------------------------------


def test_the_reason_a_job_ended_comes_from_its_task_logs():
    from hydra_plugins.or1_spmd_launcher.spmd_launcher import (
        exception_line,
        or1_error_line,
        stopped_state,
        swept_overrides,
    )

    logs = [
        "loading\nor1: error: trainer.seed differs\nbye\n",
        "or1: error: the other rank's line\n",
    ]
    assert or1_error_line(logs) == "trainer.seed differs"
    assert or1_error_line([None, "plain log"]) is None
    crash = (
        "Traceback (most recent call last):\n  File x\nRuntimeError: Connection closed by peer\n"
    )
    assert exception_line(["nothing here", crash]) == "RuntimeError: Connection closed by peer"
    assert stopped_state("PREEMPTED") and stopped_state("CANCELLED by 1001")
    assert not stopped_state("FAILED") and not stopped_state("FINISHED")
    jobs = [["trainer.seed=1", "eval.k=2"], ["trainer.seed=2", "eval.k=2"]]
    assert swept_overrides(jobs) == [["trainer.seed=1"], ["trainer.seed=2"]]
    assert swept_overrides([["eval.k=2"]]) == [["eval.k=2"]]


class FakeSubmititTask:
    """A fake of one task of a finished submitit job: its result (or the error submitit raises
    when the task left none) and its error log."""

    def __init__(self, result=None, log: str = "", error: Exception | None = None):
        self._result, self._log, self._error = result, log, error
        self.paths = type("Paths", (), {"stderr": Path("/sweep/.submitit/7/7_0_log.err")})()

    def result(self):
        if self._error is not None:
            raise self._error
        return self._result

    def stderr(self) -> str:
        return self._log


class FakeSubmititJob:
    """A fake of a finished submitit job of several tasks (the launcher only reads it)."""

    def __init__(self, tasks: list[FakeSubmititTask], state: str = "COMPLETED"):
        self.tasks, self.state, self.num_tasks, self.job_id = tasks, state, len(tasks), "7"

    def wait(self) -> None:
        pass

    def task(self, k: int) -> FakeSubmititTask:
        return self.tasks[k]


def test_how_a_job_ended_is_read_from_rank_0s_return_the_logs_and_the_state():
    from hydra.core.utils import JobReturn, JobStatus
    from submitit.core.utils import UncompletedJobError

    from hydra_plugins.or1_spmd_launcher.spmd_launcher import job_end

    def returned(value=None, status=JobStatus.COMPLETED):
        return JobReturn(status=status, _return_value=value)

    no_result = UncompletedJobError("Job 7 (task: 0) has not produced any output")
    ok = job_end(FakeSubmititJob([FakeSubmititTask(returned({"steps": 3}))] * 2), 0, ["s=1"])
    assert (ok.status, ok.reason, ok.job_return.return_value) == ("done", "", {"steps": 3})
    stopped = job_end(
        FakeSubmititJob([FakeSubmititTask(returned({"stopped_by": "SIGTERM", "steps": 4}))]), 1, []
    )
    assert (stopped.status, stopped.reason) == ("preempted", "stopped by SIGTERM after step 4")
    crashed = job_end(
        FakeSubmititJob([FakeSubmititTask(returned(RuntimeError("boom\nmore"), JobStatus.FAILED))]),
        2,
        [],
    )
    assert (crashed.status, crashed.reason) == ("failed", "RuntimeError: boom")
    refused = FakeSubmititJob(
        [
            FakeSubmititTask(error=no_result, log="x\nor1: error: trainer.seed differs\n"),
            FakeSubmititTask(error=no_result, log="or1: error: trainer.seed differs\n"),
        ],
        state="FINISHED",
    )
    end = job_end(refused, 3, [])
    assert end.status == "failed" and end.job_return is None
    assert end.reason == "trainer.seed differs; log: /sweep/.submitit/7/7_0_log.err"
    killed = job_end(FakeSubmititJob([FakeSubmititTask(error=no_result)], "FINISHED"), 4, [])
    assert killed.reason.startswith("ended without a result (scheduler state FINISHED; killed?)")
    timeout = job_end(FakeSubmititJob([FakeSubmititTask(error=no_result)], "TIMEOUT"), 5, [])
    assert timeout.status == "preempted"


def test_the_time_limit_warning_becomes_the_trainers_graceful_stop():
    """submitit's signal before a job's time limit (USR2): every rank finishes its step, saves
    a checkpoint and returns (a ``preempted`` job, resumed by the next run of the command)."""
    from hydra_plugins.or1_spmd_launcher.spmd_launcher import stop_gracefully_on, time_limit_signal
    from or1.rl.stopping import GracefulStop

    assert time_limit_signal() == signal.SIGUSR2
    previous = signal.getsignal(signal.SIGUSR2)
    try:
        stop_gracefully_on(signal.SIGUSR2)
        with GracefulStop() as stop:
            os.kill(os.getpid(), signal.SIGUSR2)
            deadline = time.time() + 5
            while not stop.requested and time.time() < deadline:
                time.sleep(0.01)
        assert stop.requested and stop.signal_name == "SIGTERM"
    finally:
        signal.signal(signal.SIGUSR2, previous)


# --- the summary of a sweep with unfinished jobs ------------------------------------------


def test_the_summary_marks_failed_and_preempted_jobs(tmp_path):
    from or1.commands.sweep_summary import collect, record_job_status

    for job, seed in enumerate((1, 2, 3)):
        run = tmp_path / str(job)
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "overrides.yaml").write_text(f"- trainer.seed={seed}\n- eval.k=2\n")
        (run / "metrics.jsonl").write_text(json.dumps({"step": 1, "reward/mean": 0.5}) + "\n")
    (tmp_path / "0" / "summary.json").write_text(json.dumps({"steps": 3}))
    record_job_status(tmp_path / "1", "failed", "killed", 1, "77", ["trainer.seed=2", "eval.k=2"])
    record_job_status(tmp_path / "2", "preempted", "TIMEOUT", 2, "78", ["trainer.seed=3"])
    # a job that ended before its run wrote anything: only the launcher's record
    record_job_status(tmp_path / "3", "failed", "no GPU", 3, "79", ["trainer.seed=4", "eval.k=2"])
    columns, rows = collect(tmp_path, metrics=("reward/mean",))
    assert columns[:3] == ["run", "status", "trainer.seed"]
    assert [(r["run"], r["status"], r["trainer.seed"]) for r in rows] == [
        ("0", "done", "1"),
        ("1", "failed", "2"),
        ("2", "preempted", "3"),
        ("3", "failed", "4"),
    ]
    assert "reward/mean" not in rows[3] and rows[1]["reward/mean"] == 0.5


def test_only_rank_0_of_a_job_writes_the_summary_after_its_job(tmp_path, monkeypatch):
    from hydra.types import RunMode

    from or1.commands.sweep_summary import SweepSummary

    run = tmp_path / "0"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("- trainer.seed=1\n")
    config = OmegaConf.create(
        {"hydra": {"mode": RunMode.MULTIRUN, "sweep": {"dir": str(tmp_path)}}}
    )
    for key, value in LOCAL_TASK.items():
        monkeypatch.setenv(key, value)  # this process: task 1 of a 2-task local job
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    # the rank comes from the job's variables here, not from a world of one that an
    # in-process learner test of the same pytest run may have left initialised
    monkeypatch.setattr("or1.launch.distributed._initialised", lambda: False)
    SweepSummary().on_job_end(config, None)
    assert not (tmp_path / "sweep_summary.md").exists()
    monkeypatch.setenv("SUBMITIT_LOCAL_GLOBALID", "0")
    SweepSummary().on_job_end(config, None)
    assert (tmp_path / "sweep_summary.md").read_text().startswith("| run | status | trainer.seed |")


def test_a_finished_run_folder_is_recognised_from_its_files(tmp_path):
    from or1.launch.resume import finished_summary

    cfg = OmegaConf.create({"trainer": {"resume": "auto", "total_steps": None, "seed": 1}})
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    (tmp_path / "summary.json").write_text(json.dumps({"steps": 3, "val/end_accuracy": 0.5}))
    step = tmp_path / "checkpoints" / "step_3"
    step.mkdir(parents=True)
    assert finished_summary(cfg, tmp_path) is None  # no manifest: the last save is incomplete
    (step / "manifest.json").write_text("{}")
    assert finished_summary(cfg, tmp_path) == {"steps": 3, "val/end_accuracy": 0.5}
    longer = OmegaConf.merge(cfg, {"trainer": {"total_steps": 5}})
    assert finished_summary(longer, tmp_path) is None  # a longer run resumes instead
    assert finished_summary(OmegaConf.merge(cfg, {"trainer": {"seed": 2}}), tmp_path) is None
    assert (
        finished_summary(OmegaConf.merge(cfg, {"trainer": {"resume": "never"}}), tmp_path) is None
    )


# --- real sweeps of 2-process jobs on submitit's local executor ------------------------------


def sweep_cli(sweep: Path, *extra: str) -> list[str]:
    return [*LOCAL_SPMD, "trainer.seed=1,2", *SPMD_RUN, f"hydra.sweep.dir={sweep}", *extra]


SPMD_ENV = {"OMP_NUM_THREADS": "1"}


@pytest.mark.slow
def test_a_sweep_of_two_process_jobs_writes_both_runs_and_the_summary(tmp_path, cache_dir):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "or1-train", sweep_cli(sweep, "trainer.total_steps=3"), tmp_path, SPMD_ENV, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    for job, seed in ((0, 1), (1, 2)):
        run = sweep / str(job)
        metrics = [m for m in read_jsonl(run / "metrics.jsonl") if m["step"] > 0]
        assert [m["step"] for m in metrics] == [1, 2, 3]
        for m in metrics:  # both ranks of the job generated: two engines, 8 samples each
            assert m["rollout/engines"] == 2
            assert m["rollout/engine0_samples"] == m["rollout/engine1_samples"] == 8
        assert f"seed: {seed}" in (run / ".hydra" / "config.yaml").read_text()
        assert json.loads((run / "summary.json").read_text())["steps"] == 3
        assert not (run / "job_status.json").exists()
    with open(sweep / "sweep_summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["run"], r["status"], r["trainer.seed"], r["steps"]) for r in rows] == [
        ("0", "done", "1", "3"),
        ("1", "done", "2", "3"),
    ]
    md = (sweep / "sweep_summary.md").read_text().splitlines()
    assert md[0].startswith("| run | status | trainer.seed | steps |")
    assert md[2].startswith("| 0 | done | 1 | 3 |") and md[3].startswith("| 1 | done | 2 | 3 |")


def _fds(pid: str) -> list[str]:
    try:
        return [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return []


def _environ(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def _children(pid: str) -> list[str]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        found = [Path(f"/proc/{pid}/task/{t}/children").read_text().split() for t in tasks]
    except OSError:
        return []
    kids = [c for group in found for c in group]
    return kids + [g for c in kids for g in _children(c)]


def ranks_writing(path: Path, mark: str) -> list[str]:
    """The processes of this test (``OR1_TEST_MARK``) that hold ``path`` open: the ranks of
    the job whose run folder it is (each rank logs to the run folder's train.log)."""
    pids = [
        p for p in os.listdir("/proc") if p.isdigit() and f"OR1_TEST_MARK={mark}" in _environ(p)
    ]
    return [p for p in pids if str(path) in _fds(p)]


@pytest.mark.slow
def test_a_killed_job_resumes_when_the_same_command_runs_again(tmp_path, cache_dir):
    sweep, mark = tmp_path / "sweep", uuid.uuid4().hex
    args = sweep_cli(sweep, "trainer.total_steps=20", "trainer.save_every=4")
    first = subprocess.Popen(
        [str(BIN / "or1-train"), *args],
        cwd=tmp_path,
        env={**os.environ, **SPMD_ENV, "OR1_TEST_MARK": mark},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        log, saved = sweep / "1" / "train.log", sweep / "1" / "checkpoints" / "step_4"
        deadline = time.time() + 600
        ranks: list[str] = []
        while len(ranks) < 2 or not (saved / "manifest.json").is_file():
            assert first.poll() is None and time.time() < deadline, "the sweep ended early"
            ranks = ranks if len(ranks) == 2 else ranks_writing(log, mark)
            time.sleep(0.05)
        for pid in [*ranks, *(c for r in ranks for c in _children(r))]:  # job 1 dies mid-run
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        _, err = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert first.returncode == 2, err[-4000:]
    line = assert_one_line_error(
        subprocess.CompletedProcess(args, first.returncode, "", err),
        "1 of 2 sweep jobs did not finish: #1 (trainer.seed=2) failed:",
        "run the same command again to resume them",
    )
    killed_at = max(m["step"] for m in read_jsonl(sweep / "1" / "metrics.jsonl"))
    assert 4 <= killed_at < 20, line
    status = json.loads((sweep / "1" / "job_status.json").read_text())
    assert status["status"] == "failed" and status["job"] == 1
    md = (sweep / "sweep_summary.md").read_text().splitlines()
    assert md[2].startswith("| 0 | done | 1 |") and md[3].startswith("| 1 | failed | 2 |")
    job0 = (sweep / "0" / "metrics.jsonl").read_bytes()

    again = run_cli("or1-train", args, tmp_path, SPMD_ENV, timeout=900)
    assert again.returncode == 0, again.stderr[-4000:]
    assert (sweep / "0" / "metrics.jsonl").read_bytes() == job0  # finished: not run again
    assert (
        "already holds this run (20 steps, summary.json)" in (sweep / "0" / "train.log").read_text()
    )
    log1 = (sweep / "1" / "train.log").read_text()
    resumed = [ln for ln in log1.splitlines() if "resumed from" in ln]
    assert resumed and "(step " in resumed[-1]
    from_step = int(resumed[-1].rsplit("(step ", 1)[1].rstrip(")"))
    assert 4 <= from_step <= killed_at
    steps = [m["step"] for m in read_jsonl(sweep / "1" / "metrics.jsonl")]
    assert steps[-1] == 20 and set(steps) == set(range(21))
    assert [m["rollout/engines"] for m in read_jsonl(sweep / "1" / "metrics.jsonl")[-3:]] == [2] * 3
    assert json.loads((sweep / "1" / "summary.json").read_text())["steps"] == 20
    assert not (sweep / "1" / "job_status.json").exists()
    with open(sweep / "sweep_summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["run"], r["status"], r["steps"]) for r in rows] == [
        ("0", "done", "20"),
        ("1", "done", "20"),
    ]
