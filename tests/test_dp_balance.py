"""The token-balanced data-parallel split: the partition (by hand and against brute force) and
the exchange between two real processes."""

from __future__ import annotations

import itertools
import random

import pytest

from or1.rl.dp_balance import imbalance, partition
from tests.megatron_jobs import launch


def test_partition_longest_first_by_hand():
    # sorted: 12 (row 3) -> bin 0; 9 (row 1) -> bin 1; 7 (row 4) -> bin 1 (9 < 12);
    # 6 (row 0) -> bin 0 (12 < 16); 4 (row 2) -> bin 1 (16 < 18): loads 18 and 20
    lengths = [6, 9, 4, 12, 7]
    bins = partition(lengths, 2)
    assert bins == [0, 1, 1, 0, 1]
    assert imbalance(lengths, bins, 2) == pytest.approx(20 / 19)


def test_partition_is_within_four_thirds_of_the_best_split():
    rng = random.Random(0)
    for _ in range(200):
        n, bins = rng.randint(1, 8), rng.randint(2, 3)
        lengths = [rng.choice([rng.randint(1, 50), rng.randint(200, 2000)]) for _ in range(n)]
        got = partition(lengths, bins)
        loads = [sum(x for x, b in zip(lengths, got, strict=True) if b == k) for k in range(bins)]
        best = min(
            max(sum(x for x, b in zip(lengths, a, strict=True) if b == k) for k in range(bins))
            for a in itertools.product(range(bins), repeat=n)
        )
        assert max(loads) <= 4 / 3 * best + 1e-9
        assert len(got) == n and set(got) <= set(range(bins))


def test_a_long_tail_is_spread_not_strided():
    # one 1500-token sequence and 15 short ones: a stride split puts 1500 + 7 x 20 on one rank
    lengths = [1500] + [20] * 15
    bins = partition(lengths, 2)
    assert imbalance(lengths, bins, 2) == pytest.approx(1500 / ((1500 + 300) / 2))
    assert all(b == 1 for n, b in zip(lengths, bins, strict=True) if n == 20)


def test_two_processes_exchange_exactly_their_shares(tmp_path):
    # rank 0 generated rows a, b, c; rank 1 rows d, e (ids encode the row); DP=2
    rows = [
        [([3, 4, 5, 6, 7, 8], 2, 0.5, True), ([9] * 12, 3, -1.0, True), ([10] * 4, 1, 0.0, False)],
        [([11] * 9, 4, 2.5, True), ([12] * 7, 2, -0.25, True)],
    ]
    out = launch("exchange", 2, tmp_path, rows_per_rank=rows, dp_of=[0, 1])
    # lengths in generation order: 6, 12, 4, 9, 7 -> bins 0, 0, 1, 1, 1 (12 -> 0, 9 -> 1,
    # 7 -> 1, 6 -> 0, 4 -> 1): rank 0 keeps rows a and b, rank 1 gets c and its own d, e
    flat = [r for part in rows for r in part]
    assert out["received"][0] == [flat[0], flat[1]]
    assert out["received"][1] == [flat[2], flat[3], flat[4]]
    assert out["imbalance"] == pytest.approx(20 / 19)
