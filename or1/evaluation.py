"""Held-out evaluation: K samples per problem, Avg@K (the OR1 metric) and unbiased pass@k."""

from __future__ import annotations

from collections.abc import Sequence
from math import comb

from or1.interfaces import RewardVerifier, RolloutEngine
from or1.types import Prompt, SamplingParams


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples with ``c`` correct: ``1 - C(n-c, k) / C(n, k)``."""
    if not 0 < k <= n:
        raise ValueError(f"pass@k needs 0 < k <= n, got k={k}, n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def avg_at_k(scores: Sequence[Sequence[float]]) -> float:
    """Mean over problems and samples of the (binary) score."""
    flat = [s for per_problem in scores for s in per_problem]
    return sum(flat) / len(flat) if flat else 0.0


def evaluate(
    engine: RolloutEngine,
    verifier: RewardVerifier,
    datasets: dict[str, Sequence[Prompt]],
    params: SamplingParams,
    chunk: int = 64,
) -> dict[str, float]:
    """Sample ``params.n`` completions per problem of each dataset and score them.

    Returns ``val/<name>/accuracy`` (= Avg@K), ``val/<name>/avg@K``, ``val/<name>/pass@1``,
    ``val/<name>/pass@K`` (unbiased, mean over problems), ``val/<name>/response_length`` and
    ``val/<name>/truncated_frac`` for every dataset.
    """
    k = params.n
    out: dict[str, float] = {}
    for name, prompts in datasets.items():
        scores: list[list[float]] = []
        lengths: list[int] = []
        truncated = 0
        for start in range(0, len(prompts), chunk):
            part = prompts[start : start + chunk]
            completions = engine.generate([p.prompt_ids for p in part], params)
            texts = [c.text for cs in completions for c in cs]
            rows = [p.row for p, cs in zip(part, completions, strict=True) for _ in cs]
            verdicts = verifier.score_many(texts, rows)
            for i, cs in enumerate(completions):
                scores.append([verdicts[i * k + j].value for j in range(k)])
                lengths += [len(c.response_ids) for c in cs]
                truncated += sum(c.truncated for c in cs)
        correct = [sum(1 for s in per if s >= 1.0) for per in scores]
        prefix = f"val/{name}"
        acc = avg_at_k(scores)
        out[f"{prefix}/accuracy"] = acc
        out[f"{prefix}/avg@{k}"] = acc
        out[f"{prefix}/pass@1"] = sum(pass_at_k(k, c, 1) for c in correct) / len(correct)
        out[f"{prefix}/pass@{k}"] = sum(pass_at_k(k, c, k) for c in correct) / len(correct)
        out[f"{prefix}/response_length"] = sum(lengths) / len(lengths)
        out[f"{prefix}/truncated_frac"] = truncated / len(lengths)
    return out
