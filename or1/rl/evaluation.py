"""Held-out evaluation: K samples per problem, Avg@K (the OR1 metric), unbiased pass@k, maj@K.

The pieces are separable so ``or1-eval`` can resume per problem: :func:`score_chunks` samples
and scores fixed chunks of problems (one :class:`ProblemResult` per problem), and
:func:`summarize` turns the results of one dataset into its metrics. :func:`evaluate` strings
them together for the trainer's validation.

Metric names (``K`` = samples per problem):

* ``avg@K``: the mean binary score over all problems and all K samples (Skywork-OR1's Avg@K).
* ``pass@k`` for each ``k`` of :func:`default_pass_ks` (or those asked for): the unbiased
  estimator ``1 - C(K-c, k) / C(K, k)`` per problem (``c`` correct of ``K``), averaged.
* ``maj@K`` (math datasets): a problem counts when the most frequent final answer among its K
  samples is correct (ties go to the answer seen first; samples without an answer do not vote).
* ``response_length``: mean response tokens; ``truncated_frac``: share of samples that hit the
  max length.
* ``sample_entropy``: the mean over all response tokens of ``-log p`` of the sampled token, ``p``
  the distribution the engine sampled from (its returned log-probs). Its expectation is the mean
  per-token entropy of that distribution along its own samples, so at temperature 1 without
  top-p / top-k it estimates the policy's entropy on a fixed set of prompts (unlike a training
  step's ``entropy/value``, which is over whichever prompts the step drew and the filter kept).
  Left out when an engine returns no log-probs, or for results resumed from before it existed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from math import comb
from typing import Any

from or1.core.interfaces import RewardVerifier, RolloutEngine
from or1.core.types import Completion, Prompt, SamplingParams


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples with ``c`` correct: ``1 - C(n-c, k) / C(n, k)``."""
    if not 0 < k <= n:
        raise ValueError(f"pass@k needs 0 < k <= n, got k={k}, n={n}")
    if not 0 <= c <= n:
        raise ValueError(f"pass@k needs 0 <= c <= n, got c={c}, n={n}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def avg_at_k(scores: Sequence[Sequence[float]]) -> float:
    """Mean over problems and samples of the (binary) score."""
    flat = [s for per_problem in scores for s in per_problem]
    return sum(flat) / len(flat) if flat else 0.0


def majority_correct(scores: Sequence[float], answers: Sequence[str | None]) -> float:
    """1.0 when the most frequent non-empty answer is correct, else 0.0 (also when no sample
    has an answer). Ties go to the answer that appears first; its score is that of its first
    sample (a verifier scores equal answers equally)."""
    votes = Counter(a for a in answers if a is not None)
    if not votes:
        return 0.0
    top = votes.most_common(1)[0][0]  # most_common keeps first-seen order among equal counts
    first = next(i for i, a in enumerate(answers) if a == top)
    return 1.0 if scores[first] >= 1.0 else 0.0


def default_pass_ks(k: int) -> list[int]:
    """1, 2, 4, ... below ``k``, and ``k`` itself."""
    out, j = [], 1
    while j < k:
        out.append(j)
        j *= 2
    return [*out, k]


def check_pass_ks(k: int, requested: Sequence[int] | None) -> list[int]:
    """The pass@k values to report for ``k`` samples; raises ValueError for a requested
    ``k' > k`` or ``k' < 1`` (pass@k' cannot be estimated from fewer than ``k'`` samples)."""
    if not requested:
        return default_pass_ks(k)
    bad = [j for j in requested if not 0 < j <= k]
    if bad:
        raise ValueError(f"pass@{bad[0]} needs at least {bad[0]} samples per problem (eval.k={k})")
    return sorted(set(int(j) for j in requested))


@dataclass
class ProblemResult:
    """One problem's K samples: score, response length, truncation and final answer each, and
    ``nll``: each sample's summed ``-log p`` of its tokens (empty when the engine returned no
    log-probs)."""

    uid: str
    scores: list[float]
    lengths: list[int]
    truncated: list[bool]
    answers: list[str | None]
    nll: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProblemResult:
        return cls(
            d["uid"],
            list(d["scores"]),
            list(d["lengths"]),
            list(d["truncated"]),
            list(d["answers"]),
            list(d.get("nll", [])),
        )


def score_chunks(
    engine: RolloutEngine,
    verifier: RewardVerifier,
    prompts: Sequence[Prompt],
    params: SamplingParams,
    chunk: int = 64,
    skip: set[str] | frozenset[str] = frozenset(),
) -> Iterator[list[ProblemResult]]:
    """Sample ``params.n`` completions per problem, ``chunk`` problems per engine call, and
    score them; yields the results of each chunk. Chunk boundaries are fixed (``chunk``
    consecutive problems) and every call uses ``params`` as given, so the results do not
    depend on which chunks were skipped: a chunk whose problems' uids are all in ``skip`` is
    not sampled (nothing is yielded for it); a chunk with any problem left is sampled whole and
    every one of its results is yielded."""
    k = params.n
    for start in range(0, len(prompts), chunk):
        part = prompts[start : start + chunk]
        if all(p.uid in skip for p in part):
            continue
        completions = engine.generate([p.prompt_ids for p in part], params)
        texts = [c.text for cs in completions for c in cs]
        rows = [p.row for p, cs in zip(part, completions, strict=True) for _ in cs]
        verdicts = verifier.score_many(texts, rows)
        answers = [verifier.answer_key(t, r) for t, r in zip(texts, rows, strict=True)]
        out = []
        for i, (p, cs) in enumerate(zip(part, completions, strict=True)):
            out.append(
                ProblemResult(
                    uid=p.uid,
                    scores=[float(verdicts[i * k + j].value) for j in range(k)],
                    lengths=[len(c.response_ids) for c in cs],
                    truncated=[bool(c.truncated) for c in cs],
                    answers=answers[i * k : (i + 1) * k],
                    nll=sample_nll(cs),
                )
            )
        yield out


def sample_nll(completions: Sequence[Completion]) -> list[float]:
    """Each completion's summed ``-log p`` of its response tokens; empty unless every one has a
    log-prob per token."""
    if any(len(c.logprobs) != len(c.response_ids) for c in completions):
        return []
    return [-float(sum(c.logprobs)) for c in completions]


def is_math(prompts: Sequence[Prompt]) -> bool:
    """Whether every row of a dataset is a math problem (``ability`` ``math``): maj@K applies."""
    return bool(prompts) and all(str(p.row.get("ability", "")).lower() == "math" for p in prompts)


def summarize(
    results: Sequence[ProblemResult],
    k: int,
    pass_ks: Sequence[int] | None = None,
    majority: bool = False,
) -> dict[str, float]:
    """The metrics of one dataset from its problems' results (names in the module doc)."""
    if not results:
        raise ValueError("no problem results to summarize")
    ks = check_pass_ks(k, pass_ks)
    correct = [sum(1 for s in r.scores if s >= 1.0) for r in results]
    lengths = [n for r in results for n in r.lengths]
    out: dict[str, float] = {f"avg@{k}": avg_at_k([r.scores for r in results])}
    out["accuracy"] = out[f"avg@{k}"]  # the name the run's metrics have used since the start
    for j in ks:
        out[f"pass@{j}"] = sum(pass_at_k(k, c, j) for c in correct) / len(correct)
    if majority:
        out[f"maj@{k}"] = sum(majority_correct(r.scores, r.answers) for r in results) / len(results)
    out["response_length"] = sum(lengths) / len(lengths)
    out["truncated_frac"] = sum(t for r in results for t in r.truncated) / len(lengths)
    if all(len(r.nll) == len(r.lengths) for r in results) and sum(lengths):
        out["sample_entropy"] = sum(x for r in results for x in r.nll) / sum(lengths)
    out["problems"] = float(len(results))
    return out


def evaluate(
    engine: RolloutEngine,
    verifier: RewardVerifier,
    datasets: dict[str, Sequence[Prompt]],
    params: SamplingParams,
    chunk: int = 64,
    pass_ks: Sequence[int] | None = None,
    prefix: str = "val",
    gather: Callable[[list[ProblemResult]], list[ProblemResult]] | None = None,
) -> dict[str, float]:
    """Sample ``params.n`` completions per problem of each dataset, score them, and return
    ``<prefix>/<name>/<metric>`` for every dataset and metric of :func:`summarize`
    (``avg@K``, ``pass@1`` ... ``pass@K``, ``maj@K`` for math sets, ``response_length``,
    ``truncated_frac``, ``problems``). Under torchrun each engine gets its share of every
    dataset and ``gather`` joins the shares' results (every rank then summarizes them all)."""
    out: dict[str, float] = {}
    for name, prompts in datasets.items():
        results = [
            r for part in score_chunks(engine, verifier, prompts, params, chunk) for r in part
        ]
        if gather is not None:
            results = gather(results)
        metrics = summarize(results, params.n, pass_ks, majority=is_math(prompts))
        out |= {f"{prefix}/{name}/{key}": value for key, value in metrics.items()}
    return out


def headline_key(k: int) -> str:
    """The metric that stands for a dataset's accuracy (``avg@K``)."""
    return f"avg@{k}"
