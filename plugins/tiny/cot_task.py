"""A long chain-of-thought task: sums of many one-digit terms, rewritten step by step.

A problem is ``Sum: a3+b5+c7+d2`` (each term labelled by its own letter, ``a``-``z`` then
``A``-``Z``); its reference solution rewrites the expression once per addition, adding the
running total and the next term and copying the rest::

    <think>
    =8+c7+d2
    =15+d2
    =17
    </think>
    \\boxed{17}

A sum of ``k`` terms takes ``k - 1`` lines of shrinking length, about ``1.5 * k**2`` tokens of
the character-level tokenizer of :mod:`.cot_model`. The number of terms is drawn from a
discrete power law ``P(k) ~ k**-size_exponent`` on ``[min_terms, max_terms]``, so solution
lengths have a long tail set by the problem: with the defaults they range from ~25 to ~1,500
tokens with a median near 130. One wrong digit or a dropped term anywhere in the chain makes
the boxed answer wrong, so longer chains are harder in proportion to their length. The labels
make each copy a lookup of the digit after a unique letter (what a small transformer learns
quickly), so the difficulty is in the length and the additions.

Every problem belongs, by a stable hash of its text, to one of three pools: ``val`` (held-out
evaluation), ``probe`` (the model's warm-up check) and ``train``. The splits are drawn from
the ``train`` and ``val`` pools, so they are disjoint from each other and from the probe.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from or1.config import DataConfig

from .task import cached_splits, config_hash

log = logging.getLogger("or1.tiny")

DATA_SOURCE = "or1/tiny_cot"
FORMAT_VERSION = 1
"""Bumped whenever the files' content changes for the same config (it is part of the hash)."""

PROMPT_PREFIX = "Sum: "
LABELS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
"""The letters that label the terms, in order (so at most 52 terms)."""
TASK_CHARACTERS = "0123456789+=<>/{}\\\n :" + LABELS
"""Every character the task's text can contain (the tokenizer's base alphabet)."""

_NON_CONTENT_FIELDS = {"name", "path", "val_path", "max_prompt_length", "shuffle"}
_MAX_DRAWS_PER_ROW = 1000


@dataclass
class TinyCotDataConfig(DataConfig):
    """Sums of ``k`` one-digit terms (``k`` power-law distributed) with step-by-step solutions.

    ``num_train`` training rows (repeats allowed, as drawn) and ``num_val`` distinct held-out
    rows are drawn (``seed``) from the ``train``/``val`` pools fixed by ``split_seed`` and the
    fractions.
    """

    name: str = "tiny_cot"
    num_train: int = 20000
    """Training problems drawn from the train pool."""
    num_val: int = 128
    """Held-out problems drawn (distinct) from the val pool."""
    seed: int = 0
    """Seed of the draws."""
    split_seed: int = 0
    """Seed that fixes the train / val / probe pools."""
    min_terms: int = 3
    """Fewest terms of a sum (its solution has ``min_terms - 1`` lines)."""
    max_terms: int = 31
    """Most terms of a sum (31: ~1,500 solution tokens; at most 52)."""
    size_exponent: float = 1.0
    """The number of terms ``k`` is drawn with probability proportional to ``k**-size_exponent``."""
    max_term: int = 9
    """Terms are drawn uniformly from ``[0, max_term]``."""
    val_fraction: float = 0.1
    """Fraction of all problems in the val pool."""
    probe_fraction: float = 0.05
    """Fraction in the probe pool (the model's warm-up check)."""


@dataclass(frozen=True)
class SumProblem:
    """One sum."""

    terms: tuple[int, ...]

    @property
    def answer(self) -> int:
        """The exact sum."""
        return sum(self.terms)

    @property
    def expression(self) -> str:
        """``"a3+b5+c7+d2"``."""
        return "+".join(labelled(self.terms))


def prompt_text(p: SumProblem) -> str:
    """The user message of a problem."""
    return f"{PROMPT_PREFIX}{p.expression}"


def ground_truth(p: SumProblem) -> str:
    """The reference answer as the verifier reads it."""
    return str(p.answer)


def labelled(terms: tuple[int, ...], start: int = 0) -> list[str]:
    """``["c7", "d2"]`` for terms ``(7, 2)`` starting at label ``start=2``."""
    return [f"{LABELS[start + i]}{t}" for i, t in enumerate(terms)]


def solution_lines(p: SumProblem) -> list[str]:
    """The rewrites: ``["=8+c7+d2", "=15+d2", "=17"]`` for ``a3+b5+c7+d2``."""
    total, lines = p.terms[0], []
    for i in range(1, len(p.terms)):
        total += p.terms[i]
        lines.append("=" + "+".join([str(total), *labelled(p.terms[i + 1 :], i + 1)]))
    return lines


def target_response(p: SumProblem) -> str:
    """The reference (and supervised) response: the rewrites in ``<think>``, then the boxed
    answer. The verifier reads the text after the first ``</think>``."""
    return "<think>\n" + "\n".join(solution_lines(p)) + f"\n</think>\n\\boxed{{{p.answer}}}"


def _check(cfg: Any) -> None:
    lo, hi = int(cfg.min_terms), int(cfg.max_terms)
    if lo < 2 or hi < lo or hi > len(LABELS):
        raise ValueError(
            f"tiny_cot: need 2 <= min_terms <= max_terms <= {len(LABELS)}, got [{lo}, {hi}]"
        )
    if not 1 <= int(cfg.max_term) <= 9:
        raise ValueError(f"tiny_cot: max_term={cfg.max_term} must be in [1, 9] (one digit)")
    if float(cfg.val_fraction) <= 0 or float(cfg.val_fraction) + float(cfg.probe_fraction) >= 1:
        raise ValueError("tiny_cot: need val_fraction > 0 and val_fraction + probe_fraction < 1")


def size_weights(cfg: Any) -> dict[int, float]:
    """``{k: P(k)}``: the distribution of the number of terms."""
    ks = range(int(cfg.min_terms), int(cfg.max_terms) + 1)
    raw = {k: k ** -float(cfg.size_exponent) for k in ks}
    z = sum(raw.values())
    return {k: w / z for k, w in raw.items()}


def pool_of(p: SumProblem, cfg: Any) -> str:
    """``"val"``, ``"probe"`` or ``"train"``: the fixed pool of a problem under ``cfg``."""
    h = hashlib.sha256(f"tiny_cot:{cfg.split_seed}:{p.expression}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2**64
    if u < float(cfg.val_fraction):
        return "val"
    if u < float(cfg.val_fraction) + float(cfg.probe_fraction):
        return "probe"
    return "train"


def draw_problems(cfg: Any, pool: str, rng: random.Random) -> Iterator[SumProblem]:
    """An endless stream of problems of ``pool``, sizes power-law distributed."""
    _check(cfg)
    weights = size_weights(cfg)
    ks, ws = list(weights), list(weights.values())
    hi = int(cfg.max_term)
    while True:
        k = rng.choices(ks, ws)[0]
        p = SumProblem(tuple(rng.randint(0, hi) for _ in range(k)))
        if pool_of(p, cfg) == pool:
            yield p


def draw_distinct(cfg: Any, pool: str, n: int, rng: random.Random) -> list[SumProblem]:
    """``n`` distinct problems of ``pool`` (a repeat is redrawn)."""
    out: list[SumProblem] = []
    seen: set[SumProblem] = set()
    stream = draw_problems(cfg, pool, rng)
    for _ in range(max(1, n) * _MAX_DRAWS_PER_ROW):
        if len(out) >= n:
            break
        p = next(stream)
        if p not in seen:
            seen.add(p)
            out.append(p)
    if len(out) < n:
        raise ValueError(f"tiny_cot: could not draw {n} distinct {pool} problems")
    return out


def make_splits(cfg: Any) -> tuple[list[SumProblem], list[SumProblem]]:
    """The (train, val) problem lists for ``cfg``: disjoint, deterministic in ``cfg``."""
    n_train, n_val = int(cfg.num_train), int(cfg.num_val)
    if n_train < 1 or n_val < 1:
        raise ValueError(f"tiny_cot: num_train={n_train} and num_val={n_val} must be >= 1")
    rng = random.Random(f"tiny_cot:{cfg.seed}")
    stream = draw_problems(cfg, "train", rng)
    train = [next(stream) for _ in range(n_train)]
    val = draw_distinct(cfg, "val", n_val, rng)
    return train, val


def to_row(p: SumProblem, index: int, split: str) -> dict[str, Any]:
    """One dataset row in the OR1 schema (``extra_info.terms``: the problem's size)."""
    return {
        "data_source": DATA_SOURCE,
        "prompt": [{"role": "user", "content": prompt_text(p)}],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": ground_truth(p)},
        "extra_info": {"index": index, "split": split, "terms": len(p.terms)},
    }


def prepare_tiny_cot(cfg: Any, cache_dir: Path) -> tuple[list[Path], list[Path]]:
    """Write (or reuse) ``train.parquet`` and ``val.parquet`` for ``cfg`` under
    ``cache_dir/data/tiny_cot-<hash>/`` and return ``([train], [val])``."""
    digest = config_hash(cfg, TinyCotDataConfig, _NON_CONTENT_FIELDS, FORMAT_VERSION)
    return cached_splits("tiny_cot", digest, cache_dir, lambda: make_splits(cfg), to_row)
