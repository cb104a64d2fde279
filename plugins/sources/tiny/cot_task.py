"""A long chain-of-thought task: repeated addition, written out one step per line.

A problem is ``Add 7 to 17, 3 times.``; its reference solution counts the additions down and
writes each one out, starting from the previous line's result::

    <think>
    3:17+7=24
    2:24+7=31
    1:31+7=38
    </think>
    \\boxed{38}

A problem with ``count`` additions takes ``count`` lines of about 11 tokens of the
character-level tokenizer of :mod:`.cot_model`. The count is drawn from a discrete power law
``P(count) ~ count**-size_exponent`` on ``[min_count, max_count]``, so solution lengths have a
long tail set by the problem: with the defaults they range from ~20 to ~1,450 tokens with a
median near 95. Every line depends on the one before it (its counter decremented, its result
carried over and the step added), so one wrong digit anywhere in the chain makes the boxed answer
wrong and a long chain is harder in proportion to its length, as in real reasoning; every line is
also checkable on its own, a local computation a small transformer can learn.

Every problem belongs, by a stable hash of its text, to one of three pools: ``val`` (held-out
evaluation), ``probe`` (the model's warm-up check) and ``train``. The splits are drawn from
the ``train`` and ``val`` pools, so they are disjoint from each other and from the probe.
"""

from __future__ import annotations

import hashlib
import logging
import random
import string
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from or1.core.config import DataConfig

from .task import cached_splits, config_hash

log = logging.getLogger("or1.tiny")

DATA_SOURCE = "or1/tiny_cot"
FORMAT_VERSION = 2
"""Bumped whenever the files' content changes for the same config (it is part of the hash)."""

TASK_CHARACTERS = string.digits + string.ascii_letters + "+=:,.<>/{}\\\n "
"""Every character the task's text (and the chat roles around it) can contain: the tokenizer's
base alphabet."""

_NON_CONTENT_FIELDS = {"name", "path", "val_path", "max_prompt_length", "shuffle"}
_MAX_DRAWS_PER_ROW = 1000


@dataclass
class TinyCotDataConfig(DataConfig):
    """Repeated additions (``count`` power-law distributed) with step-by-step solutions.

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
    min_count: int = 1
    """Fewest additions of a problem (its solution has ``count`` lines)."""
    max_count: int = 110
    """Most additions of a problem (110: ~1,450 solution tokens)."""
    size_exponent: float = 1.0
    """The count is drawn with probability proportional to ``count**-size_exponent``."""
    max_start: int = 99
    """The starting number is drawn uniformly from ``[1, max_start]``."""
    max_step: int = 9
    """The step is drawn uniformly from ``[1, max_step]`` (one digit)."""
    val_fraction: float = 0.1
    """Fraction of all problems in the val pool."""
    probe_fraction: float = 0.05
    """Fraction in the probe pool (the model's warm-up check)."""


@dataclass(frozen=True)
class ChainProblem:
    """Add ``step`` to ``start``, ``count`` times."""

    start: int
    step: int
    count: int

    @property
    def answer(self) -> int:
        """The exact result."""
        return self.start + self.step * self.count


def prompt_text(p: ChainProblem) -> str:
    """The user message of a problem: ``"Add 7 to 17, 3 times."``."""
    return f"Add {p.step} to {p.start}, {p.count} times."


def ground_truth(p: ChainProblem) -> str:
    """The reference answer as the verifier reads it."""
    return str(p.answer)


def solution_lines(p: ChainProblem) -> list[str]:
    """The steps: ``["3:17+7=24", "2:24+7=31", "1:31+7=38"]`` for ``Add 7 to 17, 3 times.``;
    each line is ``<additions left>:<previous result>+<step>=<result>``."""
    value, lines = p.start, []
    for left in range(p.count, 0, -1):
        lines.append(f"{left}:{value}+{p.step}={value + p.step}")
        value += p.step
    return lines


def target_response(p: ChainProblem) -> str:
    """The reference (and supervised) response: the steps in ``<think>``, then the boxed
    answer. The verifier reads the text after the first ``</think>``."""
    return "<think>\n" + "\n".join(solution_lines(p)) + f"\n</think>\n\\boxed{{{p.answer}}}"


def _check(cfg: Any) -> None:
    lo, hi = int(cfg.min_count), int(cfg.max_count)
    if lo < 1 or hi < lo:
        raise ValueError(f"tiny_cot: need 1 <= min_count <= max_count, got [{lo}, {hi}]")
    if not 1 <= int(cfg.max_step) <= 9:
        raise ValueError(f"tiny_cot: max_step={cfg.max_step} must be in [1, 9] (one digit)")
    if int(cfg.max_start) < 1:
        raise ValueError(f"tiny_cot: max_start={cfg.max_start} must be >= 1")
    if float(cfg.val_fraction) <= 0 or float(cfg.val_fraction) + float(cfg.probe_fraction) >= 1:
        raise ValueError("tiny_cot: need val_fraction > 0 and val_fraction + probe_fraction < 1")


def size_weights(cfg: Any) -> dict[int, float]:
    """``{count: P(count)}``: the distribution of the number of additions."""
    ks = range(int(cfg.min_count), int(cfg.max_count) + 1)
    raw = {k: k ** -float(cfg.size_exponent) for k in ks}
    z = sum(raw.values())
    return {k: w / z for k, w in raw.items()}


def pool_of(p: ChainProblem, cfg: Any) -> str:
    """``"val"``, ``"probe"`` or ``"train"``: the fixed pool of a problem under ``cfg``."""
    h = hashlib.sha256(f"tiny_cot:{cfg.split_seed}:{prompt_text(p)}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2**64
    if u < float(cfg.val_fraction):
        return "val"
    if u < float(cfg.val_fraction) + float(cfg.probe_fraction):
        return "probe"
    return "train"


def draw_problems(cfg: Any, pool: str, rng: random.Random) -> Iterator[ChainProblem]:
    """An endless stream of problems of ``pool``, counts power-law distributed."""
    _check(cfg)
    weights = size_weights(cfg)
    ks, ws = list(weights), list(weights.values())
    while True:
        count = rng.choices(ks, ws)[0]
        p = ChainProblem(
            rng.randint(1, int(cfg.max_start)), rng.randint(1, int(cfg.max_step)), count
        )
        if pool_of(p, cfg) == pool:
            yield p


def draw_distinct(cfg: Any, pool: str, n: int, rng: random.Random) -> list[ChainProblem]:
    """``n`` distinct problems of ``pool`` (a repeat is redrawn)."""
    out: list[ChainProblem] = []
    seen: set[ChainProblem] = set()
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


def make_splits(cfg: Any) -> tuple[list[ChainProblem], list[ChainProblem]]:
    """The (train, val) problem lists for ``cfg``: disjoint, deterministic in ``cfg``."""
    n_train, n_val = int(cfg.num_train), int(cfg.num_val)
    if n_train < 1 or n_val < 1:
        raise ValueError(f"tiny_cot: num_train={n_train} and num_val={n_val} must be >= 1")
    rng = random.Random(f"tiny_cot:{cfg.seed}")
    stream = draw_problems(cfg, "train", rng)
    train = [next(stream) for _ in range(n_train)]
    val = draw_distinct(cfg, "val", n_val, rng)
    return train, val


def to_row(p: ChainProblem, index: int, split: str) -> dict[str, Any]:
    """One dataset row in the OR1 schema (``extra_info.count``: the problem's size)."""
    return {
        "data_source": DATA_SOURCE,
        "prompt": [{"role": "user", "content": prompt_text(p)}],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": ground_truth(p)},
        "extra_info": {"index": index, "split": split, "count": p.count},
    }


def prepare_tiny_cot(cfg: Any, cache_dir: Path) -> tuple[list[Path], list[Path]]:
    """Write (or reuse) ``train.parquet`` and ``val.parquet`` for ``cfg`` under
    ``cache_dir/data/tiny_cot-<hash>/`` and return ``([train], [val])``."""
    digest = config_hash(cfg, TinyCotDataConfig, _NON_CONTENT_FIELDS, FORMAT_VERSION)
    return cached_splits("tiny_cot", digest, cache_dir, lambda: make_splits(cfg), to_row)
