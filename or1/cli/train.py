"""``or1-train``: compose the Hydra config, build the plugins, run the RL loop.

or1-train                                   # the CPU demo (tiny model, arithmetic task)
or1-train model.path=/models/qwen data.path=train.parquet trainer.total_steps=100
or1-train -m entropy=adaptive,none          # a sweep with Hydra's multirun
"""

from __future__ import annotations

import functools
import sys
from importlib import resources
from pathlib import Path

from or1.cli.common import guarded, run_hydra_app

USAGE = "usage: or1-train [experiment=PRESET] [GROUP=NAME ...] [KEY=VALUE ...] [-m] [--cfg job]"


def help_text() -> str:
    """``or1-train --help``: usage, examples, the keys users change first, the presets, and
    where everything else is; built without importing Hydra, torch or the plugins."""
    from or1.core.config import COMMON_KEYS

    presets = sorted(
        p.name.removesuffix(".yaml")
        for p in (resources.files("or1_conf") / "experiment").iterdir()
        if p.name.endswith(".yaml")
    )
    width = max(len(k) for k, _ in COMMON_KEYS)
    lines = [
        USAGE,
        "",
        *(ln for ln in (__doc__ or "").strip().splitlines()[2:]),
        "",
        "the keys you will change:",
        *(f"  {k.ljust(width)}  {text.replace('``', '')}" for k, text in COMMON_KEYS),
        "",
        f"presets (experiment=...): {', '.join(presets)} (default: cpu_demo)",
        "components (GROUP=NAME, e.g. rollout=transformers learner=torch): or1-plugins",
        "every key with its default and description: docs/config-reference.md",
        "every value this run would use: or1-train [overrides] --cfg job",
        "Hydra's own options: or1-train --hydra-help",
    ]
    return "\n".join(lines)


def run_training(cfg) -> dict:  # noqa: ANN001 - a DictConfig from Hydra
    """Hydra's task function: prepare the run in Hydra's output folder and train. In a sweep,
    a run folder that already holds the whole run (a re-submitted sweep) returns its summary
    without training again."""
    import logging

    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from or1.launch.prepare import prepare
    from or1.launch.resume import finished_summary
    from or1.rl.trainer import train

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode == RunMode.MULTIRUN:
        done = finished_summary(cfg, run_dir)
        if done is not None:
            logging.getLogger("or1.train").info(
                "%s already holds this run (%s steps, summary.json): nothing to do",
                run_dir,
                done["steps"],
            )
            return done
    # torchrun, or a multi-task sweep job: every rank runs this same loop on its own share (SPMD)
    return train(prepare(cfg, run_dir))


def default_choices(groups: tuple[str, ...]) -> dict[str, str]:
    """The component ``conf/train.yaml`` selects for each of ``groups`` (read as YAML, before
    Hydra is imported)."""
    import yaml

    defaults = yaml.safe_load((resources.files("or1_conf") / "train.yaml").read_text())
    found = {
        k: v for item in defaults["defaults"] if isinstance(item, dict) for k, v in item.items()
    }
    return {g: str(found[g]) for g in groups if isinstance(found.get(g), str)}


def check_before_start(cfg) -> None:  # noqa: ANN001 - a DictConfig composed by Hydra
    """Every value check that needs no engine or file, before Hydra creates the run folder;
    in a sweep on a multi-task launcher, also the job's shape and this run's parallel layout
    against its ranks (:mod:`or1.commands.sweep_jobs`)."""
    from or1.commands.sweep_jobs import check_run_layout
    from or1.core.registry import get_registry
    from or1.launch.config_checks import check_config

    registry = get_registry()
    check_config(cfg, registry)
    shape = sweep_job_shape(tuple(sys.argv[1:]))
    if shape is not None:
        check_run_layout(cfg, registry, shape)


@functools.cache
def sweep_job_shape(argv: tuple[str, ...]):  # noqa: ANN201 - a JobShape or None
    """The ranks of each job of a sweep on a submitit launcher (``-m hydra/launcher=...``),
    from the ``hydra.launcher`` node composed with the command line's Hydra overrides (inside
    the initialised Hydra of the override check); checked once (:func:`check_job_shape`)."""
    from or1.commands.sweep_jobs import check_job_shape, is_multirun, job_shape, launcher_choice

    choice = launcher_choice(argv)
    if not is_multirun(argv) or choice is None:
        return None
    from hydra import compose

    from or1.cli.common import describe_config_error
    from or1.core.errors import ConfigError
    from or1.core.schemas import CONFIG_NAME

    own = [a for a in argv if a.lstrip("+~").startswith(("hydra/", "hydra."))]
    try:
        launcher = compose(CONFIG_NAME, overrides=own, return_hydra_config=True).hydra.launcher
        shape = job_shape(launcher, choice)
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"config: {describe_config_error(exc)}") from None
    if shape is not None:
        gpus_here = 0
        if shape.local:
            import torch

            gpus_here = torch.cuda.device_count() if torch.cuda.is_available() else 0
        check_job_shape(shape, gpus_here)
    return shape


@guarded
def main() -> None:
    if any(a in ("-h", "--help") for a in sys.argv[1:]):
        print(help_text())
        return
    from or1.commands.sweep_jobs import check_launcher_installed, is_multirun, register_launchers
    from or1.launch.model_support import early_model_check

    early_model_check(sys.argv[1:], default_choices(("rollout", "learner")))
    check_launcher_installed(sys.argv[1:])
    if is_multirun(sys.argv[1:]):
        register_launchers()
    run_hydra_app(run_training, check=check_before_start)


if __name__ == "__main__":
    main()
