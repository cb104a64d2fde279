"""A training checkpoint as a Hugging Face folder, for evaluating it like any model.

A checkpoint (``<run>/checkpoints/step_<N>/``) holds the learner's state, whose format is the
learner plugin's own; so the export rebuilds that run's learner from the run's saved config
(``<run>/.hydra/config.yaml``: model source, learner section), loads the state into it and
asks it for ``save_pretrained``. The result is cached: an export whose ``.or1-source`` names
the same checkpoint (path and manifest) is reused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path

from or1.core.errors import ConfigError, first_line
from or1.core.interfaces import BuildContext
from or1.core.registry import Registry
from or1.rl import checkpoint

log = logging.getLogger("or1.export")

SOURCE_FILE = ".or1-source"


def is_checkpoint(path: Path) -> bool:
    """Whether ``path`` looks like a checkpoint folder (it has a manifest)."""
    return (path / checkpoint.MANIFEST).is_file()


def run_config_of(ckpt: Path) -> Path:
    """The saved config of the run that wrote ``ckpt`` (``<run>/.hydra/config.yaml``)."""
    return ckpt.resolve().parent.parent / ".hydra" / "config.yaml"


def export_checkpoint(ckpt: Path, out: Path, registry: Registry) -> Path:
    """Write checkpoint ``ckpt`` as a Hugging Face folder at ``out`` (or reuse an earlier
    export of the same checkpoint) and return ``out``. Raises ConfigError naming ``ckpt`` when
    it is damaged or its run config is missing."""
    from omegaconf import OmegaConf

    from or1.launch.prepare import resolve_model

    problem = checkpoint.verify(ckpt)
    if problem:
        raise ConfigError(f"model.path={ckpt}: not a usable checkpoint ({problem})")
    source = (
        f"{ckpt.resolve()} {hashlib.sha256((ckpt / checkpoint.MANIFEST).read_bytes()).hexdigest()}"
    )
    if (out / "config.json").is_file() and (out / SOURCE_FILE).is_file():
        if (out / SOURCE_FILE).read_text() == source:
            return out
    cfg_file = run_config_of(ckpt)
    if not cfg_file.is_file():
        raise ConfigError(
            f"model.path={ckpt}: a checkpoint is evaluated with its run's config, {cfg_file} not found"
        )
    rc = OmegaConf.load(cfg_file)
    try:
        learner_cfg, _ = rc.learner, rc.learner.name  # not an or1 run config: no learner
        ctx = BuildContext.of_run(rc, out.parent, Path())  # model path filled in below
    except Exception as exc:
        raise ConfigError(f"{cfg_file}: not an or1 run config ({first_line(exc)})") from None
    base = resolve_model(rc, registry, ctx.cache_dir)
    ctx = dataclasses.replace(ctx, model_path=base)
    log.info("exporting checkpoint %s (base model %s) to %s", ckpt, base, out)
    learner = registry.build("learner", learner_cfg, ctx)
    try:
        checkpoint.load_learner(ckpt, learner)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    learner.save_pretrained(out)
    (out / SOURCE_FILE).write_text(source)
    return out
