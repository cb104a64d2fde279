"""The Python entry points: ``or1.train`` and ``or1.evaluate``.

They compose the same Hydra config as ``or1-train`` / ``or1-eval`` (the same config groups,
presets, schemas and checks), write the same run folder (``.hydra/`` snapshot, ``train.log``,
``metrics.jsonl``, checkpoints, the final model) and return what the command's task returns::

    import or1

    summary = or1.train(["trainer.total_steps=50", "learner.lr=1e-6"], run_dir="runs/a")
    report = or1.evaluate(["model.path=runs/a/final_model", "eval.k=8"])

Bad input raises :class:`or1.core.errors.Or1Error` (a :class:`~or1.core.errors.ConfigError` for a
config value) with the same one-line message the command prints; nothing is written before
the config checks pass. One run at a time per process (Hydra's config and logging are
process-wide). Sweeps stay with ``or1-train -m``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


def _compose(
    config_name: str,
    overrides: Sequence[str],
    run_dir: str | Path | None,
    check: Callable[[Any], None] | None,
) -> tuple[Any, Path]:
    """The task config (without its ``hydra`` node) and the run folder, with Hydra's runtime
    set up as ``@hydra.main`` would: ``HydraConfig`` available and ``train.log`` opened."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import configure_log
    from omegaconf import OmegaConf, open_dict

    from or1.cli.common import (
        describe_config_error,
        did_you_mean,
        implied_overrides,
        quiet_transformers,
    )
    from or1.core.errors import ConfigError
    from or1.core.registry import get_registry
    from or1.core.schemas import CONFIG_MODULE, store_schemas

    bad = [o for o in overrides if not isinstance(o, str) or "=" not in o or o.startswith("-")]
    if bad:
        raise ConfigError(f"overrides must be KEY=VALUE strings, not {bad[0]!r}")
    quiet_transformers()
    store_schemas(get_registry())
    overrides = [
        *overrides,
        *implied_overrides(overrides, None if config_name == "train" else ("model",)),
    ]
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
        try:
            cfg = compose(config_name, overrides=list(overrides), return_hydra_config=True)
            task = copy.deepcopy(cfg)
            with open_dict(task):
                del task["hydra"]
            OmegaConf.to_container(task, resolve=True, throw_on_missing=True)
        except Exception as exc:
            hint = did_you_mean(exc, lambda: compose(config_name=config_name))
            raise ConfigError(f"config: {describe_config_error(exc)}{hint}") from None
    if check is not None:
        check(task)  # before anything is written
    with open_dict(cfg):
        if run_dir is not None:
            cfg.hydra.run.dir = str(run_dir)
        out = Path(str(cfg.hydra.run.dir)).expanduser().resolve()
        cfg.hydra.runtime.output_dir = str(out)
    HydraConfig.instance().set_config(cfg)
    out.mkdir(parents=True, exist_ok=True)
    configure_log(cfg.hydra.job_logging, cfg.hydra.verbose)
    return task, out


def train(overrides: Sequence[str] = (), run_dir: str | Path | None = None) -> dict[str, Any]:
    """Train as ``or1-train *overrides`` would; ``run_dir`` replaces ``hydra.run.dir``
    (default ``outputs/<date>/<time>``, relative to the working folder). Returns the run's
    summary (``summary.json``'s content: steps, the held-out accuracy before and after, the
    run folder); an existing run folder resumes (``trainer.resume=auto``)."""
    from or1.cli.train import check_before_start
    from or1.launch.prepare import prepare
    from or1.rl.trainer import train as train_loop

    cfg, out = _compose("train", overrides, run_dir, check_before_start)
    return train_loop(prepare(cfg, out))


def evaluate(
    overrides: Sequence[str] = (), run_dir: str | Path | None = None
) -> dict[str, dict[str, float]]:
    """Evaluate as ``or1-eval *overrides`` would (``eval.datasets``, ``eval.k``,
    ``model.path`` of a model folder or a training checkpoint); returns the report, per
    dataset, as in ``eval_report.json``."""
    from or1.commands.evaluate import run_evaluation

    cfg, out = _compose("eval", overrides, run_dir, None)
    return run_evaluation(cfg, out)
