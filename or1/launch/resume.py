"""Resuming a run: which checkpoint to continue (and whether the run folder's settings are
this run's), what a checkpoint holds besides the learner's own state, and restoring it on
every rank; a finished run folder is recognised without building anything."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from or1.core import hook_points
from or1.core.errors import ConfigError
from or1.launch import distributed
from or1.rl import checkpoint

if TYPE_CHECKING:
    from or1.launch.prepare import Run

log = logging.getLogger("or1.resume")


def stateful_attributes() -> list[str]:
    """The :class:`or1.launch.prepare.Components` whose ``state_dict`` goes into ``state.pt`` but the rollout
    engine's, which is kept per rank (the learner has its own file)."""
    return [
        hp.attribute
        for hp in hook_points.HOOK_POINTS
        if hp.stateful and hp in hook_points.run_hook_points() and hp.group != "rollout"
    ]


def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


RESUME_MAY_CHANGE = (
    "trainer.total_steps",
    "trainer.save_every",
    "trainer.keep_checkpoints",
    "trainer.eval_every",
    "trainer.eval_at_start",
    "trainer.export_final",
    "trainer.resume",
    "trainer.cache_dir",
    "trainer.num_threads",
    "trainer.dist_timeout_s",
    "trainer.profile",
    "trainer.profile_steps",
    "trainer.samples_every",
    "trainer.dump_samples",
    "trainer.check_memory",
    "trainer.min_free_disk_gb",
    "trainer.max_nonfinite_steps",
    "trainer.default_loggers",
    "eval.chunk",
    "logger",
)
"""Keys a resumed run may set differently from the run it continues: bookkeeping, logging,
how far it goes; anything else would train the second half of a run with other settings."""


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out |= _flat(value, f"{prefix}.{key}" if prefix else str(key))
        return out
    return {prefix: node}


def check_same_settings(cfg: DictConfig, run_dir: Path) -> None:
    """A run folder resumes only with the settings it was started with (its saved
    ``.hydra/config.yaml``), but for :data:`RESUME_MAY_CHANGE`; one line naming the keys."""
    saved_file = run_dir / ".hydra" / "config.yaml"
    if not saved_file.is_file():
        return
    saved = _flat(OmegaConf.to_container(OmegaConf.load(saved_file), resolve=False))
    now = _flat(OmegaConf.to_container(cfg, resolve=False))  # both as written, unresolved
    free = tuple(RESUME_MAY_CHANGE)
    changed = [
        k
        for k in sorted(set(saved) | set(now))
        if saved.get(k, "<unset>") != now.get(k, "<unset>")
        and not any(k == f or k.startswith(f + ".") for f in free)
    ]
    if changed:
        shown = ", ".join(
            f"{k}={saved.get(k, '<unset>')} -> {now.get(k, '<unset>')}" for k in changed[:3]
        )
        more = f" (and {len(changed) - 3} more)" if len(changed) > 3 else ""
        raise ConfigError(
            f"hydra.run.dir={run_dir} holds a run started with other settings: {shown}{more}; "
            f"resume it with its own settings ({run_dir}/.hydra/overrides.yaml) or choose "
            "another hydra.run.dir"
        )


def finished_summary(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """The ``summary.json`` of a run folder that already holds this whole run, else None: the
    summary, a complete checkpoint at its last step, ``trainer.resume=auto``, the same
    settings (:func:`check_same_settings`) and ``trainer.total_steps`` unset or that step.
    Reads files only (no model, no engine), so a re-submitted sweep skips its finished jobs
    in a second; anything else (a changed setting, a longer run) goes through :func:`prepare`."""
    import json

    path = run_dir / "summary.json"
    if str(cfg.trainer.resume) != "auto" or not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except ValueError:
        return None
    steps = summary.get("steps") if isinstance(summary, dict) else None
    if not isinstance(steps, int) or cfg.trainer.total_steps not in (None, steps):
        return None
    root = run_dir / "checkpoints"
    saved = checkpoint.list_steps(root)
    if (
        not saved
        or saved[-1] != steps
        or not (root / f"step_{steps}" / checkpoint.MANIFEST).is_file()
    ):
        return None
    try:
        check_same_settings(cfg, run_dir)
    except ConfigError:
        return None  # prepare() says what differs
    return summary


def find_resume_checkpoint(cfg: DictConfig, run_dir: Path) -> Path | None:
    mode = str(cfg.trainer.resume)
    if mode == "never":
        if checkpoint.list_steps(run_dir / "checkpoints"):
            raise ConfigError(
                f"{run_dir} already holds checkpoints; use trainer.resume=auto to continue that run "
                "or choose another hydra.run.dir"
            )
        return None
    if mode == "auto":  # checksums read once, on rank 0 (the folder is shared)
        latest = checkpoint.latest(run_dir / "checkpoints") if distributed.is_main() else None
        found = distributed.broadcast_object(None if latest is None else str(latest))
        return None if found is None else Path(found)
    path = Path(mode).expanduser()
    problem = checkpoint.verify(path) if path.is_dir() else "not a folder"
    if problem:
        raise ConfigError(f"trainer.resume={mode}: not a usable checkpoint ({problem})")
    return path


def checkpoint_parts(run: Run, step: int) -> dict[str, Any]:
    """What a checkpoint holds besides a sharded learner's ``learner/`` folder; collective
    (every rank calls it). The learner's ``state_dict`` (as it gives it on rank 0) unless its
    checkpoints are sharded; the trainer's state once (the sampler, stage schedule
    and controllers are the same on every rank); each rank's own RNG and rollout-engine state
    under ``ranks`` (gathered: a few kilobytes each). Only rank 0's answer is written."""
    c = run.components
    learner = None if c.learner.sharded_checkpoints else c.learner.state_dict()
    ranks = distributed.all_gather_object({"rng": rng_state(), "rollout": c.rollout.state_dict()})
    return {
        **({"learner": learner} if learner is not None else {}),
        "state": {
            "step": step,
            "sampler": run.sampler.state_dict(),
            "components": {name: getattr(c, name).state_dict() for name in stateful_attributes()},
            "ranks": ranks,
            "start_metrics": run.start_metrics,
        },
    }


def restore(run: Run, path: Path) -> None:
    """Every rank reads the checkpoint (a sharded learner's slices of ``learner/``, or
    ``learner.pt`` memory-mapped: each rank keeps only its shards) and takes its own RNG and
    engine state; a checkpoint of another world size gives every rank rank 0's."""
    state = checkpoint.load(path, "state")
    try:
        checkpoint.load_learner(path, run.components.learner)
    except ValueError as exc:
        raise ConfigError(f"trainer.resume: {exc} (learner={run.cfg.learner.name})") from None
    for name in stateful_attributes():
        getattr(run.components, name).load_state_dict(state["components"][name])
    ranks = state["ranks"]
    mine = ranks[distributed.rank()] if len(ranks) == distributed.world_size() else ranks[0]
    run.components.rollout.load_state_dict(mine["rollout"])
    run.sampler.load_state_dict(state["sampler"])
    set_rng_state(mine["rng"])
    run.start_step = int(state["step"])
    run.start_metrics = state.get("start_metrics")
    run.resumed_from = path
    # the engine must serve the restored policy
    run.components.rollout.update_weights(run.components.learner.named_weights())
    log.info("resumed from %s (step %d)", path, run.start_step)
