"""What every learner's optimisation step shares, so the loss-normalisation contract and the
step's metrics live in one place: the optimiser, one micro-batch's backward pass, the fused
on-policy step's old log-probs, the rollout/learner mismatch metrics, and the end of the step."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch

from or1.interfaces import PolicyLoss
from or1.types import TrainBatch


def new_adamw(params: Iterable[torch.nn.Parameter], cfg: Any) -> torch.optim.AdamW:
    """AdamW with the learner config's ``lr``, ``betas`` and ``weight_decay``
    (:class:`or1.config.LearnerConfig`)."""
    return torch.optim.AdamW(
        params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay
    )


def take_old_logprobs(
    batch: TrainBatch,
    sub: TrainBatch,
    logprobs: torch.Tensor,
    entropy: torch.Tensor,
    entropy_coef: Callable[[torch.Tensor, torch.Tensor], float],
) -> float:
    """The fused on-policy step (``Learner.on_policy_step`` with the whole batch in one
    micro-batch ``sub``): the training forward's detached, padding-masked log-probs become the
    old log-probs of ``batch`` (and of ``sub``, on its device), and ``entropy_coef`` gets them
    with the entropies exactly as ``compute_logprobs`` would return them. Returns the
    coefficient."""
    mask = sub.attention_mask.to(logprobs.device)
    old = (logprobs.detach() * mask).cpu()
    coef = float(entropy_coef(old, (entropy.detach() * mask).cpu()))
    batch.old_logprobs, sub.old_logprobs = old, old.to(logprobs.device)
    return coef


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
) -> dict[str, float]:
    """The end of every learner's optimisation step, after the gradients of all micro-batches
    (and ranks) are summed and clipped: step the optimiser only if the loss and the gradient
    norm are finite (else weights and optimiser state stay untouched; ``step`` replaces
    ``optimizer.step`` where the learner updates its own way), clear the gradients,
    and return the step's metrics: ``loss/pg`` and ``loss/entropy`` as summed (already
    weighted by the global token weights), every other ``loss/<name>`` statistic divided by
    ``weight_total`` (the sum of the token weights over every rank), ``loss/total``, ``grad_norm``, ``train/nonfinite``,
    ``learner/micro_batches``, ``learner/lr``, ``learner/fused_old_logprobs`` and the
    ``mismatch/*`` metrics of ``mismatch`` (the step's :class:`MismatchSums`, over every
    rank)."""
    finite = math.isfinite(grad_norm) and math.isfinite(sums["loss/pg"] + sums["loss/entropy"])
    if finite:
        (step or optimizer.step)()
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
