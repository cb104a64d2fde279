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

from or1.batch import masked_mean
from or1.errors import Or1Error, TrainingError
from or1.interfaces import (
    AdvantageEstimator,
    EntropyController,
    OnlineFilter,
    RewardVerifier,
    RolloutEngine,
)
from or1.types import Completion, Group, Prompt, SamplingParams, Score, Stage

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


class EntropyCoefficient:
    """The entropy controller's decision for one step, as the learner's ``entropy_coef``
    callable: measures ``e_k`` over the batch's response tokens from the pre-update
    log-probs / entropies (the controller's estimator) and returns ``c_k`` (0 when the bonus
    is inactive). Keeps ``e_k``, ``coef`` and ``active`` for the step's metrics."""

    def __init__(self, controller: EntropyController, response_mask: torch.Tensor) -> None:
        self.controller, self.mask = controller, response_mask
        self.e_k, self.coef, self.active = float("nan"), 0.0, False

    def __call__(self, old_logprobs: torch.Tensor, entropy: torch.Tensor) -> float:
        full = self.controller.estimator == "full_vocab"
        self.e_k = masked_mean(entropy if full else -old_logprobs, self.mask)
        self.coef, self.active = self.controller.coefficient(self.e_k)
        return self.coef if self.active else 0.0

    def metrics(self) -> dict[str, float]:
        return {
            "entropy/value": self.e_k,
            "entropy/coef": self.coef,
            "entropy/active": float(self.active),
        }


def step_seed(seed: int, step: int, round_: int = 0) -> int:
    """The sampling seed of a step (and refill round): a function of the run seed only, so a
    resumed run samples exactly what the uninterrupted one did."""
    return (seed * 1_000_003 + step * 101 + round_) % (2**31 - 1)


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


def rollout_metrics(groups: Sequence[Group], extra_rollouts: int) -> dict[str, float]:
    """Reward, length and filter statistics over every completion sampled in the step."""
    comps = [c for g in groups for c in g.completions]
    rewards = [r for g in groups for r in g.rewards]
    lengths = [len(c.response_ids) for c in comps]
    kept = sum(g.kept for g in groups)
    return {
        "reward/mean": sum(rewards) / len(rewards),
        "reward/kept_mean": (
            sum(r for g in groups if g.kept for r in g.rewards)
            / max(1, sum(len(g.rewards) for g in groups if g.kept))
        ),
        "response_length/mean": sum(lengths) / len(lengths),
        "response_length/max": float(max(lengths)),
        "response/truncated_frac": sum(c.truncated for c in comps) / len(comps),
        "filter/groups_kept": float(kept),
        "filter/groups_dropped": float(len(groups) - kept),
        "filter/extra_rollouts": float(extra_rollouts),
    }


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
