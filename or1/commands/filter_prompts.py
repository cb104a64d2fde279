"""Offline difficulty filtering: estimate each prompt's pass rate with the current policy and
keep prompts inside a band (Skywork-OR1: 16 samples, keep 1..15 correct).

Progress is appended to ``<output>.progress.jsonl`` after every chunk, so an interrupted run
resumes where it stopped; the output parquet is written under a temporary name and renamed
only when complete.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from or1.core.atomic import atomic_path
from or1.core.errors import ConfigError
from or1.core.interfaces import RewardVerifier, RolloutEngine
from or1.core.types import Prompt, SamplingParams

log = logging.getLogger("or1.offline_filter")

PASS_RATE = "pass_rate"


def check_band(samples: int, min_correct: int, max_correct: int | None) -> tuple[int, int]:
    """The band ``[lo, hi]`` of correct counts to keep; ConfigError if outside ``0..samples``."""
    hi = samples - 1 if max_correct is None else max_correct
    if samples < 1:
        raise ConfigError(f"offline.samples={samples} must be >= 1")
    if not 0 <= min_correct <= hi <= samples:
        raise ConfigError(
            f"offline band [min_correct={min_correct}, max_correct={hi}] must satisfy "
            f"0 <= min_correct <= max_correct <= samples={samples}"
        )
    return min_correct, hi


def default_output(inputs: list[Path]) -> Path:
    """``<first input stem>.filtered.parquet`` in the current directory."""
    return Path.cwd() / f"{inputs[0].stem}.filtered.parquet"


def load_progress(path: Path) -> dict[str, int]:
    done: dict[str, int] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
                done[rec["uid"]] = int(rec["correct"])
            except (ValueError, KeyError):
                continue  # a line cut by a crash: that chunk is redone
    return done


def count_correct(
    engine: RolloutEngine,
    verifier: RewardVerifier,
    prompts: list[Prompt],
    params: SamplingParams,
    progress_file: Path,
    chunk: int,
    on_chunk: Callable[[int], None] = lambda n: None,
) -> dict[str, int]:
    """Correct responses out of ``params.n`` per prompt uid, resuming from ``progress_file``.

    ``prompts`` are sampled in fixed chunks of ``chunk``, the k-th (from 0) with seed
    ``params.seed + k + 1``, so a resumed run counts exactly what an uninterrupted one would:
    chunks already in the progress file are skipped, a chunk recorded only in part (a crash
    while it was being written) is sampled again whole. ``params.seed`` is left as given."""
    done = load_progress(progress_file)
    base = params.seed or 0
    chunks = [prompts[i : i + chunk] for i in range(0, len(prompts), chunk)]
    todo = [k for k, part in enumerate(chunks) if any(p.uid not in done for p in part)]
    on_chunk(len(prompts) - sum(len(chunks[k]) for k in todo))
    with progress_file.open("a") as fh:
        for k in todo:
            part = chunks[k]
            chunk_params = dataclasses.replace(params, seed=base + k + 1)
            completions = engine.generate([p.prompt_ids for p in part], chunk_params)
            texts = [c.text for cs in completions for c in cs]
            rows = [p.row for p, cs in zip(part, completions, strict=True) for _ in cs]
            scores = verifier.score_many(texts, rows)
            for i, p in enumerate(part):
                correct = sum(
                    1 for s in scores[i * params.n : (i + 1) * params.n] if s.value >= 1.0
                )
                done[p.uid] = correct
                fh.write(json.dumps({"uid": p.uid, "correct": correct}) + "\n")
            fh.flush()
            on_chunk(len(part))
    return done


def write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows), tmp)


def band_reason(correct: int, band: tuple[int, int]) -> str:
    """``kept`` when ``correct`` lies in the band ``[lo, hi]``, else ``too_hard`` (below) or
    ``too_easy`` (above). Shared by ``or1-filter`` and ``or1-data``'s difficulty pass."""
    lo, hi = band
    return "too_hard" if correct < lo else "too_easy" if correct > hi else "kept"


def select(
    prompts: list[Prompt],
    correct: dict[str, int],
    samples: int,
    band: tuple[int, int],
    keep_all: bool,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Rows to write (each with ``pass_rate``) and counts by reason."""
    out, counts = [], {"kept": 0, "too_easy": 0, "too_hard": 0}
    for p in prompts:
        c = correct[p.uid]
        reason = band_reason(c, band)
        counts[reason] += 1
        if reason == "kept" or keep_all:
            out.append({**p.row, PASS_RATE: c / samples})
    return out, counts


def run_filter(cfg) -> dict:  # noqa: ANN001 - a DictConfig from Hydra
    """``or1-filter``'s work: count each prompt's correct samples of ``offline.samples``,
    keep the rows in the band, write them with a ``pass_rate`` column; resumable from
    ``<output>.progress.jsonl``. Returns the output path and the counts."""
    from hydra.core.hydra_config import HydraConfig
    from rich.progress import Progress

    from or1.commands.filter_prompts import (
        check_band,
        count_correct,
        default_output,
        select,
        write_parquet,
    )
    from or1.core.data import read_dataset, tokenize_prompts
    from or1.core.interfaces import BuildContext
    from or1.core.registry import get_registry
    from or1.core.types import SamplingParams
    from or1.launch.prepare import load_tokenizer, resolve_data, resolve_model, save_config_snapshot
    from or1.rl.response_budget import response_budget

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
