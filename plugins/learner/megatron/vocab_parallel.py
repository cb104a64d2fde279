"""Per-token log-probs and full-vocabulary entropy from vocabulary-sharded logits.

Each tensor-parallel rank holds logits for its slice ``[start, start + V/tp)`` of the
vocabulary; the full ``[.., V]`` logits are never gathered. Only three ``[b, t]`` reductions
cross ranks (the max, the partition sum and two weighted sums), through Megatron's
``reduce_from_tensor_model_parallel_region`` (all-reduce forward, identity backward), so the
result is differentiable and equals the single-rank computation.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


def logprobs_and_entropy(
    local_logits: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    group: Any,
    tp: int,
    vocab_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log p(targets), H)``, each ``[b, t]`` float32, of ``softmax(logits / temperature)``.

    ``local_logits`` ``[b, t, V/tp]`` are this rank's vocabulary slice (rank r of ``group``
    holds ids ``[r V/tp, (r+1) V/tp)``); ``targets`` ``[b, t]`` are global token ids.
    ``H = log Z - sum_v p_v z_v`` with ``z = logits / T - max`` and ``Z = sum_v exp(z_v)``.
    Ids ``>= vocab_size`` (vocabulary padding) are left out of the distribution.
    """
    from megatron.core.tensor_parallel.mappings import reduce_from_tensor_model_parallel_region

    def reduce_sum(x: torch.Tensor) -> torch.Tensor:
        return x if tp == 1 else reduce_from_tensor_model_parallel_region(x, group=group)

    logits = local_logits.float() / temperature
    vocab_local = logits.shape[-1]
    start = (dist.get_rank(group) if tp > 1 else 0) * vocab_local
    padded = vocab_size is not None and start + vocab_local > vocab_size
    if padded:  # padding ids: -inf logits, i.e. probability 0
        real = torch.arange(start, start + vocab_local, device=logits.device) < vocab_size
        logits = logits.masked_fill(~real, float("-inf"))
    with torch.no_grad():
        top = logits.max(dim=-1).values
        if tp > 1:
            dist.all_reduce(top, op=dist.ReduceOp.MAX, group=group)
    z = logits - top.unsqueeze(-1)
    exp_z = z.exp()
    if padded:  # exp(-inf) = 0, and 0 * (-inf) must count as 0
        z = z.masked_fill(~real, 0.0)
    partition = reduce_sum(exp_z.sum(-1))
    local_ids = targets - start
    mine = (local_ids >= 0) & (local_ids < vocab_local)
    picked = z.gather(-1, local_ids.clamp(0, vocab_local - 1).unsqueeze(-1)).squeeze(-1)
    target_z = reduce_sum(torch.where(mine, picked, torch.zeros_like(picked)))
    log_partition = partition.log()
    logp = target_z - log_partition
    entropy = log_partition - reduce_sum((exp_z * z).sum(-1)) / partition
    return logp, entropy
