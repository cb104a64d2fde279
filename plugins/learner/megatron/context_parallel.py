"""Which tokens of a packed micro-batch each context-parallel rank holds.

Megatron-core's context parallelism (Transformer Engine's THD attention with a CP group)
expects the load-balanced layout: every sequence is padded to a multiple of ``2 * cp`` tokens
and cut into ``2 * cp`` equal chunks, and CP rank ``r`` holds chunks ``r`` and
``2 * cp - 1 - r`` of every sequence (a causal mask makes late chunks costlier; pairing an
early with a late chunk evens the work), in sequence order. ``cu_seqlens_*_padded`` in
``PackedSeqParams`` are the padded boundaries. Pure index arithmetic: unit-tested on CPU.
"""

from __future__ import annotations

import itertools

import torch


def padded_lengths(lengths: list[int], cp: int) -> list[int]:
    """Each length rounded up to a multiple of ``2 * cp``."""
    unit = 2 * cp
    return [-(-n // unit) * unit for n in lengths]


def partition(lengths: list[int], cp: int, rank: int) -> torch.Tensor:
    """Indices, into the padded packed row (sequences end to end, each padded to
    :func:`padded_lengths`), of the tokens CP rank ``rank`` holds, in the order it holds
    them."""
    if not 0 <= rank < cp:
        raise ValueError(f"context-parallel rank {rank} is not in [0, {cp})")
    padded = padded_lengths(lengths, cp)
    starts = [0, *itertools.accumulate(padded)][:-1]
    pieces = []
    for start, n in zip(starts, padded, strict=True):
        chunk = n // (2 * cp)
        for c in (rank, 2 * cp - 1 - rank):
            pieces.append(torch.arange(start + c * chunk, start + (c + 1) * chunk))
    return torch.cat(pieces) if pieces else torch.zeros(0, dtype=torch.long)
