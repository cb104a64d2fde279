"""The pieces of one RL step that the trainer strings together (each calls one hook point)."""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import torch

from or1.core.errors import Or1Error, TrainingError
from or1.core.interfaces import (
    AdvantageEstimator,
    OnlineFilter,
    RewardVerifier,
    RolloutEngine,
)
from or1.core.types import Completion, Group, Prompt, SamplingParams, Score, Stage
from or1.launch import distributed

log = logging.getLogger("or1.trainer")


class Timer:
    """Accumulates wall time per name: ``with timer("rollout"): ...``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t0


ENGINE_SEED_STRIDE = 7_919_113
"""Seeds of rollout engine ``i`` are engine 0's plus ``i`` times this (a prime)."""


def step_seed(seed: int, step: int, round_: int = 0, engine: int = 0) -> int:
    """The sampling seed of a step (and refill round) on rollout engine ``engine``: a function
    of the run seed, step, round and engine index only, so a resumed run samples exactly what
    the uninterrupted one did (engine 0's seed is the one-process run's)."""
    return (seed * 1_000_003 + step * 101 + round_ + engine * ENGINE_SEED_STRIDE) % (2**31 - 1)


def generate_groups(
    engine: RolloutEngine,
    prompts: Sequence[Prompt],
    params: SamplingParams,
    restart: Callable[[], RolloutEngine] | None = None,
    on_group: Callable[[int, list[Completion]], None] | None = None,
) -> list[Group]:
    """Sample a group per prompt (``on_group`` as in ``RolloutEngine.generate_stream``). If the
    engine crashes (raises anything but a user-input error) and ``restart`` is given, the
    engine is rebuilt once with the learner's current weights and the call repeated (without
    ``on_group``); a second failure ends the run with a clear message."""
    if not prompts:  # an engine dealt no prompt this round (fewer prompts than engines)
        return []
    ids = [p.prompt_ids for p in prompts]
    try:
        if on_group is None:
            completions = engine.generate(ids, params)
        else:
            completions = engine.generate_stream(ids, params, on_group)
    except Or1Error:
        raise
    except ValueError as exc:  # the engine's own input checks: restarting would not help
        raise TrainingError(f"the rollout engine refused the prompts: {exc}") from None
    except Exception as exc:
        if restart is None:
            raise
        log.warning(
            "rollout engine failed (%s: %s); restarting it with the current weights",
            type(exc).__name__,
            exc,
        )
        try:
            completions = restart().generate(ids, params)
        except Exception as again:
            raise TrainingError(
                f"rollout engine failed again after a restart ({type(again).__name__}: {again}); "
                "the last checkpoint is intact: fix the cause and resume with trainer.resume=auto"
            ) from again
    return [Group(prompt=p, completions=cs) for p, cs in zip(prompts, completions, strict=True)]


class NonFiniteGuard:
    """Counts learner steps skipped for a non-finite loss or gradient (``train/nonfinite``)
    and ends the run after ``limit`` in a row (0: never). Adds ``train/nonfinite_total``."""

    def __init__(self, limit: int) -> None:
        self.limit, self.in_a_row, self.total = limit, 0, 0

    def check(self, step: int, metrics: dict[str, float]) -> None:
        bad = bool(metrics.get("train/nonfinite", 0.0)) or not math.isfinite(
            metrics.get("grad_norm", 0.0)
        )
        metrics["train/nonfinite"] = float(bad)
        if bad:
            self.in_a_row += 1
            self.total += 1
            log.warning(
                "step %d: non-finite loss or gradient, update skipped (%d in a row)",
                step,
                self.in_a_row,
            )
            if self.limit and self.in_a_row >= self.limit:
                raise TrainingError(
                    f"{self.in_a_row} non-finite updates in a row (last at step {step}); stopping "
                    "(trainer.max_nonfinite_steps). Check the learning rate, advantage.eps and the data"
                )
        else:
            self.in_a_row = 0
        metrics["train/nonfinite_total"] = float(self.total)


class SkippedSteps:
    """Warns (once per streak) when ``warn_after`` steps in a row trained nothing because the
    filter kept no group, naming the likely cause: every group's rewards equal (all wrong:
    the verifier or the prompt format; all right: the data is too easy) or a group of one."""

    def __init__(self, warn_after: int = 3) -> None:
        self.warn_after, self.in_a_row = warn_after, 0

    def check(self, step: int, trained: bool, metrics: dict[str, float], group_size: int) -> str:
        """Count this step; return the warning to show now, or ``""``."""
        self.in_a_row = 0 if trained else self.in_a_row + 1
        if self.in_a_row != self.warn_after:
            return ""
        reward = metrics.get("reward/mean", float("nan"))
        if group_size < 2:
            why = "trainer.group_size=1: a group of one never has reward variance"
        elif reward <= 0.0:
            why = (
                "every sample scored 0: check the verifier and the prompt format "
                "(trainer.samples_every=1 logs the samples)"
            )
        elif reward >= 1.0:
            why = "every sample scored 1: the data is too easy for this model"
        else:
            why = "every group's rewards were equal"
        return (
            f"steps {step - self.in_a_row + 1}-{step} trained nothing: the filter kept no group "
            f"(reward mean {reward:.2f}); {why}"
        )


class OverlappedScoring:
    """Scores each group on a helper thread as soon as the rollout engine hands it over
    (:meth:`submit` is the ``on_group`` of ``generate_stream``), so rewards are computed while
    the other groups still generate; the verifiers' own work runs in their worker processes
    or sandboxes. :meth:`finish` waits for them and fills ``rewards`` / ``statuses``; a group
    whose completions are not the ones submitted (after an engine restart) is scored then.
    Use as a context manager: the helper thread ends with it."""

    def __init__(self, verifier: RewardVerifier, prompts: Sequence[Prompt]) -> None:
        self.verifier, self.prompts = verifier, prompts
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="or1-reward")
        self.submitted: dict[int, tuple[list[Completion], Future[list[Score]]]] = {}

    def __enter__(self) -> OverlappedScoring:
        return self

    def __exit__(self, *exc: object) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, i: int, completions: list[Completion]) -> None:
        texts = [c.text for c in completions]
        rows = [self.prompts[i].row] * len(completions)
        future = self.pool.submit(self.verifier.score_many, texts, rows)
        self.submitted[i] = (completions, future)

    def finish(self, groups: Sequence[Group]) -> None:
        late = []
        for i, g in enumerate(groups):
            done = self.submitted.get(i)
            if done is None or done[0] is not g.completions:
                late.append(g)
                continue
            verdicts = done[1].result()
            g.rewards = [float(v.value) for v in verdicts]
            g.statuses = [v.status for v in verdicts]
        if late:
            score_groups(self.verifier, late)


def score_groups(verifier: RewardVerifier, groups: Sequence[Group]) -> None:
    """Fill ``rewards`` and ``statuses`` of every group (one batched verifier call)."""
    texts = [c.text for g in groups for c in g.completions]
    rows = [g.prompt.row for g in groups for _ in g.completions]
    scores = iter(verifier.score_many(texts, rows))
    for g in groups:
        verdicts = [next(scores) for _ in g.completions]
        g.rewards = [float(s.value) for s in verdicts]
        g.statuses = [s.status for s in verdicts]


def kept_groups(groups: Sequence[Group]) -> int:
    """Groups kept so far in this step, over every rank of the launch."""
    (n,) = distributed.all_reduce([sum(g.kept for g in groups)])
    return int(n)


def apply_filter(online_filter: OnlineFilter, groups: Sequence[Group]) -> None:
    flags = online_filter.keep(groups)
    if len(flags) != len(groups):
        raise RuntimeError(f"online filter returned {len(flags)} flags for {len(groups)} groups")
    for g, flag in zip(groups, flags, strict=True):
        g.kept = bool(flag)


def assign_advantages(estimator: AdvantageEstimator, groups: Sequence[Group], stage: Stage) -> None:
    """Advantages of the kept groups; dropped groups get zeros (they never reach the loss)."""
    kept = [g for g in groups if g.kept]
    for g in groups:
        g.advantages = [0.0] * len(g.completions)
    if not kept:
        return
    rewards = torch.tensor([g.rewards for g in kept], dtype=torch.float32)
    truncated = torch.tensor([[c.truncated for c in g.completions] for g in kept], dtype=torch.bool)
    adv = estimator.compute(rewards, truncated, stage.truncation)
    for g, row in zip(kept, adv.tolist(), strict=True):
        g.advantages = [float(a) for a in row]


def nearest_rank(sorted_values: Sequence[int], q: int) -> float:
    """The ``q``-th percentile of ascending ``sorted_values`` by the nearest-rank rule (the
    smallest value with at least ``q``% of the values at or below it); 0 when empty."""
    if not sorted_values:
        return 0.0
    k = max(1, -(-q * len(sorted_values) // 100))  # ceil(q/100 * n), at least the first
    return float(sorted_values[k - 1])


def rollout_metrics(groups: Sequence[Group], extra_rollouts: int) -> dict[str, float]:
    """Reward, length and filter statistics over every completion sampled in the step, by
    every engine of the launch (sums and counts reduced over the ranks, the response lengths
    gathered for their maximum and 10th/50th/90th percentiles; each rank passes the groups its
    engine handed on, none on the other ranks of an engine).

    ``rollout/sampled_nll``: the mean ``-log p`` of the sampled tokens over every response of
    the step that came with its sampling log-probs, before the filter: at temperature 1 an
    estimate of the policy's entropy per token over all the step's samples, where
    ``entropy/value`` covers only the groups the filter kept (absent when no engine returned
    log-probs)."""
    comps = [c for g in groups for c in g.completions]
    kept = [g for g in groups if g.kept]
    scored = [c for c in comps if c.response_ids and len(c.logprobs) == len(c.response_ids)]
    sums = distributed.all_reduce(
        [
            sum(r for g in groups for r in g.rewards),
            len(comps),
            sum(r for g in kept for r in g.rewards),
            sum(len(g.rewards) for g in kept),
            sum(len(c.response_ids) for c in comps),
            sum(c.truncated for c in comps),
            len(kept),
            len(groups) - len(kept),
            extra_rollouts,
            -sum(x for c in scored for x in c.logprobs),
            sum(len(c.logprobs) for c in scored),
        ]
    )
    reward, n, kept_reward, kept_n, length, truncated, n_kept, n_dropped, extra, nll, nll_n = sums
    lengths = sorted(
        x
        for part in distributed.all_gather_object([len(c.response_ids) for c in comps])
        for x in part
    )
    n = max(n, 1.0)
    return {
        "reward/mean": reward / n,
        "reward/kept_mean": kept_reward / max(1.0, kept_n),
        "response_length/mean": length / n,
        "response_length/max": float(lengths[-1] if lengths else 0),
        **{f"response_length/p{q}": nearest_rank(lengths, q) for q in (10, 50, 90)},
        "response/truncated_frac": truncated / n,
        "filter/groups_kept": n_kept,
        "filter/groups_dropped": n_dropped,
        "filter/extra_rollouts": extra,
        **({"rollout/sampled_nll": nll / nll_n} if nll_n > 0 else {}),
    }


def engine_metrics(
    layout: distributed.EngineLayout, samples: int, seconds: float
) -> dict[str, float]:
    """``rollout/engines``, the sample count of each engine (``rollout/engine<i>_samples``,
    up to 8 engines; min and max always) and the slowest and fastest engine's rollout time of
    the step (a straggler shows as max >> min)."""
    per_rank = distributed.all_gather_object((layout.index, layout.leader, samples, seconds))
    counts = {i: n for i, leader, n, _ in per_rank if leader}
    times = [t for *_, t in per_rank]
    out = {
        "rollout/engines": float(layout.engines),
        "rollout/engine_samples_min": float(min(counts.values())),
        "rollout/engine_samples_max": float(max(counts.values())),
        "rollout/engine_time_max_s": max(times),
        "rollout/engine_time_min_s": min(times),
    }
    if layout.engines <= 8:
        out |= {f"rollout/engine{i}_samples": float(n) for i, n in sorted(counts.items())}
    return out


class WeightSyncMeter:
    """Wraps the learner's ``named_weights`` for the engine's ``update_weights`` and counts
    the bytes that pass (``weight_sync/bytes``; ``weight_sync/s`` is the timer's)."""

    def __init__(self) -> None:
        self.bytes = 0

    def __call__(
        self, named: Iterator[tuple[str, torch.Tensor]]
    ) -> Iterator[tuple[str, torch.Tensor]]:
        for name, t in named:
            self.bytes += t.numel() * t.element_size()
            yield name, t


def prompt_text(row: dict[str, Any]) -> str:
    """The last user message of a row's prompt (what a person reads as "the problem")."""
    prompt = row.get("prompt")
    if isinstance(prompt, str):
        return prompt
    users = [
        m.get("content", "")
        for m in prompt or []
        if isinstance(m, dict) and m.get("role") == "user"
    ]
    return str(users[-1]) if users else ""


def sample_records(step: int, groups: Sequence[Group]) -> list[dict[str, Any]]:
    """One record per completion for ``samples.jsonl`` and the loggers' sample tables."""
    out = []
    for g in groups:
        prompt = prompt_text(g.prompt.row)
        gt = (g.prompt.row.get("reward_model") or {}).get("ground_truth")
        for c, r, s, a in zip(g.completions, g.rewards, g.statuses, g.advantages, strict=True):
            out.append(
                {
                    "step": step,
                    "group": g.prompt.uid,
                    "prompt": prompt,
                    "ground_truth": gt
                    if isinstance(gt, str | int | float) or gt is None
                    else str(gt),
                    "reward": r,
                    "status": s,
                    "advantage": a,
                    "truncated": c.truncated,
                    "kept": g.kept,
                    "response_length": len(c.response_ids),
                    "response": c.text,
                }
            )
    return out
