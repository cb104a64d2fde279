"""``or1-data``: prepare a training set with configurable passes (normalise, dedup,
decontaminate, validate code, judge, difficulty), each writing its output and a report.

    or1-data                                           # the CPU demo's generated pool
    or1-data prep.inputs=[a.parquet,b.jsonl] data_pass.decontaminate.eval_files=[aime24.parquet]
    or1-data 'data_pass=[normalise,dedup]' prep.output_dir=prepared   # run again to resume
    or1-data data_pass.judge.enabled=true data_pass.difficulty.samples=16 model.path=/models/base

Outputs land in ``prep.output_dir`` (default ``outputs/data/<date>/<time>/``): one parquet file
and one report per pass, ``final.parquet``, ``summary.md`` / ``summary.json``. See docs/data.md.
"""

from __future__ import annotations

from pathlib import Path

from or1.cli.common import guarded, run_hydra_app


def run_data(cfg) -> dict:  # noqa: ANN001 - a DictConfig from Hydra
    """Hydra's task function: run the pipeline into Hydra's output folder."""
    from hydra.core.hydra_config import HydraConfig

    from or1.commands.prepare_data import run_pipeline
    from or1.launch.prepare import save_config_snapshot

    out = Path(HydraConfig.get().runtime.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config_snapshot(cfg, out)
    return run_pipeline(cfg, out)


@guarded
def main() -> None:
    run_hydra_app(run_data, config_name="data_prep")


if __name__ == "__main__":
    main()
