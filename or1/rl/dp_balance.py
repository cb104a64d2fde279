"""The token-balanced data-parallel split: which learner rank trains which sequence.

Each rank holds the sequences its own engine generated. Before the learner step, the
sequences of all ranks are partitioned among the learner's data-parallel ranks by token
count (greedy longest-first), so that the long tail of a long-context stage does not make one
rank the straggler; each sequence then travels once, from the rank that generated it to the
ranks of its data-parallel index (every tensor-parallel rank of it), as one tensor exchange.
No rank receives more than its own share; only the lengths are gathered everywhere.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import torch
import torch.distributed as dist

from or1.launch import distributed
from or1.rl.batch import SequenceRow


def partition(lengths: Sequence[int], bins: int) -> list[int]:
    """The bin of each item: greedy longest-first (LPT). Items in decreasing length (ties:
    lower index first) each go to the bin with the fewest tokens so far (ties: lower bin).
    Deterministic, so every rank computes the same split from the same lengths; the largest
    bin holds at most 4/3 of the optimum."""
    heap = [(0, b) for b in range(bins)]
    out = [0] * len(lengths)
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        load, b = heapq.heappop(heap)
        out[i] = b
        heapq.heappush(heap, (load + lengths[i], b))
    return out


def imbalance(lengths: Sequence[int], bins: Sequence[int], count: int) -> float:
    """Max over mean of the tokens per bin (1.0: perfectly even; 0 tokens: 1.0)."""
    tokens = [0] * count
    for n, b in zip(lengths, bins, strict=True):
        tokens[b] += n
    mean = sum(tokens) / count
    return max(tokens) / mean if mean > 0 else 1.0


def _encode(rows: Sequence[SequenceRow]) -> torch.Tensor:
    """``[len, start, advantage, in_loss, k, ids..., logprobs...]`` per row, flat float64
    (ids < 2**53; ``k`` sampling log-probs, -1 when the row has none; exact, as Python floats
    are float64)."""
    parts = [
        torch.tensor(
            [
                len(r.ids),
                r.start,
                r.advantage,
                float(r.in_loss),
                -1 if r.logprobs is None else len(r.logprobs),
                *r.ids,
                *(r.logprobs or ()),
            ],
            dtype=torch.float64,
        )
        for r in rows
    ]
    return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)


def _decode(flat: torch.Tensor) -> list[SequenceRow]:
    values, rows, i = flat.tolist(), [], 0
    while i < len(values):
        n, start, adv, in_loss, k = values[i : i + 5]
        n, k = int(n), int(k)
        ids = [int(t) for t in values[i + 5 : i + 5 + n]]
        logprobs = tuple(values[i + 5 + n : i + 5 + n + k]) if k >= 0 else None
        rows.append(SequenceRow(ids, int(start), adv, in_loss > 0, logprobs))
        i += 5 + n + max(k, 0)
    return rows


def balance(
    rows: Sequence[SequenceRow], dp_rank: int, dp_size: int
) -> tuple[list[SequenceRow], float]:
    """This rank's share of every rank's ``rows`` for data-parallel rank ``dp_rank`` of
    ``dp_size``, in a fixed order (by generating rank, then by position there), and the
    split's token imbalance (:func:`imbalance`). A collective: every rank calls it at once.
    In one process: ``rows`` unchanged and 1.0."""
    if not distributed.multi():
        return list(rows), 1.0
    world, me = distributed.world_size(), distributed.rank()
    info = distributed.all_gather_object(([len(r.ids) for r in rows], dp_rank, dp_size))
    if len({size for _, _, size in info}) != 1:
        raise RuntimeError(f"ranks disagree on the data-parallel size: {[s for _, _, s in info]}")
    dp_of = [d for _, d, _ in info]
    owners = [(r, j) for r, (lens, _, _) in enumerate(info) for j in range(len(lens))]
    lengths = [info[r][0][j] for r, j in owners]
    bins = partition(lengths, dp_size)
    # what this rank sends to each rank: its rows whose bin is that rank's dp index
    mine = [bins[k] for k, (r, _) in enumerate(owners) if r == me]
    send = [
        _encode([row for row, b in zip(rows, mine, strict=True) if b == dp_of[dst]])
        for dst in range(world)
    ]
    all_sizes = distributed.all_gather_object([len(t) for t in send])  # [src][dst]
    recv = [torch.empty(all_sizes[src][me], dtype=torch.float64) for src in range(world)]
    ops, group = [], distributed.control_group()  # gloo: host tensors on any backend
    for peer in range(world):
        if peer == me:
            recv[peer] = send[peer]
            continue
        if len(send[peer]):
            ops.append(dist.P2POp(dist.isend, send[peer], peer, group))
        if len(recv[peer]):
            ops.append(dist.P2POp(dist.irecv, recv[peer], peer, group))
    if ops:
        for work in dist.batch_isend_irecv(ops):
            work.wait()
    received = [row for src in range(world) for row in _decode(recv[src])]
    return received, imbalance(lengths, bins, dp_size)
