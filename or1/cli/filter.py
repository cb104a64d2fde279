"""``or1-filter``: offline pass-rate filtering of a dataset with the current policy.

    or1-filter data.path=train.parquet model.path=/models/base offline.samples=16
    or1-filter offline.min_correct=1 offline.max_correct=15 offline.output=kept.parquet

Uses the run config's rollout engine, verifier, model and data sections; writes the kept
rows with a new ``pass_rate`` column. Interrupted runs resume from ``<output>.progress.jsonl``.
"""

from __future__ import annotations

from or1.cli.common import guarded, run_hydra_app


@guarded
def main() -> None:
    from or1.commands.filter_prompts import run_filter

    run_hydra_app(run_filter)


if __name__ == "__main__":
    main()
