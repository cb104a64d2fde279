"""What every learner's optimisation step shares, so the loss-normalisation and entropy
contracts and the step's metrics live in one place: the optimiser, the entropy coefficient of
a step (:class:`EntropyCoefficient`, :class:`StepCoefficient`), the choice of the fused
on-policy step (:func:`on_policy_step`), one micro-batch's backward pass, the rollout/learner
mismatch metrics, and the end of the step. A learner supplies its forward pass and its
gradient reduction; it calls these pieces."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from or1.core.interfaces import EntropyController, Learner, PolicyLoss
from or1.core.types import TrainBatch
from or1.launch import distributed
from or1.rl.lr_schedule import LrCounter


def new_adamw(params: Iterable[torch.nn.Parameter], cfg: Any) -> torch.optim.AdamW:
    """AdamW with the learner config's ``lr``, ``betas`` and ``weight_decay``
    (:class:`or1.core.config.LearnerConfig`)."""
    return torch.optim.AdamW(
        params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay
    )


class EntropyCoefficient:
    """The entropy controller's decision for one step: measures ``e_k`` over the batch's
    response tokens from the pre-update log-probs / entropies (with the controller's
    ``estimator``) and asks ``controller.coefficient(e_k)`` once; the coefficient of the step
    is ``c_k`` (0 when the bonus is inactive). Keeps ``e_k``, ``coef`` and ``active`` for
    the step's metrics; the trainer calls ``controller.update(e_k)`` after the step.

    Called exactly once per step, by :func:`on_policy_step` (through the learner, inside
    the fused step) or by :func:`or1.rl.mini_batches.sequential_updates`, on the trainer's
    thread. Under torchrun every rank calls it with its own share at the same point: ``e_k``
    is the mean over the step's tokens of every rank (two summed scalars), the same on all.
    """

    def __init__(self, controller: EntropyController, response_mask: torch.Tensor) -> None:
        self.controller, self.mask = controller, response_mask
        self.e_k, self.coef, self.active = float("nan"), 0.0, False

    def __call__(self, old_logprobs: torch.Tensor, entropy: torch.Tensor) -> float:
        """The coefficient of a step given whole: this rank's ``[B, T]`` pre-update
        log-probs and entropies (as :meth:`~or1.core.interfaces.Learner.compute_logprobs` returns
        them) over the rows of ``response_mask``."""
        return self.of_parts([(self.mask, old_logprobs, entropy)])

    def of_parts(self, parts: Sequence[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> float:
        """The same for a step given in parts (its mini-batches): ``(response_mask,
        old_logprobs, entropy)`` of each; ``e_k`` is the mean over the tokens of all of them
        (of every rank)."""
        full = self.controller.estimator == "full_vocab"
        total, weight = 0.0, 0.0
        for mask, old_logprobs, entropy in parts:
            values = entropy if full else -old_logprobs
            total += float((values * mask).sum())
            weight += float(mask.sum())
        total, weight = distributed.all_reduce([total, weight])
        self.e_k = total / weight if weight > 0 else 0.0
        self.coef, self.active = self.controller.coefficient(self.e_k)
        return self.coef if self.active else 0.0

    def metrics(self) -> dict[str, float]:
        return {
            "entropy/value": self.e_k,
            "entropy/coef": self.coef,
            "entropy/active": float(self.active),
        }


Measure = Callable[[torch.Tensor, torch.Tensor], float]
"""``measure(old_logprobs, entropy) -> coefficient``: an :class:`EntropyCoefficient`, or any
function of this rank's whole-batch ``[B, T]`` pre-update log-probs and entropies."""


class StepCoefficient:
    """The entropy coefficient of one learner optimisation step, and where the step's old
    log-probs come from; a learner's step loop asks it for the coefficient after each
    micro-batch's training forward (:meth:`of_micro_batch`) and once after the loop
    (:meth:`of_step`), and reports :attr:`fused` in ``learner/fused_old_logprobs``.

    :meth:`given`: ``train_step``'s fixed coefficient; ``batch.old_logprobs`` is set.
    :meth:`from_forward`: the fused on-policy step (the whole batch of every rank in one
    micro-batch): the training forward's detached, padding-masked log-probs are the old
    log-probs (the same values a separate ``compute_logprobs`` pass would give: the policy
    has not changed yet) and ``measure`` gets them with the entropies, once, before any
    backward."""

    def __init__(self, value: float | None, measure: Measure | None) -> None:
        self.value, self.measure = value, measure

    @classmethod
    def given(cls, value: float) -> StepCoefficient:
        return cls(float(value), None)

    @classmethod
    def from_forward(cls, measure: Measure) -> StepCoefficient:
        return cls(None, measure)

    @property
    def fused(self) -> bool:
        """True when the step's old log-probs come from its own training forward."""
        return self.measure is not None

    def of_micro_batch(
        self, batch: TrainBatch, sub: TrainBatch, logprobs: torch.Tensor, entropy: torch.Tensor
    ) -> float:
        """The coefficient for the backward of micro-batch ``sub`` of ``batch``, given its
        training forward's ``logprobs`` and ``entropy``. Fused (``sub`` is the whole batch):
        on the first call they become ``batch.old_logprobs`` (and ``sub``'s, on its device)
        and ``measure`` gives the coefficient."""
        if self.value is None:
            assert self.measure is not None
            mask = sub.attention_mask.to(logprobs.device)
            old = (logprobs.detach() * mask).cpu()
            self.value = float(self.measure(old, (entropy.detach() * mask).cpu()))
            batch.old_logprobs, sub.old_logprobs = old, old.to(logprobs.device)
        return self.value

    def of_step(self, batch: TrainBatch) -> float:
        """The step's coefficient, after its micro-batches. A fused step on a rank without
        rows (no forward ran) still joins ``measure``'s reduction over the ranks, with
        zeros that contribute nothing."""
        if self.value is None:
            assert self.measure is not None
            empty = torch.zeros(batch.input_ids.shape)
            batch.old_logprobs = empty
            self.value = float(self.measure(empty, empty))
        return self.value


def two_pass_step(
    learner: Learner, batch: TrainBatch, loss: PolicyLoss, measure: Measure
) -> dict[str, float]:
    """A strictly on-policy step in two passes: ``learner.compute_logprobs`` (the old
    log-probs and entropies, no gradient), the coefficient from them, then
    ``learner.train_step``."""
    old_logprobs, entropy = learner.compute_logprobs(batch)
    batch.old_logprobs = old_logprobs
    metrics = learner.train_step(batch, loss, measure(old_logprobs, entropy))
    return metrics | {"learner/fused_old_logprobs": 0.0}


def on_policy_step(
    learner: Learner, batch: TrainBatch, loss: PolicyLoss, measure: Measure
) -> dict[str, float]:
    """The trainer's strictly on-policy step (the recipe's one update per rollout batch): the
    one place the fused path is chosen. When ``learner.fuses_old_logprobs(batch)`` (every
    rank's share fits one training forward; collective), ``learner.fused_train_step`` takes
    the old log-probs from that forward (:meth:`StepCoefficient.from_forward`: one
    no-gradient pass less); otherwise :func:`two_pass_step`. Either way ``measure`` is
    called exactly once, before any gradient, with this rank's whole-batch ``[B, T]``
    pre-update log-probs and entropies, ``batch.old_logprobs`` is set to those log-probs,
    and the metrics are ``train_step``'s (``learner/fused_old_logprobs`` 1.0 when fused)."""
    if learner.fuses_old_logprobs(batch):
        return learner.fused_train_step(batch, loss, StepCoefficient.from_forward(measure))
    return two_pass_step(learner, batch, loss, measure)


MISMATCH_BAND = (0.5, 2.0)
"""``mismatch/ratio_outside_frac`` counts the tokens whose ratio leaves this closed band."""


@dataclass(frozen=True)
class MismatchSums:
    """One rank's sums behind the ``mismatch/*`` metrics, over the response tokens that enter
    the loss (``response_mask > 0``), with ``d = learner - sampler`` per token (the learner's
    old log-prob minus the engine's sampling log-prob) and the ratio ``r = exp(d)``:
    ``tokens`` counted, ``kl`` the sum of k3 ``= r - d - 1``, ``abs_diff`` the sum of
    ``|d|``, ``outside`` the count with ``r`` outside :data:`MISMATCH_BAND` and ``d_max`` the
    largest ``d`` (-inf without tokens). Ranks combine with ``+`` (sums added, maxima
    maximised), so the metrics are token means over the whole step, never means of means."""

    tokens: float = 0.0
    kl: float = 0.0
    abs_diff: float = 0.0
    outside: float = 0.0
    d_max: float = -math.inf

    @classmethod
    def of(cls, batch: TrainBatch) -> MismatchSums:
        """This rank's sums for ``batch`` (``old_logprobs`` set); zero without
        ``rollout_logprobs`` (an engine that returned none) or without rows."""
        if batch.rollout_logprobs is None or batch.old_logprobs is None:
            return cls()
        width = batch.old_logprobs.shape[1]  # a fused step's may be trimmed to its rows
        mask = batch.response_mask[:, :width] > 0
        if not bool(mask.any()):
            return cls()
        old = batch.old_logprobs.double()
        d = (old - batch.rollout_logprobs[:, :width].to(old))[mask]
        r = torch.exp(d)
        low, high = MISMATCH_BAND
        return cls(
            tokens=float(d.numel()),
            kl=float((r - d - 1.0).sum()),
            abs_diff=float(d.abs().sum()),
            outside=float(((r < low) | (r > high)).sum()),
            d_max=float(d.max()),
        )

    def __add__(self, other: MismatchSums) -> MismatchSums:
        return MismatchSums(
            self.tokens + other.tokens,
            self.kl + other.kl,
            self.abs_diff + other.abs_diff,
            self.outside + other.outside,
            max(self.d_max, other.d_max),
        )

    def metrics(self) -> dict[str, float]:
        """``mismatch/kl`` (token mean of k3: estimates KL(sampler || learner), the tokens
        being the sampler's), ``mismatch/logprob_abs_diff_mean``, ``mismatch/ratio_max``
        (``max exp(learner - sampler)``) and ``mismatch/ratio_outside_frac``; none without
        tokens."""
        if self.tokens <= 0:
            return {}
        return {
            "mismatch/kl": self.kl / self.tokens,
            "mismatch/logprob_abs_diff_mean": self.abs_diff / self.tokens,
            "mismatch/ratio_max": math.exp(self.d_max),
            "mismatch/ratio_outside_frac": self.outside / self.tokens,
        }


def backward_micro_batch(
    loss: PolicyLoss,
    sub: TrainBatch,
    weights: torch.Tensor,
    logprobs: torch.Tensor,
    entropy: torch.Tensor,
    entropy_coef: float,
    sums: dict[str, float],
) -> None:
    """One micro-batch of a learner's ``train_step``: backpropagate
    ``sum(w * l) - entropy_coef * sum(w * H)`` with the loss plugin's per-token terms ``l``
    and the batch-global token weights ``w`` of these rows, and add this micro-batch's
    ``loss/pg``, ``loss/entropy`` and weighted per-token statistics (``loss/<name>``) to
    ``sums``. Every learner calls it, so the normalisation contract lives in one place.
    A loss with ``needs_rollout_logprobs`` also gets ``sub.rollout_logprobs``."""
    extra = {}
    if getattr(loss, "needs_rollout_logprobs", False):
        if sub.rollout_logprobs is None:
            raise ValueError(
                "the loss's rollout correction needs the engine's sampling log-probs, and "
                "this batch has none (the rollout engine returned no Completion.logprobs)"
            )
        extra["rollout_logprobs"] = sub.rollout_logprobs
    per_token, stats = loss.per_token_loss(
        logprobs, sub.old_logprobs, sub.advantages, sub.response_mask, sub.ref_logprobs, **extra
    )
    pg = (weights * per_token).sum()
    ent = (weights * entropy).sum()
    (pg - entropy_coef * ent).backward()
    sums["loss/pg"] = sums.get("loss/pg", 0.0) + pg.item()
    sums["loss/entropy"] = sums.get("loss/entropy", 0.0) + ent.item()
    for name, value in stats.items():
        sums[f"loss/{name}"] = sums.get(f"loss/{name}", 0.0) + float((weights * value).sum())


def finish_step(
    optimizer: torch.optim.Optimizer,
    sums: dict[str, float],
    weight_total: float,
    entropy_coef: float,
    grad_norm: float,
    micro_batches: int,
    fused: bool,
    step: Callable[[], None] | None = None,
    mismatch: MismatchSums | None = None,
    lr_schedule: LrCounter | None = None,
) -> dict[str, float]:
    """The end of every learner's optimisation step, after the gradients of all micro-batches
    (and ranks) are summed and clipped: step the optimiser only if the loss and the gradient
    norm are finite (else weights and optimiser state stay untouched; ``step`` replaces
    ``optimizer.step`` where the learner updates its own way) at the rate ``lr_schedule``
    gives (set on ``optimizer.param_groups`` first; its place advances only when the step is
    taken), clear the gradients,
    and return the step's metrics: ``loss/pg`` and ``loss/entropy`` as summed (already
    weighted by the global token weights), every other ``loss/<name>`` statistic divided by
    ``weight_total`` (the sum of the token weights over every rank), ``loss/total``, ``grad_norm``, ``train/nonfinite``,
    ``learner/micro_batches``, ``learner/lr``, ``learner/fused_old_logprobs`` and the
    ``mismatch/*`` metrics of ``mismatch`` (the step's :class:`MismatchSums`, over every
    rank)."""
    finite = math.isfinite(grad_norm) and math.isfinite(sums["loss/pg"] + sums["loss/entropy"])
    if lr_schedule is not None:
        lr_schedule.apply(optimizer.param_groups)
    if finite:
        (step or optimizer.step)()
        if lr_schedule is not None:
            lr_schedule.advance()
    optimizer.zero_grad(set_to_none=True)
    out = {
        k: (v / weight_total if k not in ("loss/pg", "loss/entropy") and weight_total else v)
        for k, v in sums.items()
    }
    out["loss/total"] = out["loss/pg"] - entropy_coef * out["loss/entropy"]
    out["grad_norm"] = grad_norm
    out["train/nonfinite"] = float(not finite)
    out["learner/micro_batches"] = float(micro_batches)
    out["learner/lr"] = float(optimizer.param_groups[0]["lr"])
    out["learner/fused_old_logprobs"] = float(fused)
    out |= (mismatch or MismatchSums()).metrics()
    return out
