"""The embedded default task: synthetic integer arithmetic ("What is 23 + 45?").

Every problem of the task's universe (all ``a op b`` with operands in
``[min_operand, max_operand]``) is assigned once, by a stable hash, to one of three pools:
``val`` (held-out evaluation), ``probe`` (reserved for the tiny model's warm-up probe) and
``train`` (the rest). The RL splits are drawn from the ``train`` and ``val`` pools, so they are
disjoint from each other and from the warm-up probe; the tiny model's supervised warm-up only
ever trains on ``train``-pool problems.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from or1.core.atomic import atomic_path
from or1.core.config import DataConfig

log = logging.getLogger("or1.tiny")

DATA_SOURCE = "or1/tiny_arith"
FORMAT_VERSION = 1
"""Bumped whenever the files' content changes for the same config (it is part of the hash)."""

_NON_CONTENT_FIELDS = {"name", "path", "val_path", "max_prompt_length", "shuffle"}


@dataclass
class TinyArithDataConfig(DataConfig):
    """Synthetic arithmetic problems ``a op b`` with ``op`` drawn from ``ops``.

    ``num_train``/``num_val`` problems are sampled (without replacement, ``seed``) from the
    ``train``/``val`` pools; the pools are fixed by ``split_seed`` and the fractions. For
    ``-`` the larger operand comes first, so answers are never negative.
    """

    name: str = "tiny_arith"
    num_train: int = 4000
    """Training problems sampled from the train pool."""
    num_val: int = 200
    """Held-out problems sampled from the val pool."""
    seed: int = 0
    """Seed of the sampling from the pools."""
    split_seed: int = 0
    """Seed that fixes the train / val / probe pools."""
    min_operand: int = 0
    """Smallest operand."""
    max_operand: int = 99
    """Largest operand."""
    ops: str = "+"
    """Operators drawn from (e.g. ``+-*``)."""
    val_fraction: float = 0.1
    """Fraction of all problems in the val pool."""
    probe_fraction: float = 0.05
    """Fraction in the probe pool (the tiny model's warm-up check)."""


@dataclass(frozen=True)
class Problem:
    """One arithmetic problem."""

    a: int
    op: str
    b: int

    @property
    def answer(self) -> int:
        """The exact integer result."""
        if self.op == "+":
            return self.a + self.b
        if self.op == "-":
            return self.a - self.b
        if self.op == "*":
            return self.a * self.b
        raise ValueError(f"unknown operator {self.op!r}")

    @property
    def expression(self) -> str:
        """``"23 + 45"``."""
        return f"{self.a} {self.op} {self.b}"


def prompt_text(p: Problem) -> str:
    """The user message of a problem."""
    return f"What is {p.expression}?"


def ground_truth(p: Problem) -> str:
    """The reference answer as the verifier reads it."""
    return str(p.answer)


def _addition_steps(a: int, b: int) -> list[str]:
    """Column addition, least significant digit first: ``["7 + 5 = 12", "8 + 4 + 1 = 13"]``."""
    da, db = str(a)[::-1], str(b)[::-1]
    lines, carry = [], 0
    for i in range(max(len(da), len(db))):
        x = int(da[i]) if i < len(da) else 0
        y = int(db[i]) if i < len(db) else 0
        s = x + y + carry
        lines.append(f"{x} + {y}" + (f" + {carry}" if carry else "") + f" = {s}")
        carry = s // 10
    return lines


def target_response(p: Problem) -> str:
    """The supervised (SFT) response: worked steps in ``<think>``, then the boxed answer.

    Additions are worked column by column from the units up, carrying explicitly (``87 + 45``:
    ``7 + 5 = 12``, ``8 + 4 + 1 = 13``, answer ``132``); other operators get one line
    ``a op b = c``. The verifier reads the text after the first ``</think>`` and takes the
    last ``\\boxed{}``.
    """
    steps = _addition_steps(p.a, p.b) if p.op == "+" else [f"{p.expression} = {p.answer}"]
    return "<think>\n" + "\n".join(steps) + f"\n</think>\n\\boxed{{{p.answer}}}"


def _cfg_values(cfg: Any, schema: type) -> dict[str, Any]:
    """The schema's fields read from ``cfg`` (a dataclass instance or an OmegaConf node)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(schema):
        v = getattr(cfg, f.name, f.default)
        if hasattr(v, "_content"):  # an OmegaConf container
            from omegaconf import OmegaConf

            v = OmegaConf.to_container(v, resolve=True)
        elif isinstance(v, tuple):
            v = list(v)
        out[f.name] = v
    return out


def config_hash(cfg: Any, schema: type, exclude: set[str], version: int) -> str:
    """A short stable hash of the content-relevant fields of ``cfg``."""
    values = {k: v for k, v in _cfg_values(cfg, schema).items() if k not in exclude}
    values["__version__"] = version
    blob = json.dumps(values, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _universe(cfg: Any) -> list[Problem]:
    lo, hi = int(cfg.min_operand), int(cfg.max_operand)
    if lo < 0 or hi < lo:
        raise ValueError(f"bad operand range [{lo}, {hi}]")
    ops = str(cfg.ops)
    if not ops or any(o not in "+-*" for o in ops):
        raise ValueError(f"ops must be a non-empty string of '+', '-', '*', got {ops!r}")
    out = []
    for op in dict.fromkeys(ops):  # de-duplicated, in order
        for a in range(lo, hi + 1):
            for b in range(lo, hi + 1):
                if op == "-" and a < b:
                    continue
                out.append(Problem(a, op, b))
    return out


def pool_of(p: Problem, cfg: Any) -> str:
    """``"val"``, ``"probe"`` or ``"train"``: the fixed pool of a problem under ``cfg``."""
    h = hashlib.sha256(f"{cfg.split_seed}:{p.expression}".encode()).digest()
    u = int.from_bytes(h[:8], "big") / 2**64
    if u < cfg.val_fraction:
        return "val"
    if u < cfg.val_fraction + cfg.probe_fraction:
        return "probe"
    return "train"


def problem_pools(cfg: Any) -> dict[str, list[Problem]]:
    """The task's universe cut into its ``train``/``val``/``probe`` pools (enumeration order)."""
    pools: dict[str, list[Problem]] = {"train": [], "val": [], "probe": []}
    for p in _universe(cfg):
        pools[pool_of(p, cfg)].append(p)
    return pools


def make_splits(cfg: Any) -> tuple[list[Problem], list[Problem]]:
    """The (train, val) problem lists for ``cfg``: disjoint, deterministic in ``cfg``."""
    pools = problem_pools(cfg)
    rng = random.Random(f"tiny_arith:{cfg.seed}")
    out = []
    for split, n in (("train", int(cfg.num_train)), ("val", int(cfg.num_val))):
        pool = pools[split]
        if n < 1 or n > len(pool):
            raise ValueError(
                f"tiny_arith: num_{split}={n} but the {split} pool has {len(pool)} problems "
                "(widen the operand range, add ops or change the fractions)"
            )
        out.append(rng.sample(pool, n))
    return out[0], out[1]


def to_row(p: Problem, index: int, split: str) -> dict[str, Any]:
    """One dataset row in the OR1 schema."""
    return {
        "data_source": DATA_SOURCE,
        "prompt": [{"role": "user", "content": prompt_text(p)}],
        "ability": "math",
        "reward_model": {"style": "rule", "ground_truth": ground_truth(p)},
        "extra_info": {"index": index, "split": split},
    }


def write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    """Write ``rows`` to ``path`` atomically (:func:`or1.core.atomic.atomic_path`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist(rows), tmp)


def cached_splits(
    name: str,
    digest: str,
    cache_dir: Path,
    make: Callable[[], tuple[list[Any], list[Any]]],
    to_row: Callable[[Any, int, str], dict[str, Any]],
) -> tuple[list[Path], list[Path]]:
    """``([train.parquet], [val.parquet])`` under ``cache_dir/data/<name>-<digest>/``: reused
    when both exist, else ``make()``'s train and val problems written as rows."""
    folder = Path(cache_dir) / "data" / f"{name}-{digest}"
    train_path, val_path = folder / "train.parquet", folder / "val.parquet"
    if train_path.is_file() and val_path.is_file():
        log.info("%s: reusing %s", name, folder)
        return [train_path], [val_path]
    folder.mkdir(parents=True, exist_ok=True)
    train, val = make()
    for split, problems, path in (("train", train, train_path), ("val", val, val_path)):
        if not path.is_file():
            write_parquet([to_row(p, i, split) for i, p in enumerate(problems)], path)
    log.info("%s: wrote %d train / %d val problems to %s", name, len(train), len(val), folder)
    return [train_path], [val_path]


def prepare_tiny_arith(cfg: Any, cache_dir: Path) -> tuple[list[Path], list[Path]]:
    """Write (or reuse) ``train.parquet`` and ``val.parquet`` for ``cfg`` under
    ``cache_dir/data/tiny_arith-<hash>/`` and return ``([train], [val])``."""
    digest = config_hash(cfg, TinyArithDataConfig, _NON_CONTENT_FIELDS, FORMAT_VERSION)
    return cached_splits("tiny_arith", digest, cache_dir, lambda: make_splits(cfg), to_row)
