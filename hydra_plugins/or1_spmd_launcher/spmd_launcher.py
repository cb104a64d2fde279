"""or1's Hydra launchers over the submitit plugin: a sweep whose every job is one SPMD launch.

A job of ``hydra.launcher.nodes x tasks_per_node`` tasks is that many processes, each running
the Hydra job (or1-train's task function) on the same run folder; each task finds its rank in
the job's environment (:func:`or1.launch.distributed.job_launch`), so the job is one launch of that
many ranks, and rank 0 alone writes the run folder.

Besides what the plugin's launchers do (submit every job as one array, wait, hand rank 0's
result to Hydra), these wait for every job even when one ends unfinished, record how it ended
in its run folder (``job_status.json``: ``failed`` or ``preempted``, read by the sweep
summary), write the summary, and end such a sweep with one line naming the unfinished jobs
(exit status 2) instead of a traceback. Running the same command again re-submits every job:
finished ones return their summary without training, the others resume from their last
checkpoint (``trainer.resume=auto``).

The presets ``conf/hydra/launcher/local_spmd.yaml``, ``slurm_spmd.yaml`` and ``slurm_gpu.yaml``
select these classes. Hydra accepts launchers only from the ``hydra_plugins`` namespace, hence
this package; or1-train registers the classes with Hydra itself (:func:`or1.commands.sweep_jobs.
register_launchers`): Hydra's scan walks the namespace's folders, and an editable install of
or1 adds none. Without
``hydra-submitit-launcher`` the module defines nothing (Hydra's scan imports every plugin
module, and or1-train reports the missing package in one line before).
"""

from __future__ import annotations

import logging
import os
import re
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from omegaconf import OmegaConf, open_dict

from or1.commands.sweep_summary import (
    DEFAULT_METRICS,
    clear_job_status,
    record_job_status,
    run_status,
    write_summary,
)
from or1.core.errors import first_line

try:
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher
except ImportError:  # hydra-submitit-launcher is optional (pip install 'or1[slurm]')
    BaseSubmititLauncher = None

log = logging.getLogger("or1.submitit_launcher")

STOPPED_STATES = (
    "PREEMPTED",
    "TIMEOUT",
    "NODE_FAIL",
    "CANCELLED",
    "DEADLINE",
    "BOOT_FAIL",
    "REQUEUED",
    "INTERRUPTED",  # submitit's local executor: the job's controller was killed by a signal
)
"""Scheduler states of a job stopped from outside (recorded as ``preempted``)."""

ERROR_PREFIX = "or1: error: "
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b")


class JobEnd(NamedTuple):
    """How one job of the sweep ended: ``status`` is ``done``, ``failed`` or ``preempted``.
    (No dataclass here: Hydra's plugin scan runs this module outside ``sys.modules``.)"""

    number: int
    overrides: list[str]
    status: str
    reason: str = ""
    job_return: JobReturn | None = None


def or1_error_line(logs: Sequence[str | None]) -> str | None:
    """The last ``or1: error:`` line of the first task log that has one (without the prefix)."""
    for text in logs:
        lines = [ln.strip() for ln in (text or "").splitlines()]
        found = [ln for ln in lines if ln.startswith(ERROR_PREFIX)]
        if found:
            return found[-1][len(ERROR_PREFIX) :]
    return None


def stopped_state(state: str) -> bool:
    return state.upper().startswith(STOPPED_STATES)


def exception_line(logs: Sequence[str | None]) -> str | None:
    """The last line naming an exception (``ValueError: ...``) in the first task log that has
    one."""
    for text in logs:
        lines = [ln.strip() for ln in (text or "").splitlines()]
        found = [ln for ln in lines if EXCEPTION_LINE.match(ln)]
        if found:
            return found[-1]
    return None


def job_end(job: Any, number: int, overrides: list[str]) -> JobEnd:
    """Wait for ``job`` (a submitit job of one or several tasks) and say how it ended: rank
    0's Hydra job return, else the reason from the tasks' logs (an ``or1: error:`` line, an
    exception) or the scheduler's state."""
    from submitit.core.utils import UncompletedJobError

    job.wait()
    first = job.task(0)
    try:
        ret = first.result()
    except UncompletedJobError:  # no result: killed, an or1 error (exit 2), a crash
        ret = None
    if isinstance(ret, JobReturn) and ret.status == JobStatus.COMPLETED:
        value = ret.return_value
        if isinstance(value, dict) and value.get("stopped_by"):
            why = f"stopped by {value['stopped_by']} after step {value.get('steps')}"
            return JobEnd(number, overrides, "preempted", why, ret)
        return JobEnd(number, overrides, "done", "", ret)
    logs = [job.task(k).stderr() for k in range(job.num_tasks)]
    reason = or1_error_line(logs)
    if isinstance(ret, JobReturn):  # the task function raised; Hydra kept the exception
        try:
            ret.return_value  # noqa: B018 - raises the task's exception
        except Exception as exc:
            reason = reason or f"{type(exc).__name__}: {first_line(exc)}"
        return JobEnd(number, overrides, "failed", reason or "failed")
    state = str(getattr(job, "state", "UNKNOWN"))
    reason = reason or exception_line(logs)
    if reason is None:
        reason = f"ended without a result (scheduler state {state}; killed?)"
    reason = f"{reason}; log: {first.paths.stderr}"
    return JobEnd(number, overrides, "preempted" if stopped_state(state) else "failed", reason)


def stop_gracefully_on(signum: int) -> None:
    """Make ``signum`` ask for or1's graceful stop: the process sends itself SIGTERM, which the
    trainer turns into a checkpoint and a return after the current step (``stopped_by``, a
    ``preempted`` job), on every rank at the same step. Used for submitit's warning before
    the time limit (``SUBMITIT_PREEMPT_SIGNAL``, default USR2, ``signal_delay_s`` ahead),
    instead of submitit's handler, which requeues or raises in the middle of a step."""

    def handler(sig: int, frame: Any) -> None:
        log.warning(
            "%s: the job nears its time limit; stopping after this step", signal.Signals(sig).name
        )
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signum, handler)


def time_limit_signal() -> int:
    return int(signal.Signals["SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")])


def swept_overrides(job_overrides: Sequence[Sequence[str]]) -> list[list[str]]:
    """Each job's overrides that differ between jobs (all of them for a one-job sweep)."""
    given = [dict(o.split("=", 1) if "=" in o else (o, "") for o in ov) for ov in job_overrides]
    keys = {k for g in given for k in g}
    varying = {k for k in keys if len({g.get(k) for g in given}) > 1}
    return [[f"{k}={v}" for k, v in g.items() if k in varying or not varying] for g in given]


if BaseSubmititLauncher is not None:

    class SpmdSubmititLauncher(BaseSubmititLauncher):
        """The launch described in this module, over one of the plugin's executors."""

        def _executor(self) -> Any:
            import submitit

            params = dict(self.params)
            folder = params.pop("submitit_folder")
            setup: dict[str, Any] = {}
            if "max_num_timeout" in params:  # an executor argument, not a job parameter
                setup[f"{self._EXECUTOR}_max_num_timeout"] = params.pop("max_num_timeout")
            executor = submitit.AutoExecutor(folder=folder, cluster=self._EXECUTOR, **setup)
            shared = set(OmegaConf.structured(BaseQueueConf).keys())
            executor.update_parameters(
                **{k if k in shared else f"{self._EXECUTOR}_{k}": v for k, v in params.items()}
            )
            return executor

        def _run_dir(self, overrides: Sequence[str], number: int) -> Path | None:
            """The run folder of job ``number`` (what Hydra's ``run_job`` will make in the
            task), or None when it depends on what only the task knows."""
            assert self.hydra_context is not None and self.config is not None
            try:
                cfg = self.hydra_context.config_loader.load_sweep_config(
                    self.config, list(overrides)
                )
                with open_dict(cfg.hydra.job):
                    cfg.hydra.job.num = number
                return Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)
            except Exception as exc:
                log.debug("no run folder for job %d: %s", number, exc)
                return None

        def _write_summary(self, sweep_dir: Path) -> None:
            assert self.config is not None
            callbacks = self.config.hydra.get("callbacks") or {}
            summary = callbacks.get("sweep_summary")
            if summary is None:
                return
            try:
                write_summary(sweep_dir, tuple(summary.get("metrics", DEFAULT_METRICS)))
            except Exception as exc:  # a summary must never fail the sweep it describes
                log.warning("could not write the sweep summary in %s: %s", sweep_dir, exc)

        def __call__(self, *args: Any, **kwargs: Any) -> JobReturn:
            """In each task of a job: the Hydra job (or1-train's task function), with the
            time-limit warning turned into a graceful stop (:func:`stop_gracefully_on`)."""
            stop_gracefully_on(time_limit_signal())
            return super().__call__(*args, **kwargs)

        def launch(
            self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int
        ) -> Sequence[JobReturn]:
            from or1.cli.common import fail

            assert self.config is not None and job_overrides
            try:
                executor = self._executor()
            except Exception as exc:  # no scheduler here (no srun / sbatch), bad parameters
                fail(f"hydra/launcher: cannot submit the sweep's jobs: {first_line(exc)}")
            sweep_dir = Path(str(self.config.hydra.sweep.dir))
            sweep_dir.mkdir(parents=True, exist_ok=True)
            if "mode" in self.config.hydra.sweep:
                os.chmod(sweep_dir, mode=int(str(self.config.hydra.sweep.mode), 8))
            log.info(f"Submitit '{self._EXECUTOR}' sweep output dir : {sweep_dir}")
            numbers = [initial_job_idx + i for i in range(len(job_overrides))]
            run_dirs = [self._run_dir(o, n) for o, n in zip(job_overrides, numbers, strict=True)]
            for number, overrides, run_dir in zip(numbers, job_overrides, run_dirs, strict=True):
                log.info(f"\t#{number} : {' '.join(filter_overrides(overrides))}")
                if run_dir is not None:
                    clear_job_status(run_dir)  # a new job for this run: not failed (yet)
            state = Singleton.get_state()
            try:
                jobs = executor.map_array(
                    self,
                    [list(o) for o in job_overrides],
                    ["hydra.sweep.dir"] * len(numbers),
                    numbers,
                    [f"job_id_for_{n}" for n in numbers],
                    [state] * len(numbers),
                )
            except Exception as exc:  # sbatch refused the array (partition, account, ...)
                fail(f"hydra/launcher: submitting the sweep's jobs failed: {first_line(exc)}")
            shown = swept_overrides([filter_overrides(o) for o in job_overrides])
            ends = [job_end(j, n, s) for j, n, s in zip(jobs, numbers, shown, strict=True)]
            for i, run_dir in enumerate(run_dirs):
                end = ends[i]
                if end.status != "done" and run_dir is not None and run_status(run_dir) == "done":
                    log.warning("job #%d ended after its run finished: %s", end.number, end.reason)
                    ends[i] = end._replace(status="done")  # summary.json: the run is whole
            for end, job, run_dir, overrides in zip(
                ends, jobs, run_dirs, job_overrides, strict=True
            ):
                if end.status != "done" and run_dir is not None:
                    record_job_status(
                        run_dir, end.status, end.reason, end.number, str(job.job_id), overrides
                    )
            self._write_summary(sweep_dir)
            unfinished = [e for e in ends if e.status != "done"]
            if unfinished:
                parts = [
                    f"#{e.number} ({' '.join(e.overrides)}) {e.status}: {e.reason}"
                    for e in unfinished
                ]
                fail(
                    f"{len(unfinished)} of {len(ends)} sweep jobs did not finish: {'; '.join(parts)}; "
                    f"run the same command again to resume them (trainer.resume=auto; summary: "
                    f"{sweep_dir / 'sweep_summary.md'})"
                )
            return [e.job_return for e in ends if e.job_return is not None]

    class SpmdLocalLauncher(SpmdSubmititLauncher):
        """``hydra/launcher=local_spmd``: every job on this machine (submitit's local executor),
        ``tasks_per_node`` ranks each."""

        _EXECUTOR = "local"

    class SpmdSlurmLauncher(SpmdSubmititLauncher):
        """``hydra/launcher=slurm_spmd`` (and ``slurm_gpu``): every job a SLURM job of ``nodes x
        tasks_per_node`` ranks (an array of ``array_parallelism`` jobs at a time)."""

        _EXECUTOR = "slurm"
