"""``or1-train``: compose the Hydra config, build the plugins, run the RL loop.

    or1-train                                   # the CPU demo (tiny model, arithmetic task)
    or1-train model.path=/models/qwen data.path=train.parquet trainer.total_steps=100
    or1-train -m entropy=adaptive,none          # a sweep with Hydra's multirun
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from or1.cli.common import check_overrides, guarded, quiet_transformers
from or1.errors import Or1Error
from or1.plugins import get_registry
from or1.schemas import CONFIG_MODULE, CONFIG_NAME, store_schemas

log = logging.getLogger("or1")


def run_training(cfg) -> dict:  # noqa: ANN001 - a DictConfig from Hydra
    """Hydra's task function: prepare the run in Hydra's output folder and train."""
    from hydra.core.hydra_config import HydraConfig

    from or1.run import prepare
    from or1.trainer import train

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        run = prepare(cfg, run_dir)
        return train(run)
    except Or1Error as exc:
        print(f"or1: error: {exc}", file=sys.stderr)
        sys.exit(2)


@guarded
def main() -> None:
    import hydra

    quiet_transformers()
    registry = get_registry()
    store_schemas(registry)
    check_overrides(CONFIG_MODULE, CONFIG_NAME, sys.argv[1:])
    app = hydra.main(config_path=f"pkg://{CONFIG_MODULE}", config_name=CONFIG_NAME, version_base=None)(
        run_training
    )
    app()


if __name__ == "__main__":
    main()
