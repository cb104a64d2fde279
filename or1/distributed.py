"""Multi-process (SPMD) launches: ``torchrun --nproc-per-node N or1-train ...``.

Every rank runs ``or1-train``. Rank 0 is the *main* rank: it owns the rollout engine, the
verifier, evaluation, loggers and the trainer's checkpoint files, and drives the learner;
the other ranks only build the learner and answer rank 0's calls (``Learner.serve``).

Every function here is a no-op (or the single-process answer) when ``WORLD_SIZE`` is unset or
1 and torch.distributed is not initialised, so the single-process path never touches it.
"""

from __future__ import annotations

import datetime
import os
from typing import Any

import torch
import torch.distributed as dist

_control: Any = None
"""A gloo group over every rank for rank 0's pickled calls (set by :func:`init`)."""


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
    """True on the rank that runs the trainer loop (rank 0; always true in one process)."""
    return rank() == 0


def init(timeout_s: float) -> None:
    """Join the launch's default process group (``env://``) when ``WORLD_SIZE > 1``: NCCL on
    GPU machines (each rank on GPU ``LOCAL_RANK``), gloo otherwise. ``timeout_s`` bounds every
    collective, including the other ranks' wait while rank 0 samples and evaluates.

    Rank 0's control messages (:func:`broadcast_object`, :func:`barrier`) travel on a gloo
    group of their own, on any backend: pickles stay in host memory instead of accelerator
    memory, and the other ranks' long idle wait for rank 0's next call is not an NCCL
    collective."""
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


def broadcast_object(obj: Any = None, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (pickled); ``obj`` itself in a single process."""
    if not _initialised():
        if world_size() > 1:
            raise RuntimeError("the launch's process group is gone (WORLD_SIZE > 1 but no group)")
        return obj
    if dist.get_world_size() == 1:
        return obj
    box = [obj if dist.get_rank() == src else None]
    dist.broadcast_object_list(box, src=src, group=_control)
    return box[0]


def barrier() -> None:
    """Wait for every rank; no-op in a single process."""
    if _initialised() and dist.get_world_size() > 1:
        dist.barrier(group=_control)
