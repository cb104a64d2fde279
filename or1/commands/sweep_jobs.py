"""Sweeps of multi-process jobs: what ``or1-train -m`` checks before a submitit launcher submits
anything, and the registration of or1's launchers with Hydra.

With ``hydra/launcher=local_spmd`` (or ``slurm_spmd``, ``slurm_gpu``) every job of a sweep is
one SPMD launch of ``hydra.launcher.nodes x hydra.launcher.tasks_per_node`` ranks
(``hydra_plugins/or1_spmd_launcher``; each rank finds its place through
:func:`or1.launch.distributed.job_launch`). Before anything is submitted, from the command line alone:
the launcher's packages are installed (:func:`check_launcher_installed`), the job's shape can
hold one rank per GPU (:func:`check_job_shape`), and every run's parallel layout fits the ranks
of a job (:func:`check_run_layout`). Each problem is one ConfigError naming the key.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from or1.core.errors import ConfigError

MULTIRUN_FLAGS = ("-m", "--multirun")
SUBMITIT_BASES = ("submitit_local", "submitit_slurm")
"""The submitit plugin's own launcher configs (``hydra/launcher=...``)."""
SUBMITIT_MODULES = ("submitit", "hydra_plugins.hydra_submitit_launcher")
SPMD_LAUNCHER_MODULE = "hydra_plugins.or1_spmd_launcher.spmd_launcher"
SPMD_LAUNCHERS = ("SpmdLocalLauncher", "SpmdSlurmLauncher")


@dataclass(frozen=True)
class JobShape:
    """The ranks of each job of a sweep on a submitit launcher."""

    launcher: str
    nodes: int
    tasks_per_node: int
    gpus_per_node: int  # 0: none requested
    local: bool  # submitit's local executor: every job on this machine

    @property
    def ranks(self) -> int:
        return self.nodes * self.tasks_per_node

    def describe(self) -> str:
        return (
            f"the {self.ranks} rank(s) of each sweep job (hydra.launcher.nodes={self.nodes} x "
            f"hydra.launcher.tasks_per_node={self.tasks_per_node})"
        )


def is_multirun(argv: Sequence[str]) -> bool:
    return any(a in MULTIRUN_FLAGS for a in argv)


def launcher_choice(argv: Sequence[str]) -> str | None:
    """The ``hydra/launcher=NAME`` of a command line (the last one), None without one."""
    names = [a.split("=", 1)[1] for a in argv if a.startswith("hydra/launcher=")]
    return names[-1] if names else None


def needs_submitit(choice: str) -> bool:
    """True for the submitit plugin's launchers and or1's presets built on them (read from
    ``conf/hydra/launcher/<choice>.yaml``'s defaults)."""
    if choice in SUBMITIT_BASES:
        return True
    import yaml

    preset = resources.files("or1_conf") / "hydra" / "launcher" / f"{choice}.yaml"
    if not preset.is_file():
        return False
    defaults = (yaml.safe_load(preset.read_text()) or {}).get("defaults") or []
    bases = [d for d in defaults if isinstance(d, str) and d != "_self_"]
    return any(b != choice and needs_submitit(b) for b in bases)


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_launcher_installed(argv: Sequence[str]) -> None:
    """A sweep on a submitit launcher needs ``hydra-submitit-launcher`` and ``submitit``: one
    line naming ``hydra/launcher`` and the install command when either is missing."""
    choice = launcher_choice(argv)
    if not is_multirun(argv) or choice is None or not needs_submitit(choice):
        return
    missing = [m.split(".")[-1] for m in SUBMITIT_MODULES if not installed(m)]
    if missing:
        raise ConfigError(
            f"hydra/launcher={choice} needs the submitit launcher, which is not installed "
            f"({', '.join(missing)} missing): pip install 'or1[slurm]' (hydra-submitit-launcher)"
        )


def register_launchers() -> None:
    """Register or1's launcher classes with Hydra (idempotent), when the submitit plugin is
    installed: Hydra's own scan walks the ``hydra_plugins`` namespace's folders, and an editable
    install of or1 adds none."""
    if not all(installed(m) for m in SUBMITIT_MODULES):
        return
    import importlib

    from hydra.core.plugins import Plugins

    module = importlib.import_module(SPMD_LAUNCHER_MODULE)
    for name in SPMD_LAUNCHERS:
        cls = getattr(module, name, None)
        if cls is not None:
            Plugins.instance().register(cls)


def job_shape(launcher: Any, choice: str) -> JobShape | None:
    """The job shape of a composed ``hydra.launcher`` node, None for launchers without tasks
    (basic, joblib)."""
    if "tasks_per_node" not in launcher:
        return None
    try:
        nodes, tasks = int(launcher.nodes), int(launcher.tasks_per_node)
        gpus = int(launcher.get("gpus_per_node") or 0)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"hydra.launcher: {exc}") from None
    local = str(launcher.get("_target_", "")).endswith("LocalLauncher")
    return JobShape(choice, nodes, tasks, gpus, local)


def check_job_shape(shape: JobShape, gpus_here: int) -> None:
    """Every task is one rank with a GPU of its own: tasks per node within the GPUs per node
    (when GPUs are requested), and for the local executor, one node and no more GPUs than this
    machine has (``gpus_here``; 0 on a machine without GPUs, where nothing is checked)."""
    for key, value in (("nodes", shape.nodes), ("tasks_per_node", shape.tasks_per_node)):
        if value < 1:
            raise ConfigError(f"hydra.launcher.{key}={value} must be >= 1")
    if shape.local and shape.nodes > 1:
        raise ConfigError(
            f"hydra.launcher.nodes={shape.nodes}: hydra/launcher={shape.launcher} runs every job "
            "on this machine (one node); use hydra/launcher=slurm_spmd for several"
        )
    if shape.gpus_per_node and shape.tasks_per_node > shape.gpus_per_node:
        raise ConfigError(
            f"hydra.launcher.tasks_per_node={shape.tasks_per_node} is more than "
            f"hydra.launcher.gpus_per_node={shape.gpus_per_node}: each task is one rank and needs "
            "a GPU of its own"
        )
    if shape.local and gpus_here and shape.gpus_per_node > gpus_here:
        raise ConfigError(
            f"hydra.launcher.gpus_per_node={shape.gpus_per_node} (one GPU for each of the "
            f"hydra.launcher.tasks_per_node={shape.tasks_per_node} ranks) is more than the "
            f"{gpus_here} GPU(s) of this machine"
        )


def check_run_layout(cfg: Any, registry: Any, shape: JobShape) -> None:
    """One run's parallel layout against the ranks of a job: a learner that runs in several
    processes when a job has more than one rank, and every ``tensor_parallel_size`` (the
    rollout's, the learner's times its ``context_parallel_size``) dividing the ranks."""
    ranks, where = shape.ranks, shape.describe()
    if ranks > 1:
        learner = registry.get("learner", cfg.learner.name).factory
        if not getattr(learner, "multiprocess", False):
            raise ConfigError(
                f"learner={cfg.learner.name} runs in a single process, not in {where}; use "
                "learner=megatron or hydra.launcher.tasks_per_node=1"
            )
        rollout = registry.get("rollout", cfg.rollout.name).factory
        if getattr(rollout, "owns_process_group", False):
            raise ConfigError(
                f"rollout={cfg.rollout.name} sets up torch.distributed in the trainer's process "
                f"and cannot run in {where}"
            )
    tp = int(cfg.rollout.get("tensor_parallel_size", 1) or 1)
    if tp < 1 or ranks % tp:
        raise ConfigError(f"rollout.tensor_parallel_size={tp} does not divide {where}")
    learner_tp = cfg.learner.get("tensor_parallel_size")
    if learner_tp is not None:
        cp = int(cfg.learner.get("context_parallel_size", 1) or 1)
        size = int(learner_tp) * cp
        if size >= 1 and ranks % size:
            what = f"tensor_parallel_size={learner_tp}" + (
                f" x context_parallel_size={cp}" if cp > 1 else ""
            )
            raise ConfigError(f"learner.{what} does not divide {where}")
