"""Multi-process (SPMD) launches: ``torchrun --nproc-per-node N or1-train ...``.

Every rank runs the same trainer loop on its own share of the step: its rollout engine
generates the prompts dealt to it, its verifiers score them, and its learner shard trains on
the sequences the token-balanced split gives it (:mod:`or1.dp_balance`). What must be global
travels as reductions of scalars or small objects through the helpers here; rank 0 alone
writes logs and the run folder's files.

Every function is the single-process answer when ``WORLD_SIZE`` is unset or 1, so the
one-process path never touches torch.distributed.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from or1.errors import ConfigError

_control: Any = None
"""A gloo group over every rank for pickled objects and scalars (set by :func:`init`)."""


def _initialised() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Processes of this launch: torch.distributed's world if initialised, else ``WORLD_SIZE``."""
    if _initialised():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    """This process's global rank (0 when not launched by torchrun)."""
    if _initialised():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0") or 0)


def is_main() -> bool:
    """True on the rank that writes logs and the run folder's files (rank 0)."""
    return rank() == 0


def multi() -> bool:
    """True in a launch of more than one process (after :func:`init`)."""
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
    if world_size() <= 1 or _initialised():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        backend = "nccl"
    else:
        backend = "gloo"
    timeout = datetime.timedelta(seconds=timeout_s)
    dist.init_process_group(backend, timeout=timeout)
    _control = dist.new_group(backend="gloo", timeout=timeout)


def control_group() -> Any:
    """The gloo group over every rank (host-memory traffic on any backend)."""
    return _control if _control is not None else dist.group.WORLD


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
    which may differ per node, left out) and raise a ConfigError on every rank, naming the
    first differing key, if not."""
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
