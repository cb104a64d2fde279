"""From scored groups to the learner's padded tensors, and micro-batches by token budget."""

from __future__ import annotations

from collections.abc import Sequence

import torch

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
