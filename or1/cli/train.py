"""``or1-train``: compose the Hydra config, build the plugins, run the RL loop.

or1-train                                   # the CPU demo (tiny model, arithmetic task)
or1-train model.path=/models/qwen data.path=train.parquet trainer.total_steps=100
or1-train -m entropy=adaptive,none          # a sweep with Hydra's multirun
"""

from __future__ import annotations

import sys
from importlib import resources
from pathlib import Path

from or1.cli.common import guarded, run_hydra_app

USAGE = "usage: or1-train [experiment=PRESET] [GROUP=NAME ...] [KEY=VALUE ...] [-m] [--cfg job]"


def help_text() -> str:
    """``or1-train --help``: usage, examples, the keys users change first, the presets, and
    where everything else is; built without importing Hydra, torch or the plugins."""
    from or1.config import COMMON_KEYS

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
    """Hydra's task function: prepare the run in Hydra's output folder and train."""
    from hydra.core.hydra_config import HydraConfig

    from or1.run import prepare
    from or1.trainer import train

    # torchrun: every rank runs this same loop on its own share (SPMD)
    return train(prepare(cfg, Path(HydraConfig.get().runtime.output_dir)))


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
    """Every value check that needs no engine or file, before Hydra creates the run folder."""
    from or1.plugins import get_registry
    from or1.run import check_config

    check_config(cfg, get_registry())


@guarded
def main() -> None:
    if any(a in ("-h", "--help") for a in sys.argv[1:]):
        print(help_text())
        return
    from or1.model_support import early_model_check

    early_model_check(sys.argv[1:], default_choices(("rollout", "learner")))
    run_hydra_app(run_training, check=check_before_start)


if __name__ == "__main__":
    main()
