"""Problem text for comparisons: normalisation, n-gram shingles, MinHash signatures.

* :func:`problem_text`: the text a row asks (its prompt messages' contents; or a raw row's
  ``question`` / ``problem`` / ``problem_description`` / ``query``).
* :func:`tokens`: NFKC, lower case, then words (``\\w+``) and single symbols (``+``, ``?``,
  ``$``...) as tokens, whitespace ignored, so ``What is 2+3?`` and ``what is 2 + 3 ?`` are
  the same problem while ``2 + 3`` and ``2 - 3`` stay different.
* :func:`shingles`: the set of token n-grams (the whole token sequence when it is shorter
  than ``n``), each hashed to 32 bits (CRC-32, stable across processes).
* :func:`minhash`: ``k`` MinHash values ``min_x ((a_i * x + b_i) mod p)`` over a shingle set
  with ``p = 2**32 - 5``; two sets agree on each value with probability equal to their
  Jaccard similarity.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np

_TOKEN = re.compile(r"\w+|[^\w\s]")
PRIME = np.uint64(4294967291)  # the largest prime below 2**32
QUESTION_KEYS = ("question", "problem", "problem_description", "query")


def problem_text(row: dict[str, Any]) -> str:
    """The problem a row states: its messages' contents joined by newlines (system and user
    turns; a string prompt as is), or for a raw row its question column; "" when none."""
    prompt = row.get("prompt")
    if isinstance(prompt, str) and "reward_model" in row:
        return prompt
    if isinstance(prompt, list):
        return "\n".join(
            str(m.get("content") or "")
            for m in prompt
            if isinstance(m, dict) and m.get("role") != "assistant"
        )
    for key in QUESTION_KEYS:
        if isinstance(row.get(key), str):
            return row[key]
    return ""


def tokens(text: str) -> list[str]:
    """Normalised tokens of ``text`` (see the module docstring)."""
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).lower())


def normal_form(text: str) -> str:
    """The tokens joined by single spaces: equal for texts that differ only in case, width
    (NFKC) or whitespace."""
    return " ".join(tokens(text))


def ngrams(toks: list[str], n: int) -> list[tuple[str, ...]]:
    """Contiguous ``n``-grams of ``toks``; the whole sequence when shorter than ``n``."""
    if not toks:
        return []
    if len(toks) <= n:
        return [tuple(toks)]
    return [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]


def gram_hash(gram: Iterable[str]) -> int:
    return zlib.crc32(" ".join(gram).encode("utf-8"))


def shingles(text: str, n: int) -> set[int]:
    """The hashed ``n``-gram set of ``text``'s tokens (empty for an empty text)."""
    return {gram_hash(g) for g in ngrams(tokens(text), n)}


def jaccard(a: set[int], b: set[int]) -> float:
    """``|a & b| / |a | b|`` (0 for two empty sets)."""
    if not a and not b:
        return 0.0
    return len(a & b) / len(a | b)


def permutations(k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``k`` random hash functions ``(a, b)`` with ``1 <= a < p`` and ``0 <= b < p``."""
    rng = np.random.default_rng(seed)
    a = rng.integers(1, int(PRIME), size=k, dtype=np.uint64)
    b = rng.integers(0, int(PRIME), size=k, dtype=np.uint64)
    return a, b


def minhash(shingle_set: set[int], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The MinHash signature (``len(a)`` uint64 values) of a shingle set; all ``p`` (an
    impossible hash value) for an empty set. ``a * x + b < 2**64`` for 32-bit ``x``: no
    overflow."""
    if not shingle_set:
        return np.full(len(a), PRIME, dtype=np.uint64)
    x = np.fromiter(shingle_set, dtype=np.uint64, count=len(shingle_set))
    return ((a[:, None] * x[None, :] + b[:, None]) % PRIME).min(axis=1)


def lsh_bands(num_perm: int, threshold: float, target: float = 0.999) -> tuple[int, int]:
    """``(bands, rows_per_band)`` with ``bands * rows <= num_perm``: the largest band width
    whose chance of making a pair with Jaccard ``threshold`` a candidate,
    ``1 - (1 - t**r)**b``, is at least ``target`` (candidates are then checked exactly)."""
    best = (num_perm, 1)
    for r in range(1, num_perm + 1):
        b = num_perm // r
        if b < 1:
            break
        if 1.0 - (1.0 - threshold**r) ** b >= target:
            best = (b, r)
    return best
