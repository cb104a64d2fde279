"""``or1-eval``'s work: evaluate one model on several datasets, resumable per problem.

Files in the run folder:

* ``eval_progress.jsonl``: a header line with the settings, then one line per evaluated
  problem (``dataset``, ``uid``, its K scores, lengths, truncation flags and final answers).
  A run started again in the same folder (``hydra.run.dir=...``) keeps these problems and
  samples only the rest; problems are sampled in fixed chunks with fixed seeds, so the result is
  the one an uninterrupted run gives. Different settings in the same folder are an error.
* ``eval_report.json``: ``{<dataset file stem>: {avg@K, pass@1, ..., pass@K, maj@K,
  response_length, truncated_frac, problems}}``; ``eval_report.md``: the same as a table.
* ``model/``: the exported Hugging Face folder when ``model.path`` is a training checkpoint.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from or1.core.data import read_dataset, tokenize_prompts
from or1.core.errors import ConfigError
from or1.core.interfaces import BuildContext
from or1.core.registry import get_registry
from or1.core.types import Prompt, SamplingParams
from or1.launch.model_support import check_model_support
from or1.rl.evaluation import ProblemResult, check_pass_ks, is_math, score_chunks, summarize
from or1.rl.response_budget import response_budget

log = logging.getLogger("or1.eval")

PROGRESS_FILE = "eval_progress.jsonl"
REPORT_JSON = "eval_report.json"
REPORT_MD = "eval_report.md"


class Progress:
    """The per-problem results file: read what a previous attempt finished, append the rest."""

    def __init__(self, path: Path, settings: dict[str, Any]) -> None:
        self.path = path
        self.done: dict[tuple[str, str], ProblemResult] = {}
        if path.is_file() and path.stat().st_size:
            self._load(settings)
        else:
            path.write_text(json.dumps({"settings": settings}) + "\n")

    def _load(self, settings: dict[str, Any]) -> None:
        lines = self.path.read_text().splitlines()
        try:
            old = json.loads(lines[0])["settings"]
        except (ValueError, KeyError, IndexError):
            raise ConfigError(
                f"{self.path}: not an or1-eval progress file; choose another hydra.run.dir"
            ) from None
        for key in sorted(set(old) | set(settings)):
            if old.get(key) != settings.get(key):
                raise ConfigError(
                    f"{self.path} was written with {key}={old.get(key)!r}, this run has {settings.get(key)!r}; "
                    "use the same settings to resume, or another hydra.run.dir"
                )
        good = [lines[0]]
        for line in lines[1:]:
            try:
                rec = json.loads(line)
                self.done[(rec["dataset"], rec["uid"])] = ProblemResult.from_dict(rec)
                good.append(line)
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a crash: that problem is sampled again
        self.path.write_text("".join(ln + "\n" for ln in good))

    def finished(self, dataset: str) -> set[str]:
        return {uid for (name, uid) in self.done if name == dataset}

    def add(self, dataset: str, results: list[ProblemResult]) -> None:
        new = [r for r in results if (dataset, r.uid) not in self.done]
        with self.path.open("a") as fh:
            fh.write("".join(json.dumps({"dataset": dataset, **r.to_dict()}) + "\n" for r in new))
        for r in new:
            self.done[(dataset, r.uid)] = r


def dataset_files(cfg: DictConfig, registry: Any, cache_dir: Path) -> dict[str, Path]:
    """``eval.datasets`` (or the data section's held-out files) by name
    (:func:`or1.core.data.held_out_sets`)."""
    from or1.core.data import as_path_list, held_out_sets
    from or1.launch.prepare import resolve_data

    files = None
    if not as_path_list(list(cfg.eval.datasets)):
        _, files = resolve_data(cfg, registry, cache_dir)
    sets = held_out_sets(cfg, files)
    if not sets:
        raise ConfigError("no dataset to evaluate: set eval.datasets=[FILE,...] (or data.val_path)")
    return sets


def resolve_eval_model(
    cfg: DictConfig, registry: Any, cache_dir: Path, run_dir: Path
) -> tuple[Path, str]:
    """The Hugging Face folder to evaluate and how to name it: ``model.path`` (a model folder,
    or a training checkpoint, exported to ``<run_dir>/model``), else the model source's."""
    from or1.commands.export import export_checkpoint, is_checkpoint
    from or1.launch.prepare import resolve_model

    if cfg.model.path:
        given = Path(cfg.model.path).expanduser()
        if not given.exists():
            raise ConfigError(f"model.path={given}: no such folder")
        if is_checkpoint(given):
            exported = export_checkpoint(given, run_dir / "model", registry)
            node = OmegaConf.create({"model": {"name": cfg.model.name, "path": str(exported)}})
            return resolve_model(node, registry, cache_dir), str(given.resolve())
        return resolve_model(cfg, registry, cache_dir), str(given.resolve())
    return resolve_model(cfg, registry, cache_dir), f"model source '{cfg.model.name}'"


def run_evaluation(cfg: DictConfig, run_dir: Path) -> dict[str, dict[str, float]]:
    """Evaluate, write the report files, print the table; returns the report."""
    from or1.launch.config_checks import check_eval_values
    from or1.launch.prepare import load_tokenizer, save_config_snapshot

    e = cfg.eval
    registry = get_registry()
    for group in ("rollout", "verifier", "stages", "model"):
        registry.get(group, cfg[group].name)
    check_eval_values(e)
    if e.chunk < 1:
        raise ConfigError(f"eval.chunk={e.chunk} must be >= 1")
    pass_ks = check_pass_ks(e.k, list(e.pass_k))
    cache_dir = Path(cfg.trainer.cache_dir).expanduser()
    run_dir.mkdir(parents=True, exist_ok=True)

    files = dataset_files(cfg, registry, cache_dir)
    rows = {name: read_dataset([path], e.max_problems) for name, path in files.items()}
    save_config_snapshot(cfg, run_dir)
    model_path, model_name = resolve_eval_model(cfg, registry, cache_dir, run_dir)
    check_model_support(cfg, registry, model_path, groups=("rollout",))
    tokenizer = load_tokenizer(model_path)
    sets = {
        name: tokenize_prompts(r, tokenizer, cfg.data.max_prompt_length) for name, r in rows.items()
    }

    ctx = BuildContext.of_run(cfg, run_dir, model_path)
    stages = registry.build("stages", cfg.stages, ctx)
    max_tokens = response_budget(e.max_tokens, stages, "last")
    params = SamplingParams(
        n=e.k,
        temperature=e.temperature,
        top_p=e.top_p,
        max_tokens=max_tokens,
        seed=cfg.trainer.seed + 17,
    )
    settings = {
        "model": model_name,
        "k": e.k,
        "temperature": e.temperature,
        "top_p": e.top_p,
        "max_tokens": max_tokens,
        "seed": params.seed,
        "chunk": e.chunk,
        "max_problems": e.max_problems,
        "max_prompt_length": cfg.data.max_prompt_length,
        "rollout": cfg.rollout.name,
        "verifier": cfg.verifier.name,
    }
    progress = Progress(run_dir / PROGRESS_FILE, settings)
    if progress.done:
        log.info(
            "or1-eval: resuming, %d problems already evaluated in %s",
            len(progress.done),
            progress.path,
        )
    _sample_all(cfg, registry, ctx, sets, params, progress)
    report = {
        name: summarize(
            [progress.done[(name, p.uid)] for p in prompts], e.k, pass_ks, is_math(prompts)
        )
        for name, prompts in sets.items()
    }
    write_report(run_dir, report, settings)
    return report


def _sample_all(
    cfg: DictConfig,
    registry: Any,
    ctx: BuildContext,
    sets: dict[str, list[Prompt]],
    params: SamplingParams,
    progress: Progress,
) -> None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.progress import Progress as Bar

    todo = {name: progress.finished(name) for name in sets}
    if all({p.uid for p in prompts} <= todo[name] for name, prompts in sets.items()):
        return
    engine = registry.build("rollout", cfg.rollout, ctx)
    verifier = registry.build("verifier", cfg.verifier, ctx)
    total = sum(len(p) for p in sets.values())
    try:
        with Bar(
            TextColumn("[bold]or1-eval[/bold] {task.description}"),
            MofNCompleteColumn(),
            BarColumn(),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
        ) as bar:
            task = bar.add_task("problems", total=total, completed=len(progress.done))
            for name, prompts in sets.items():
                bar.update(task, description=name)
                chunks = score_chunks(engine, verifier, prompts, params, cfg.eval.chunk, todo[name])
                while True:
                    try:
                        results = next(chunks)
                    except StopIteration:
                        break
                    except ValueError as exc:  # the engine's contract: a prompt it cannot take
                        raise ConfigError(f"eval dataset '{name}': {exc}") from None
                    fresh = sum((name, r.uid) not in progress.done for r in results)
                    progress.add(name, results)
                    bar.advance(task, fresh)
    finally:
        verifier.close()
        engine.close()


def report_markdown(report: dict[str, dict[str, float]], settings: dict[str, Any]) -> str:
    """The report as a markdown table, one row per dataset, with the settings above it."""
    metric_cols: list[str] = []
    for metrics in report.values():
        for key in metrics:
            if "@" in key and key not in metric_cols:
                metric_cols.append(key)
    cols = ["dataset", "problems", *metric_cols, "mean length (tokens)", "truncated"]
    lines = [
        f"model: `{settings['model']}`, {settings['k']} samples per problem, temperature "
        f"{settings['temperature']}, top_p {settings['top_p']}, max {settings['max_tokens']} tokens",
        "",
        "| " + " | ".join(cols) + " |",
        "|" + "---|" * len(cols),
    ]
    for name, m in report.items():
        cells = [name, str(int(m["problems"]))]
        cells += [f"{100 * m[c]:.1f}%" if c in m else "-" for c in metric_cols]
        cells += [f"{m['response_length']:.1f}", f"{100 * m['truncated_frac']:.1f}%"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(
    run_dir: Path, report: dict[str, dict[str, float]], settings: dict[str, Any]
) -> None:
    (run_dir / REPORT_JSON).write_text(json.dumps(report, indent=1) + "\n")
    text = report_markdown(report, settings)
    (run_dir / REPORT_MD).write_text(text)
    from rich.console import Console
    from rich.markdown import Markdown

    Console().print(Markdown(text))
    log.info("or1-eval: report in %s", run_dir / REPORT_JSON)
