"""The ``decontaminate`` pass: drop training rows that overlap an evaluation set.

Evaluation problems are read from ``eval_files`` (parquet / JSONL in the OR1 schema or with a
``question`` / ``problem`` column) and, with ``include_val``, the data section's held-out
files. A training row is contaminated when at least ``min_matches`` of its token ``ngram``-grams
(:mod:`.text`: case, width and whitespace ignored) occur in one evaluation problem, covering at
least ``min_coverage`` of that problem's grams (default 0: any shared gram, the aggressive
choice; a stock phrase such as "where m and n are relatively prime positive integers" shared
with an AIME problem is then enough); an
evaluation problem shorter than ``ngram`` tokens counts as one gram, which matches when the
training row contains it whole. Grams found in more than ``boilerplate_fraction`` of the
evaluation problems (and in at least 3), such as a shared "Let's think step by step..."
instruction, are ignored. The report lists every hit: the evaluation file, row, the number of
shared grams, the fraction of the problem's grams they cover, and one of them.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from or1.core.config import DataPassConfig
from or1.core.errors import ConfigError, DataError
from or1.core.interfaces import DataPass, DataPassContext
from or1.core.types import DroppedRow, PassResult

from .text import ngrams, problem_text, tokens

log = logging.getLogger("or1.data_passes")


@dataclass
class DecontaminateConfig(DataPassConfig):
    """``eval_files``: evaluation sets to protect (e.g. ``aime24.parquet``); ``include_val``:
    also the data section's val files; ``ngram``: tokens per gram; ``min_matches``: shared
    grams with one evaluation problem that make a row contaminated; ``min_coverage``: the
    fraction of that problem's grams they must also cover (0: any ``min_matches`` grams);
    ``boilerplate_fraction``: grams in more than this fraction of the evaluation problems are
    ignored."""

    name: str = "decontaminate"
    eval_files: list[str] = field(default_factory=list)
    include_val: bool = True
    ngram: int = 13
    min_matches: int = 1
    min_coverage: float = 0.0
    boilerplate_fraction: float = 0.1


@dataclass
class EvalProblem:
    file: str
    row: int
    text: str


def read_eval_problems(paths: list[Path]) -> list[EvalProblem]:
    """The problem text of every row of ``paths`` (an error names a file or row without one)."""
    from or1.commands.prepare_data import read_input_rows

    out = []
    for path in paths:
        for i, row in enumerate(read_input_rows(path)):
            text = problem_text(row) if isinstance(row, dict) else ""
            if not text.strip():
                raise DataError(
                    f"{path}: row {i}: no problem text (a 'prompt' or 'question' column)"
                )
            out.append(EvalProblem(str(path), i, text))
    return out


class Decontaminate(DataPass):
    """n-gram overlap with evaluation problems (module docstring)."""

    def __init__(self, cfg: Any, ctx: Any = None) -> None:
        self.cfg = cfg
        if cfg.ngram < 1 or cfg.min_matches < 1:
            raise ConfigError("data_pass.decontaminate.ngram and min_matches must be >= 1")

    def index(
        self, problems: list[EvalProblem]
    ) -> tuple[dict[tuple[str, ...], list[int]], set[int], Counter[int]]:
        """gram -> evaluation problems holding it (boilerplate removed), the set of gram
        lengths to look for (``ngram`` and the lengths of shorter problems), and each
        problem's number of grams (boilerplate removed)."""
        grams: dict[tuple[str, ...], list[int]] = defaultdict(list)
        lengths = {int(self.cfg.ngram)}
        for k, p in enumerate(problems):
            for g in dict.fromkeys(ngrams(tokens(p.text), self.cfg.ngram)):
                grams[g].append(k)
                lengths.add(len(g))
        limit = max(3, self.cfg.boilerplate_fraction * len(problems))
        common = [g for g, ks in grams.items() if len(ks) > limit]
        for g in common:
            del grams[g]
        sizes: Counter[int] = Counter(k for ks in grams.values() for k in ks)
        if common:
            log.info(
                "decontaminate: ignoring %d grams shared by more than %d evaluation problems",
                len(common),
                int(limit),
            )
        return grams, lengths, sizes

    def run(self, rows: list[dict[str, Any]], ctx: DataPassContext) -> PassResult:
        files = [Path(p).expanduser() for p in self.cfg.eval_files]
        if self.cfg.include_val:
            files += [p for p in ctx.val_files() if p not in files]
        problems = read_eval_problems(files)
        if not problems:
            log.warning(
                "decontaminate: no evaluation set (eval_files empty, no val files); every row kept"
            )
        grams, lengths, sizes = self.index(problems)
        advance = ctx.progress(len(rows), "decontaminate")
        kept, dropped = [], []
        for row in rows:
            advance(1)
            toks = tokens(problem_text(row))
            shared: Counter[int] = Counter()
            example: dict[int, tuple[str, ...]] = {}
            for n in lengths:
                seen = set()
                for i in range(len(toks) - n + 1):
                    g = tuple(toks[i : i + n])
                    if g in seen:
                        continue
                    seen.add(g)
                    for k in grams.get(g, ()):
                        shared[k] += 1
                        example.setdefault(k, g)
            hits = [
                (k, c)
                for k, c in shared.items()
                if c >= self.cfg.min_matches and c / sizes[k] >= self.cfg.min_coverage
            ]
            if not hits:
                kept.append(row)
                continue
            hits.sort(key=lambda kc: (-kc[1], kc[0]))
            dropped.append(
                DroppedRow(
                    row["uid"],
                    "contaminated",
                    {
                        "hits": [
                            {
                                "eval_file": problems[k].file,
                                "eval_row": problems[k].row,
                                "shared_ngrams": c,
                                "coverage": round(c / sizes[k], 4),
                                "ngram": " ".join(example[k]),
                            }
                            for k, c in hits
                        ]
                    },
                )
            )
        return PassResult(kept, dropped)
