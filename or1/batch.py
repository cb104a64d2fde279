"""From scored groups to the learner's padded tensors, and micro-batches by token budget."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

from or1.interfaces import PolicyLoss
from or1.types import Group, TrainBatch


def loss_mask_flags(groups: Sequence[Group], truncation: str) -> list[list[bool]]:
    """Per completion: does it enter the loss? Truncated ones do not under a mask mode."""
    masked = truncation in ("mask_after", "mask_before")
    return [[not (masked and c.truncated) for c in g.completions] for g in groups]


def collate(
    groups: Sequence[Group],
    pad_id: int,
    truncation: str,
    temperature: float,
    micro_batch_tokens: int = 0,
) -> TrainBatch:
    """Stack every completion of ``groups`` (which must have advantages) into a TrainBatch.

    Sequences are ``prompt_ids + response_ids``, right-padded with ``pad_id``; the response
    mask covers the response tokens (EOS included) of completions that enter the loss, and
    each completion's scalar advantage is broadcast over those tokens.
    """
    seqs: list[list[int]] = []
    starts: list[int] = []
    advs: list[float] = []
    in_loss: list[bool] = []
    for g, flags in zip(groups, loss_mask_flags(groups, truncation), strict=True):
        for c, a, flag in zip(g.completions, g.advantages, flags, strict=True):
            seqs.append(list(c.prompt_ids) + list(c.response_ids))
            starts.append(len(c.prompt_ids))
            advs.append(float(a))
            in_loss.append(flag)
    lens = [len(s) for s in seqs]
    width = max(lens)
    b = len(seqs)
    input_ids = torch.full((b, width), pad_id, dtype=torch.long)
    attention = torch.zeros((b, width), dtype=torch.long)
    response = torch.zeros((b, width), dtype=torch.float32)
    for i, s in enumerate(seqs):
        input_ids[i, : lens[i]] = torch.tensor(s, dtype=torch.long)
        attention[i, : lens[i]] = 1
        if in_loss[i]:
            response[i, starts[i] : lens[i]] = 1.0
    advantages = response * torch.tensor(advs, dtype=torch.float32)[:, None]
    return TrainBatch(
        input_ids, attention, response, advantages, lens, temperature, micro_batch_tokens
    )


def split_by_token_budget(seq_lens: Sequence[int], budget: int) -> list[list[int]]:
    """Consecutive row indices packed into micro-batches of at most ``budget`` tokens each
    (counting unpadded lengths); a single longer sequence gets a micro-batch of its own.
    ``budget <= 0`` means one micro-batch."""
    if budget <= 0:
        return [list(range(len(seq_lens)))]
    out: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i, n in enumerate(seq_lens):
        if current and used + n > budget:
            out.append(current)
            current, used = [], 0
        current.append(i)
        used += n
    if current:
        out.append(current)
    return out


def masked_mean(values: torch.Tensor, weights: torch.Tensor) -> float:
    """``sum(values * weights) / sum(weights)``, 0.0 when the weights are all zero."""
    total = float(weights.sum())
    return float((values * weights).sum()) / total if total > 0 else 0.0


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
    weights: torch.Tensor,
    entropy_coef: float,
    grad_norm: float,
    micro_batches: int,
    fused: bool,
) -> dict[str, float]:
    """The end of every learner's optimisation step, after the gradients of all micro-batches
    (and ranks) are summed and clipped: step the optimiser only if the loss and the gradient
    norm are finite (else weights and optimiser state stay untouched), clear the gradients,
    and return the step's metrics: ``loss/pg`` and ``loss/entropy`` as summed (already
    weighted by the global token weights), every other ``loss/<name>`` statistic divided by
    the total weight, ``loss/total``, ``grad_norm``, ``train/nonfinite``,
    ``learner/micro_batches``, ``learner/lr`` and ``learner/fused_old_logprobs``."""
    finite = math.isfinite(grad_norm) and math.isfinite(sums["loss/pg"] + sums["loss/entropy"])
    if finite:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    weight_total = float(weights.sum())
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
