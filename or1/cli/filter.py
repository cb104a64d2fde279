"""``or1-filter``: offline pass-rate filtering of a dataset with the current policy.

    or1-filter data.path=train.parquet model.path=/models/base offline.samples=16
    or1-filter offline.min_correct=1 offline.max_correct=15 offline.output=kept.parquet

Uses the run config's rollout engine, verifier, model and data sections; writes the kept
rows with a new ``pass_rate`` column. Interrupted runs resume from ``<output>.progress.jsonl``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from or1.cli.common import guarded, run_hydra_app
from or1.errors import ConfigError
from or1.plugins import get_registry

log = logging.getLogger("or1.filter")


def run_filter(cfg) -> dict:  # noqa: ANN001 - a DictConfig from Hydra
    from hydra.core.hydra_config import HydraConfig
    from rich.progress import Progress

    from or1.data import read_dataset, tokenize_prompts
    from or1.interfaces import BuildContext
    from or1.offline_filter import check_band, count_correct, default_output, select, write_parquet
    from or1.response_budget import response_budget
    from or1.run import load_tokenizer, resolve_data, resolve_model, save_config_snapshot
    from or1.types import SamplingParams

    o = cfg.offline
    band = check_band(o.samples, o.min_correct, o.max_correct)
    registry = get_registry()
    for group in ("rollout", "verifier"):
        registry.get(group, cfg[group].name)
    cache_dir = Path(cfg.trainer.cache_dir).expanduser()
    inputs, _ = resolve_data(cfg, registry, cache_dir)
    output = Path(o.output) if o.output else default_output(inputs)
    progress_file = output.with_name(output.name + ".progress.jsonl")
    if output.exists():
        raise ConfigError(
            f"offline.output={output} already exists; remove it or choose another path"
        )
    rows = read_dataset(inputs)
    model_path = resolve_model(cfg, registry, cache_dir)
    prompts = tokenize_prompts(rows, load_tokenizer(model_path), cfg.data.max_prompt_length)
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config_snapshot(cfg, run_dir)  # input checks passed
    ctx = BuildContext.of_run(cfg, run_dir, model_path)
    engine = registry.build("rollout", cfg.rollout, ctx)
    verifier = registry.build("verifier", cfg.verifier, ctx)
    stages = registry.build("stages", cfg.stages, ctx)
    params = SamplingParams(
        n=o.samples,
        temperature=o.temperature,
        top_p=cfg.rollout.top_p,
        top_k=cfg.rollout.top_k,
        max_tokens=response_budget(o.max_tokens, stages, "first"),
        seed=cfg.trainer.seed,
    )
    with Progress() as bar:
        task = bar.add_task("or1-filter: prompts", total=len(prompts))
        correct = count_correct(
            engine,
            verifier,
            prompts,
            params,
            progress_file,
            o.prompts_per_call,
            on_chunk=lambda n: bar.advance(task, n),
        )
    kept, counts = select(prompts, correct, o.samples, band, o.keep_all)
    write_parquet(kept, output)
    progress_file.unlink(missing_ok=True)
    verifier.close()
    engine.close()
    log.info(
        "or1-filter: %d prompts, kept %d (pass count in [%d, %d] of %d), too easy %d, too hard %d -> %s",
        len(prompts),
        counts["kept"],
        band[0],
        band[1],
        o.samples,
        counts["too_easy"],
        counts["too_hard"],
        output,
    )
    return {"output": str(output), **counts}


@guarded
def main() -> None:
    run_hydra_app(run_filter)


if __name__ == "__main__":
    main()
