"""The ``dedup`` pass: exact and near-duplicate problems removed, the first occurrence kept.

Rows are taken in input order (files in the order given, so earlier sources win). A row is

* an ``exact_duplicate`` when its problem text's normal form (:func:`.text.normal_form`:
  case, width and whitespace ignored) equals a kept row's;
* a ``near_duplicate`` when the Jaccard similarity of its token ``ngram`` sets with a kept
  row's is at least ``threshold``, n-grams shared by very many rows (an instruction appended to
  every prompt) left out. Candidates come from MinHash signatures (``num_perm``
  hash functions) cut into LSH bands chosen so that a pair at the threshold is a candidate
  with probability >= 0.999; every candidate pair is then checked with the exact Jaccard, so
  no pair below the threshold is ever removed.

``across_sources: false`` compares rows only with rows of the same ``data_source``. The
report names the kept row each dropped row duplicates (``kept_uid``, its file and row, the
Jaccard, and whether the two ground truths agree); the kept row lists the uids it absorbed in
``provenance.duplicates``. The pass runs in one process: ~3,800 rows/s on the 2-core
development machine (``benchmarks/data_prep.py``), where a process pool for the signatures was
measured slower (pickling the shingle sets costs more than the hashing it spreads).
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from or1.core.config import DataPassConfig
from or1.core.data import ground_truth
from or1.core.errors import ConfigError
from or1.core.interfaces import DataPass, DataPassContext
from or1.core.types import DroppedRow, PassResult

from .text import jaccard, lsh_bands, minhash, normal_form, permutations, problem_text, shingles


@dataclass
class DedupConfig(DataPassConfig):
    """``exact`` / ``near``: the two checks; ``threshold``: the n-gram Jaccard at or above
    which two problems are near-duplicates; ``ngram``: tokens per shingle; ``num_perm``:
    MinHash functions; ``across_sources``: compare rows of different ``data_source`` too;
    ``boilerplate_fraction`` / ``boilerplate_min_rows``: n-grams found in more rows than both
    (a shared instruction such as "Let's think step by step") are left out of the near-duplicate
    comparison."""

    name: str = "dedup"
    exact: bool = True
    near: bool = True
    threshold: float = 0.8
    ngram: int = 3
    num_perm: int = 128
    across_sources: bool = True
    boilerplate_fraction: float = 0.05
    boilerplate_min_rows: int = 10
    seed: int = 0
    """Seed of the MinHash functions."""


class Dedup(DataPass):
    """Exact and MinHash/n-gram-Jaccard near-duplicate removal (module docstring)."""

    def __init__(self, cfg: Any, ctx: Any = None) -> None:
        self.cfg = cfg
        if not 0.0 < cfg.threshold <= 1.0:
            raise ConfigError(f"data_pass.dedup.threshold={cfg.threshold} must be in (0, 1]")
        if cfg.ngram < 1 or cfg.num_perm < 1:
            raise ConfigError("data_pass.dedup.ngram and num_perm must be >= 1")

    def signatures(self, texts: list[str]) -> tuple[list[set[int]], np.ndarray]:
        """Shingle sets without boilerplate grams, and their MinHash signatures."""
        c = self.cfg
        sets = [shingles(t, c.ngram) for t in texts]
        df: Counter[int] = Counter(g for s in sets for g in s)
        limit = max(c.boilerplate_min_rows, c.boilerplate_fraction * len(sets))
        common = {g for g, n in df.items() if n > limit}
        if common:
            sets = [s - common for s in sets]
        a, b = permutations(c.num_perm, c.seed)
        sigs = [minhash(s, a, b) for s in sets]
        return sets, np.stack(sigs) if sigs else np.zeros((0, c.num_perm), np.uint64)

    def run(self, rows: list[dict[str, Any]], ctx: DataPassContext) -> PassResult:
        c = self.cfg
        texts = [problem_text(r) for r in rows]
        scope = [("" if c.across_sources else str(r.get("data_source"))) for r in rows]
        sets, sigs = self.signatures(texts) if c.near else ([], None)
        bands, width = lsh_bands(c.num_perm, c.threshold)
        exact_seen: dict[tuple[str, str], int] = {}
        buckets: dict[tuple[str, int, bytes], list[int]] = defaultdict(list)
        kept_idx: list[int] = []
        absorbed: dict[int, list[str]] = defaultdict(list)
        dropped: list[DroppedRow] = []
        advance = ctx.progress(len(rows), "dedup")

        def drop(i: int, j: int, reason: str, sim: float) -> None:
            other = rows[j]
            prov = other.get("provenance") or {}
            dropped.append(
                DroppedRow(
                    rows[i]["uid"],
                    reason,
                    {
                        "kept_uid": other["uid"],
                        "kept_file": prov.get("file"),
                        "kept_row": prov.get("row"),
                        "jaccard": round(sim, 4),
                        "same_answer": ground_truth(rows[i]) == ground_truth(other),
                    },
                )
            )
            absorbed[j].append(rows[i]["uid"])

        for i in range(len(rows)):
            advance(1)
            key = (scope[i], hashlib.sha256(normal_form(texts[i]).encode()).hexdigest())
            if c.exact and key in exact_seen:
                drop(i, exact_seen[key], "exact_duplicate", 1.0)
                continue
            keys: list[tuple[str, int, bytes]] = []
            if c.near:
                keys = [
                    (scope[i], band, sigs[i, band * width : (band + 1) * width].tobytes())
                    for band in range(bands)
                ]
                candidates = dict.fromkeys(j for k in keys for j in buckets.get(k, ()))
                best, best_sim = -1, 0.0
                for j in candidates:
                    sim = jaccard(sets[i], sets[j])
                    if sim >= c.threshold and sim > best_sim:
                        best, best_sim = j, sim
                if best >= 0:
                    drop(i, best, "near_duplicate", best_sim)
                    continue
            exact_seen.setdefault(key, i)
            for k in keys:
                buckets[k].append(i)
            kept_idx.append(i)
        kept = []
        for i in kept_idx:
            row = rows[i]
            prov = {**(row.get("provenance") or {}), "duplicates": absorbed.get(i, [])}
            kept.append({**row, "provenance": prov})
        return PassResult(kept, dropped)
