"""What every learner's optimisation step shares, so the loss-normalisation contract and the
step's metrics live in one place: the optimiser, one micro-batch's backward pass, the fused
on-policy step's old log-probs, and the end of the step."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
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
    ``sums``. Every learner calls it, so the normalisation contract lives in one place."""
    per_token, stats = loss.per_token_loss(
        logprobs, sub.old_logprobs, sub.advantages, sub.response_mask, sub.ref_logprobs
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
) -> dict[str, float]:
    """The end of every learner's optimisation step, after the gradients of all micro-batches
    (and ranks) are summed and clipped: step the optimiser only if the loss and the gradient
    norm are finite (else weights and optimiser state stay untouched; ``step`` replaces
    ``optimizer.step`` where the learner updates its own way), clear the gradients,
    and return the step's metrics: ``loss/pg`` and ``loss/entropy`` as summed (already
    weighted by the global token weights), every other ``loss/<name>`` statistic divided by
    ``weight_total`` (the sum of the token weights over every rank), ``loss/total``, ``grad_norm``, ``train/nonfinite``,
    ``learner/micro_batches``, ``learner/lr`` and ``learner/fused_old_logprobs``."""
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
    return out
