"""From scored groups to the learner's padded tensors, and micro-batches by token budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from or1.core.types import Completion, Group, TrainBatch


def loss_mask_flags(groups: Sequence[Group], truncation: str) -> list[list[bool]]:
    """Per completion: does it enter the loss? Truncated ones do not under a mask mode."""
    masked = truncation in ("mask_after", "mask_before")
    return [[not (masked and c.truncated) for c in g.completions] for g in groups]


@dataclass(frozen=True)
class SequenceRow:
    """One completion as the learner needs it: ``prompt_ids + response_ids``, where the
    response starts, its scalar advantage, whether it enters the loss and the engine's
    sampling log-probs of its response tokens (``Completion.logprobs``; None when the engine
    returned none, or not one per response token). What travels between data-parallel ranks
    (:mod:`or1.rl.dp_balance`)."""

    ids: list[int]
    start: int
    advantage: float
    in_loss: bool
    logprobs: tuple[float, ...] | None = None


def response_logprobs(c: Completion) -> tuple[float, ...] | None:
    """The completion's sampling log-probs, or None unless there is one per response token."""
    if len(c.logprobs) != len(c.response_ids):
        return None
    return tuple(float(v) for v in c.logprobs)


def sequence_rows(groups: Sequence[Group], truncation: str) -> list[SequenceRow]:
    """Every completion of ``groups`` (which must have advantages), group by group."""
    rows = []
    for g, flags in zip(groups, loss_mask_flags(groups, truncation), strict=True):
        for c, a, flag in zip(g.completions, g.advantages, flags, strict=True):
            rows.append(
                SequenceRow(
                    list(c.prompt_ids) + list(c.response_ids),
                    len(c.prompt_ids),
                    float(a),
                    flag,
                    response_logprobs(c),
                )
            )
    return rows


def rows_to_batch(
    rows: Sequence[SequenceRow], pad_id: int, temperature: float, micro_batch_tokens: int = 0
) -> TrainBatch:
    """Right-pad ``rows`` with ``pad_id`` into a TrainBatch: the response mask covers the
    response tokens (EOS included) of rows that enter the loss, and each row's advantage is
    broadcast over those tokens. ``rollout_logprobs`` holds each row's sampling log-probs at
    its response positions (0 elsewhere) when every row has them, else it is None. No rows: a
    batch of zero sequences (a data-parallel rank without a share still joins the step's
    reductions)."""
    lens = [len(r.ids) for r in rows]
    width = max(lens, default=1)
    b = len(rows)
    input_ids = torch.full((b, width), pad_id, dtype=torch.long)
    attention = torch.zeros((b, width), dtype=torch.long)
    response = torch.zeros((b, width), dtype=torch.float32)
    have_logprobs = all(r.logprobs is not None for r in rows)
    sampled = torch.zeros((b, width), dtype=torch.float32)
    for i, r in enumerate(rows):
        input_ids[i, : lens[i]] = torch.tensor(r.ids, dtype=torch.long)
        attention[i, : lens[i]] = 1
        if r.in_loss:
            response[i, r.start : lens[i]] = 1.0
        if have_logprobs:
            sampled[i, r.start : lens[i]] = torch.tensor(r.logprobs, dtype=torch.float32)
    advs = torch.tensor([r.advantage for r in rows], dtype=torch.float32).reshape(b, 1)
    return TrainBatch(
        input_ids,
        attention,
        response,
        response * advs,
        lens,
        temperature,
        micro_batch_tokens,
        rollout_logprobs=sampled if have_logprobs else None,
    )


def collate(
    groups: Sequence[Group],
    pad_id: int,
    truncation: str,
    temperature: float,
    micro_batch_tokens: int = 0,
) -> TrainBatch:
    """Stack every completion of ``groups`` (which must have advantages) into a TrainBatch
    (:func:`sequence_rows`, then :func:`rows_to_batch`)."""
    return rows_to_batch(sequence_rows(groups, truncation), pad_id, temperature, micro_batch_tokens)


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
