"""Several optimiser steps per rollout batch (``trainer.updates_per_step``).

The step's kept groups are cut into mini-batches of whole groups (:func:`split_groups`); the
sampling policy's log-probs and entropies of every mini-batch are computed before the first
update (:func:`sequential_updates`), so the entropy coefficient is measured over the whole
step and updates ``2..k`` see a policy that has moved (their PPO ratios differ from 1 and the
clip matters); then each mini-batch is one ``Learner.train_step``. Each mini-batch is a
separate update: its loss is normalised by its own totals (``PolicyLoss.token_weights`` with
the mini-batch's ``LossTotals``, summed over the data-parallel ranks), as one update of the
whole batch is by the batch's.
"""

from __future__ import annotations

from collections.abc import Sequence

from or1.core.interfaces import Learner, PolicyLoss
from or1.core.types import Group, TrainBatch
from or1.launch import distributed
from or1.rl.learner_step import EntropyCoefficient


def split_groups(kept: Sequence[Group], updates: int) -> list[list[Group]]:
    """This rank's part of each of the step's mini-batches. The kept groups of every rank, in
    the global order (by rank, then by position on it), are cut into ``min(updates, N)``
    consecutive runs (``N`` groups in all) whose sizes differ by at most one, the longer runs
    first (``numpy.array_split``'s sizes): with ``N = 5`` and 2 updates, groups 0-2 and 3-4.
    Every rank returns the same number of lists (some possibly empty on a rank: another rank
    holds that mini-batch's groups). Collective (the counts are gathered); in one process the
    kept groups themselves are cut."""
    if updates < 1:
        from or1.core.errors import ConfigError

        raise ConfigError(f"trainer.updates_per_step={updates} must be >= 1")
    counts = distributed.all_gather_object(len(kept))
    total = sum(counts)
    offset = sum(counts[: distributed.rank()]) if len(counts) > 1 else 0
    parts = max(1, min(updates, total))
    size, longer = divmod(total, parts)
    bounds = [0]
    for j in range(parts):
        bounds.append(bounds[-1] + size + (1 if j < longer else 0))
    return [
        [g for i, g in enumerate(kept) if bounds[j] <= offset + i < bounds[j + 1]]
        for j in range(parts)
    ]


def sequential_updates(
    learner: Learner,
    loss: PolicyLoss,
    entropy_coef: EntropyCoefficient,
    batches: Sequence[TrainBatch],
) -> dict[str, float]:
    """One optimiser step per mini-batch of ``batches`` (this rank's share of each), in order.

    First, before any update, every mini-batch's ``old_logprobs`` (the sampling policy's:
    ``learner.compute_logprobs``) and entropies; the entropy coefficient of the step comes
    from all of them (:meth:`EntropyCoefficient.of_parts`) and is the same for every update.
    Then ``learner.train_step`` on each mini-batch with that coefficient. A collective under
    torchrun (every rank calls the learner for every mini-batch, with or without rows).

    Returns the step's metrics (:func:`combine_updates`) and, per update ``j`` (1-based),
    its ``loss/*`` statistics and ``grad_norm`` as ``update/<j>/<name>``."""
    parts = []
    for batch in batches:
        old, entropy = learner.compute_logprobs(batch)
        batch.old_logprobs = old
        parts.append((batch.response_mask, old, entropy))
    coef = entropy_coef.of_parts(parts)
    results = [learner.train_step(batch, loss, coef) for batch in batches]
    tokens = distributed.all_reduce([float(b.response_mask.sum()) for b in batches])
    out = combine_updates(results, tokens)
    for j, metrics in enumerate(results, start=1):
        out |= {
            f"update/{j}/{k}": v
            for k, v in metrics.items()
            if k.startswith("loss/") or k == "grad_norm"
        }
    return out


MAX_OVER_UPDATES = ("train/nonfinite", "mismatch/ratio_max")
SUM_OVER_UPDATES = ("learner/micro_batches",)


def combine_updates(
    results: Sequence[dict[str, float]], tokens: Sequence[float]
) -> dict[str, float]:
    """The step's metrics from its updates' (``results[j]``, with ``tokens[j]`` the response
    tokens of mini-batch ``j``, any constant multiple of them will do): each metric's mean
    over the updates weighted by their tokens (so ``loss/pg``, ``loss/entropy`` and the
    per-token statistics are the token means over the whole batch, as after a single update,
    and ``mismatch/*`` the step's token means), except the maximum of
    :data:`MAX_OVER_UPDATES`, the sum of :data:`SUM_OVER_UPDATES`, ``learner/lr`` of the last
    update and ``learner/fused_old_logprobs`` 0 (the old log-probs had their own pass). A
    metric some update lacks (``mismatch/*`` of a mini-batch without tokens) is combined over
    the updates that have it. Adds ``train/updates``, the number of updates."""
    out: dict[str, float] = {}
    keys = list(dict.fromkeys(k for r in results for k in r))
    for key in keys:
        have = [(r[key], w) for r, w in zip(results, tokens, strict=True) if key in r]
        values = [v for v, _ in have]
        if key in MAX_OVER_UPDATES:
            out[key] = max(values)
        elif key in SUM_OVER_UPDATES:
            out[key] = float(sum(values))
        elif key == "learner/lr":
            out[key] = values[-1]
        else:
            weight = sum(w for _, w in have)
            if weight > 0:
                out[key] = sum(v * w for v, w in have) / weight
            else:
                out[key] = sum(values) / len(values)
    out["learner/fused_old_logprobs"] = 0.0
    out["train/updates"] = float(len(results))
    return out
