"""Multi-process (SPMD) launches: ``torchrun --nproc-per-node N or1-train ...``, or the tasks of
a scheduler's job (a sweep on Hydra's submitit launcher, ``srun``), one rank per task.

Every rank runs the same trainer loop on its own share of the step: its rollout engine
generates the prompts dealt to it, its verifiers score them, and its learner shard trains on
the sequences the token-balanced split gives it (:mod:`or1.rl.dp_balance`). What must be global
travels as reductions of scalars or small objects through the helpers here; rank 0 alone
writes logs and the run folder's files.

Every function is the single-process answer when ``WORLD_SIZE`` is unset or 1 (and no job
launch is detected), so the one-process path never touches torch.distributed.

Without torchrun's variables, :func:`job_launch` reads the rank from the job's environment:
submitit's local executor (``SUBMITIT_LOCAL_*``, one machine) or a SLURM job step (``srun``,
which submitit's SLURM executor uses: ``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS``, ...), with
the rendezvous on the job's first node at a port derived from the job id;
:func:`adopt_job_launch` exports it as torchrun's variables, which torch.distributed
(``env://``) and the engines read. No scheduler package is imported here.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from or1.core.errors import ConfigError

_control: Any = None
"""A gloo group over every rank for pickled objects and scalars (set by :func:`init`)."""

_side: tuple[Any, int] | None = None
"""``(group, size)`` of the side this rank runs on in an asynchronous launch (rollout ranks
or learner ranks, :func:`side`): the helpers below then reduce over that side only."""

TORCHRUN_VARIABLES = (
    "RANK",
    "LOCAL_RANK",
    "WORLD_SIZE",
    "LOCAL_WORLD_SIZE",
    "MASTER_ADDR",
    "MASTER_PORT",
)
"""What torchrun sets for each rank (and :func:`adopt_job_launch` sets for a job's task)."""

RENDEZVOUS_PORTS = (20000, 30000)
"""The range of a job launch's rendezvous port (below Linux's ephemeral ports, 32768+)."""


@dataclass(frozen=True)
class JobLaunch:
    """This process's place in a multi-task job started by a scheduler instead of torchrun:
    ``source`` is ``"submitit-local"`` or ``"slurm"``; ``per_node_key`` names what sets the
    tasks per node (for error messages)."""

    source: str
    rank: int
    local_rank: int
    world_size: int
    local_world_size: int
    master_addr: str
    master_port: int
    job_id: str
    per_node_key: str = "hydra.launcher.tasks_per_node"

    def torchrun_env(self) -> dict[str, str]:
        """The job's rank as torchrun's variables."""
        return {
            "RANK": str(self.rank),
            "LOCAL_RANK": str(self.local_rank),
            "WORLD_SIZE": str(self.world_size),
            "LOCAL_WORLD_SIZE": str(self.local_world_size),
            "MASTER_ADDR": self.master_addr,
            "MASTER_PORT": str(self.master_port),
        }


def rendezvous_port(job_id: str) -> int:
    """The rendezvous port of a job: a function of its id alone, so every task of the job
    (on every node) computes the same one and concurrent jobs rarely share one."""
    low, high = RENDEZVOUS_PORTS
    digest = int(hashlib.sha256(job_id.encode()).hexdigest()[:12], 16)
    return low + digest % (high - low)


def first_host(nodelist: str) -> str:
    """The first host of a SLURM node list: ``gpu-[003-004,007],cpu1`` -> ``gpu-003``."""
    first = re.split(r",(?![^\[]*\])", nodelist.strip(), maxsplit=1)[0]
    m = re.match(r"^([^\[]*)\[([^\]]+)\](.*)$", first)
    if m is None:
        return first
    prefix, ranges, rest = m.groups()
    start = ranges.split(",")[0].split("-")[0]
    return prefix + start + (first_host(rest) if "[" in rest else rest)


def tasks_on_node(tasks_per_node: str, node: int) -> int | None:
    """Tasks on node ``node`` from SLURM's ``SLURM_STEP_TASKS_PER_NODE`` format
    (``8(x2)``, ``2,1``, ``4(x2),3``); None when it cannot be read."""
    counts: list[int] = []
    for item in tasks_per_node.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", item)
        if m is None:
            return None
        counts += [int(m.group(1))] * int(m.group(2) or 1)
    return counts[node] if 0 <= node < len(counts) else None


def _int(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    value = env.get(name)
    if value is None or value == "":
        if default is None:
            raise ConfigError(f"{name} is not set in this job's environment")
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name}={value} in this job's environment is not a number") from None


def job_launch(env: Mapping[str, str] | None = None) -> JobLaunch | None:
    """This process's rank in a multi-task job, read from ``env`` (default ``os.environ``):
    submitit's local executor (``SUBMITIT_EXECUTOR=local``: ``SUBMITIT_LOCAL_GLOBALID``,
    ``_LOCALID``, ``_NTASKS``, ``_JOB_ID``; rendezvous on 127.0.0.1) or a SLURM job step
    (``SLURM_STEP_NUM_TASKS`` is set by ``srun``, not in a batch script: ``SLURM_PROCID``,
    ``SLURM_LOCALID``, ``SLURM_NODEID``, ``SLURM_STEP_TASKS_PER_NODE``, the first host of
    ``SLURM_STEP_NODELIST`` / ``SLURM_JOB_NODELIST``, ``SLURM_JOB_ID``). None under
    torchrun (``WORLD_SIZE`` is set: its variables rule) and outside a job."""
    env = os.environ if env is None else env
    if env.get("WORLD_SIZE"):
        return None
    if env.get("SUBMITIT_EXECUTOR") == "local" and env.get("SUBMITIT_LOCAL_NTASKS"):
        world = _int(env, "SUBMITIT_LOCAL_NTASKS")
        job_id = env.get("SUBMITIT_LOCAL_JOB_ID", "local")
        return JobLaunch(
            source="submitit-local",
            rank=_int(env, "SUBMITIT_LOCAL_GLOBALID", 0),
            local_rank=_int(env, "SUBMITIT_LOCAL_LOCALID", 0),
            world_size=world,
            local_world_size=world,  # the local executor runs on one machine
            master_addr="127.0.0.1",
            master_port=rendezvous_port(f"local-{job_id}"),
            job_id=job_id,
        )
    if env.get("SLURM_STEP_NUM_TASKS") and env.get("SLURM_PROCID"):
        world = _int(env, "SLURM_STEP_NUM_TASKS")
        nodes = _int(env, "SLURM_STEP_NUM_NODES", _int(env, "SLURM_JOB_NUM_NODES", 1))
        per_node = tasks_on_node(
            env.get("SLURM_STEP_TASKS_PER_NODE", ""), _int(env, "SLURM_NODEID", 0)
        )
        nodelist = (
            env.get("SLURM_STEP_NODELIST")
            or env.get("SLURM_JOB_NODELIST")
            or env.get("SLURM_NODELIST")
            or "127.0.0.1"
        )
        job_id = f"{env.get('SLURM_JOB_ID', '0')}.{env.get('SLURM_STEP_ID', '0')}"
        return JobLaunch(
            source="slurm",
            rank=_int(env, "SLURM_PROCID"),
            local_rank=_int(env, "SLURM_LOCALID", 0),
            world_size=world,
            local_world_size=per_node or max(1, world // max(1, nodes)),
            master_addr=first_host(nodelist),
            master_port=rendezvous_port(f"slurm-{job_id}"),
            job_id=job_id,
            per_node_key=(
                "hydra.launcher.tasks_per_node"
                if env.get("SUBMITIT_EXECUTOR")
                else "srun --ntasks-per-node"
            ),
        )
    return None


def adopt_job_launch(env: MutableMapping[str, str] | None = None) -> JobLaunch | None:
    """Export a job launch of several tasks (:func:`job_launch`) as torchrun's variables in
    ``env`` (default ``os.environ``), so that :func:`init` and the engines find them; returns
    it (None, and ``env`` untouched, under torchrun, outside a job, or for a one-task job)."""
    env = os.environ if env is None else env
    job = job_launch(env)
    if job is None or job.world_size <= 1:
        return None
    env.update(job.torchrun_env())
    return job


def _initialised() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Processes of this launch: torch.distributed's world if initialised, else ``WORLD_SIZE``,
    else the job's tasks (:func:`job_launch`), else 1."""
    if _initialised():
        return dist.get_world_size()
    if os.environ.get("WORLD_SIZE"):
        return int(os.environ["WORLD_SIZE"])
    job = job_launch()
    return job.world_size if job is not None else 1


def rank() -> int:
    """This process's global rank: torch.distributed's, else ``RANK``, else the job task's
    (:func:`job_launch`), else 0."""
    if _initialised():
        return dist.get_rank()
    if os.environ.get("WORLD_SIZE") or os.environ.get("RANK"):
        return int(os.environ.get("RANK", "0") or 0)
    job = job_launch()
    return job.rank if job is not None else 0


def is_main() -> bool:
    """True on the rank that writes logs and the run folder's files (rank 0)."""
    return rank() == 0


def multi() -> bool:
    """True in a launch of more than one process (after :func:`init`); inside :func:`side`,
    true when that side has more than one rank."""
    if _side is not None:
        return _side[1] > 1
    return _initialised() and dist.get_world_size() > 1


def init(timeout_s: float) -> None:
    """Join the launch's default process group (``env://``) when ``WORLD_SIZE > 1``: NCCL on
    GPU machines (each rank on GPU ``LOCAL_RANK``), gloo otherwise. ``timeout_s``
    (``trainer.dist_timeout_s``) bounds every collective wait, so a dead or stuck rank ends
    the launch instead of hanging it. The group exists before any engine is built: vLLM's
    ``external_launcher`` takes it as its world.

    Pickled objects and scalar reductions travel on a gloo group of their own on any backend
    (host memory, not accelerator memory)."""
    global _control
    job = adopt_job_launch()
    if world_size() <= 1 or _initialised():
        return
    if torch.cuda.is_available():
        check_gpus_per_node(torch.cuda.device_count(), job)
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "nccl"
    else:
        backend = "gloo"
    timeout = datetime.timedelta(seconds=timeout_s)
    dist.init_process_group(backend, timeout=timeout)
    _control = dist.new_group(backend="gloo", timeout=timeout)


def close() -> None:
    """Leave the process groups of :func:`init` once every rank got here: a group torn down
    by the interpreter's exit while another rank still talks on it can abort the process
    ("terminate called without an active exception"). No-op in a single process."""
    global _control
    if not _initialised():
        return
    barrier()
    dist.destroy_process_group()
    _control = None


def check_gpus_per_node(gpus: int, job: JobLaunch | None = None) -> None:
    """Each rank of a GPU launch needs a GPU of its own: more ranks on this node
    (``LOCAL_WORLD_SIZE``) than the ``gpus`` it sees is a ConfigError naming what set them."""
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE") or 1)
    if per_node <= gpus:
        return
    key = job.per_node_key if job is not None else "torchrun --nproc-per-node"
    raise ConfigError(
        f"{key}={per_node} ranks on this node but it has {gpus} GPU(s) visible: each rank needs "
        "a GPU of its own"
    )


def control_group() -> Any:
    """The gloo group over every rank (host-memory traffic on any backend); inside
    :func:`side`, that side's gloo group."""
    if _side is not None:
        return _side[0]
    return bridge_group()


def bridge_group() -> Any:
    """The gloo group over every rank, also inside :func:`side` (what the two sides of an
    asynchronous launch exchange travels on it)."""
    return _control if _control is not None else dist.group.WORLD


def side_groups(first: int) -> tuple[Any, Any]:
    """Collective: gloo groups of ranks ``0 .. first - 1`` and ``first .. world - 1`` (every
    rank creates both, in this order, as torch.distributed requires)."""
    world = dist.get_world_size()
    low = dist.new_group(ranks=list(range(first)), backend="gloo")
    high = dist.new_group(ranks=list(range(first, world)), backend="gloo")
    return low, high


@contextlib.contextmanager
def side(group: Any, size: int) -> Iterator[None]:
    """Within the block, :func:`all_reduce`, :func:`all_gather_object`, :func:`barrier` and
    :func:`multi` see only the ranks of ``group`` (``size`` of them): one side of an
    asynchronous launch (:mod:`or1.rl.async_train`) runs the trainer's pieces among its own
    ranks while the other side does something else."""
    global _side
    before, _side = _side, (group, size)
    try:
        yield
    finally:
        _side = before


def broadcast_object(obj: Any = None, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (pickled); ``obj`` itself in a single process."""
    if not multi():
        return obj
    box = [obj if dist.get_rank() == src else None]
    dist.broadcast_object_list(box, src=src, group=control_group())
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process). For small
    objects only: metrics, lengths, per-problem results."""
    if not multi():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj, group=control_group())
    return out


def all_reduce(values: Sequence[float], op: str = "sum") -> list[float]:
    """Element-wise ``sum``, ``max`` or ``min`` of ``values`` over every rank (float64)."""
    if not multi():
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64)
    ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX, "min": dist.ReduceOp.MIN}
    dist.all_reduce(t, op=ops[op], group=control_group())
    return t.tolist()


def barrier() -> None:
    """Wait for every rank; no-op in a single process."""
    if multi():
        dist.barrier(group=control_group())


@contextlib.contextmanager
def main_first() -> Iterator[None]:
    """Rank 0 runs the block first (it may fill a shared cache: the model, the data), the
    other ranks after it has finished (and then find the cache filled)."""
    if multi() and not is_main():
        barrier()
    yield
    if multi() and is_main():
        barrier()


@dataclass(frozen=True)
class EngineLayout:
    """Where this rank's rollout engine sits: ``engines = world / tensor_parallel_size``
    engines, engine ``index`` spanning ranks ``index * tp .. index * tp + tp - 1``; the
    ``leader`` (first rank of the engine) hands the engine's samples on, the others generate
    the same samples with it and contribute none."""

    index: int = 0
    engines: int = 1
    tensor_parallel_size: int = 1

    @property
    def leader(self) -> bool:
        return rank() % self.tensor_parallel_size == 0


def engine_layout(tensor_parallel_size: int) -> EngineLayout:
    """The rollout layout of this launch; a size that does not divide the world is a
    ConfigError naming ``rollout.tensor_parallel_size``."""
    world, tp = world_size(), int(tensor_parallel_size)
    if tp < 1 or world % tp:
        raise ConfigError(
            f"rollout.tensor_parallel_size={tp} does not divide the {world} process(es) of this "
            "launch (world = engines x rollout.tensor_parallel_size)"
        )
    return EngineLayout(rank() // tp, world // tp, tp)


def deal(items: Sequence[Any], layout: EngineLayout) -> list[Any]:
    """Engine ``layout.index``'s share of ``items`` (whole prompts): items ``index``,
    ``index + engines``, ... A pure function of the list and the layout, so a resumed run
    deals the same."""
    return list(items[layout.index :: layout.engines])


def config_digest(config: dict[str, Any]) -> str:
    """A short SHA-256 of a resolved config (keys sorted), for comparing ranks."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_same_config(config: dict[str, Any], ignore: Sequence[str] = ()) -> None:
    """Every rank must run the same config: compare digests (the dotted keys in ``ignore``,
    which may differ per node, left out) and, if not, leave the process groups (:func:`close`)
    and raise a ConfigError on every rank, naming the first differing key."""
    if not multi():
        return
    mine = json.loads(json.dumps(config, default=str))  # a deep copy to prune
    for key in ignore:
        *path, last = key.split(".")
        node = mine
        for part in path:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(last, None)
    digests = all_gather_object(config_digest(mine))
    if len(set(digests)) == 1:
        return
    configs = all_gather_object(mine)
    other = next(r for r, d in enumerate(digests) if d != digests[0])
    diff = _first_difference(configs[0], configs[other])
    close()  # every rank raises here: leave the groups together, not at the interpreter's exit
    raise ConfigError(
        f"the ranks of this launch disagree on the config: {diff} differs between rank 0 and "
        f"rank {other} (start every rank with the same overrides)"
    )


def _first_difference(a: Any, b: Any, prefix: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{prefix}{key}.")
    return prefix.rstrip(".") or "<root>"
