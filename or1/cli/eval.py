"""``or1-eval``: evaluate a model folder or a training checkpoint on OR1-schema datasets.

    or1-eval                                     # the embedded tiny model on its held-out split
    or1-eval model.path=/models/qwen eval.datasets=[aime24.parquet,aime25.parquet] \\
        eval.k=32 eval.temperature=0.6 eval.max_tokens=32768
    or1-eval model.path=outputs/<date>/<time>/checkpoints/step_40   # a training checkpoint

Reports per dataset Avg@K, unbiased pass@k (k <= K), maj@K (math), mean response length and
truncation rate in ``eval_report.json`` / ``eval_report.md`` in the run folder
(``outputs/eval/<date>/<time>/``). Run again with the same ``hydra.run.dir`` to resume.
"""

from __future__ import annotations

from pathlib import Path

from or1.cli.common import guarded, run_hydra_app


def run_eval(cfg) -> dict:  # noqa: ANN001 - a DictConfig from Hydra
    """Hydra's task function: evaluate into Hydra's output folder."""
    from hydra.core.hydra_config import HydraConfig

    from or1.commands.evaluate import run_evaluation

    return run_evaluation(cfg, Path(HydraConfig.get().runtime.output_dir))


@guarded
def main() -> None:
    run_hydra_app(run_eval, config_name="eval")


if __name__ == "__main__":
    main()
