"""``or1-data``: prepare a training set with configurable stages (normalise, dedup,
decontaminate, validate code, judge, difficulty), each writing its output and a report.

    or1-data                                           # the CPU demo's generated pool
    or1-data prep.inputs=[a.parquet,b.jsonl] data_stage.decontaminate.eval_files=[aime24.parquet]
    or1-data 'data_stage=[normalise,dedup]' prep.output_dir=prepared   # run again to resume
    or1-data data_stage.judge.enabled=true data_stage.difficulty.samples=16 model.path=/models/base

Outputs land in ``prep.output_dir`` (default ``outputs/data/<date>/<time>/``): one parquet file
and one report per stage, ``final.parquet``, ``summary.md`` / ``summary.json``. See docs/data.md.
"""

from __future__ import annotations

from pathlib import Path

from or1.cli.common import guarded, run_hydra_app


def run_data(cfg) -> dict:  # noqa: ANN001 - a DictConfig from Hydra
    """Hydra's task function: run the pipeline into Hydra's output folder."""
    from hydra.core.hydra_config import HydraConfig

    from or1.data_prep import run_pipeline
    from or1.run import save_config_snapshot

    out = Path(HydraConfig.get().runtime.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config_snapshot(cfg, out)
    return run_pipeline(cfg, out)


@guarded
def main() -> None:
    run_hydra_app(run_data, config_name="data_prep")


if __name__ == "__main__":
    main()
