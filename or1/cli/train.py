"""``or1-train``: compose the Hydra config, build the plugins, run the RL loop.

or1-train                                   # the CPU demo (tiny model, arithmetic task)
or1-train model.path=/models/qwen data.path=train.parquet trainer.total_steps=100
or1-train -m entropy=adaptive,none          # a sweep with Hydra's multirun
"""

from __future__ import annotations

from pathlib import Path

from or1.cli.common import guarded, run_hydra_app


def run_training(cfg) -> dict:  # noqa: ANN001 - a DictConfig from Hydra
    """Hydra's task function: prepare the run in Hydra's output folder and train."""
    from hydra.core.hydra_config import HydraConfig

    from or1.run import prepare
    from or1.trainer import train

    # torchrun: every rank runs this same loop on its own share (SPMD)
    return train(prepare(cfg, Path(HydraConfig.get().runtime.output_dir)))


@guarded
def main() -> None:
    run_hydra_app(run_training)


if __name__ == "__main__":
    main()
