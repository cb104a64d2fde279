"""The ``difficulty`` pass: the offline pass-rate filter of ``or1-filter`` inside ``or1-data``.

``samples`` responses per problem from the policy to be trained (the ``model`` section, served
by the ``rollout`` section's engine), scored by the run's verifier (``verifier=auto`` in
``or1-data``: math and code rows each by their own verifier); problems whose number of correct
responses lies in ``[min_correct, max_correct]`` are kept with a ``pass_rate`` column, the rest
are dropped as ``too_easy`` / ``too_hard`` (Skywork-OR1: 16 samples, keep 1..15). Counting,
the band and its check are :mod:`or1.commands.filter_prompts`'s, shared with ``or1-filter``; counts are
appended to a work file per chunk, so an interrupted run resumes. Prompts longer than
``data.max_prompt_length`` tokens are dropped as ``prompt_too_long``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from or1.commands.filter_prompts import PASS_RATE, band_reason, check_band, count_correct
from or1.core.config import DataPassConfig
from or1.core.data import tokenize_prompts
from or1.core.errors import ConfigError, DataError
from or1.core.interfaces import BuildContext, DataPass, DataPassContext
from or1.core.registry import get_registry
from or1.core.types import DroppedRow, PassResult, SamplingParams
from or1.rl.response_budget import response_budget


@dataclass
class DifficultyConfig(DataPassConfig):
    """Like ``or1-filter``'s ``offline`` section: ``samples`` per problem, the kept band
    ``[min_correct, max_correct]`` (None: ``samples - 1``), sampling ``temperature``,
    ``max_tokens`` (None: the first training pass's max response length) and
    ``prompts_per_call``."""

    name: str = "difficulty"
    samples: int = 16
    """Responses sampled per problem to estimate its pass rate."""
    min_correct: int = 1
    """Keep problems with at least this many correct responses."""
    max_correct: int | None = None
    """Keep problems with at most this many correct responses (None: ``samples - 1``)."""
    temperature: float = 1.0
    """Sampling temperature of the estimate."""
    max_tokens: int | None = None
    """Response token budget (None: the first training pass's max response length)."""
    prompts_per_call: int = 32
    """Problems per rollout call (progress is saved after each)."""


class Difficulty(DataPass):
    """The pass-rate band (module docstring)."""

    fingerprint_sections = ("model", "rollout", "verifier", "stages")

    def __init__(self, cfg: Any, ctx: Any = None) -> None:
        self.cfg = cfg
        self.band = check_band(cfg.samples, cfg.min_correct, cfg.max_correct)

    def _max_tokens(self, ctx: DataPassContext) -> int:
        if self.cfg.max_tokens:
            return int(self.cfg.max_tokens)  # without building the pass schedule
        cfg = ctx.config
        build = BuildContext(
            run_dir=ctx.out_dir,
            model_path=ctx.out_dir,
            cache_dir=ctx.out_dir,
            seed=ctx.seed,
            config=cfg,
        )
        return response_budget(None, get_registry().build("passes", cfg.passes, build), "first")

    def run(self, rows: list[dict[str, Any]], ctx: DataPassContext) -> PassResult:
        c = self.cfg
        engine, tokenizer = ctx.rollout(None)
        pairs = [(r["uid"], r) for r in rows]
        try:
            prompts = tokenize_prompts(pairs, tokenizer, ctx.config.data.max_prompt_length)
        except DataError:
            prompts = []
        fit = {p.uid for p in prompts}
        verifier = ctx.run_verifier()
        params = SamplingParams(
            n=c.samples,
            temperature=c.temperature,
            top_p=ctx.config.rollout.top_p,
            top_k=ctx.config.rollout.top_k,
            max_tokens=self._max_tokens(ctx),
            seed=ctx.seed,
        )
        advance = ctx.progress(len(prompts), "difficulty")
        progress_file = ctx.prefix.with_name(f"{ctx.prefix.name}.{ctx.fingerprint}.progress.jsonl")
        correct: dict[str, int] = {}
        if prompts:
            try:
                correct = count_correct(
                    engine, verifier, prompts, params, progress_file, c.prompts_per_call, advance
                )
            except ValueError as exc:  # a prompt + max_tokens longer than the engine's context
                raise ConfigError(
                    f"data_pass.difficulty: {exc}; lower data.max_prompt_length or "
                    "data_pass.difficulty.max_tokens, or serve a longer context"
                ) from None
        kept, dropped = [], []
        for row in rows:
            uid = row["uid"]
            if uid not in fit:
                dropped.append(
                    DroppedRow(
                        uid,
                        "prompt_too_long",
                        {"max_prompt_length": ctx.config.data.max_prompt_length},
                    )
                )
                continue
            reason = band_reason(correct[uid], self.band)
            if reason == "kept":
                kept.append({**row, PASS_RATE: correct[uid] / c.samples})
            else:
                dropped.append(
                    DroppedRow(
                        uid,
                        reason,
                        {"correct": correct[uid], "samples": c.samples, "band": list(self.band)},
                    )
                )
        return PassResult(kept, dropped)
