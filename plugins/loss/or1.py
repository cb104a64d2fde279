"""The OR1 policy loss: PPO clipped surrogate, no KL, token-level mean over the whole batch.

Loss-normalisation contract: the step's loss is ``sum_{b,t} w[b,t] * l[b,t]`` over every row
of every data-parallel rank, where each rank computes the weights ``w`` of its own rows once
per step with the step's totals ``T`` (response tokens) and ``S`` (sequences) summed over all
data-parallel ranks (:class:`or1.core.types.LossTotals`); each micro-batch contributes
``sum(w * l)`` over its own rows and gradients are summed over micro-batches and ranks, never
averaged. Hence every mode except ``microbatch_token_mean`` gives the same loss and gradient
for any micro-batch or data-parallel split:

* ``token_mean`` (default, the paper): ``w = m / T`` over all response tokens of the step;
* ``seq_mean_token_sum``: ``w = m / S`` (S sequences): per-sequence token sums, averaged;
* ``seq_mean_token_mean``: ``w = m / (S * len_s)``: per-sequence token means, averaged;
* ``microbatch_token_mean`` (the released scripts): within micro-batch ``j`` a token mean,
  weighted by its share of sequences: ``w = m / sum_j(m) * S_j / S``. Depends on the split.

Rollout correction (``rollout_correction``): a detached factor ``c[b,t]`` multiplies each
token's PPO term, from the learner's old log-probs ``old`` and the engine's sampling log-probs
``rollout`` (the KL-to-reference term and the entropy bonus are not corrected):

* ``none`` (default): ``c = 1``; the loss is exactly the uncorrected one;
* ``tis``: ``c = min(exp(old - rollout), tis_cap)``, token-level truncated importance sampling;
* ``seq_mask``: ``c[b] = 1`` if ``seq_mask_low <= exp(sum_t m (old - rollout) / sum_t m) <=
  seq_mask_high`` (the sequence's geometric-mean ratio), else 0.

The weights ``w`` and their totals ``T``/``S`` do not change: a masked sequence's tokens stay
in the normaliser (its loss terms are zero), so the correction keeps the split invariance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from or1.core.config import LossConfig
from or1.core.hookspecs import hookimpl
from or1.core.interfaces import PolicyLoss
from or1.core.types import LossTotals

AGG_MODES = ("token_mean", "seq_mean_token_sum", "seq_mean_token_mean", "microbatch_token_mean")
ROLLOUT_CORRECTIONS = ("none", "tis", "seq_mask")


@dataclass
class OR1LossConfig(LossConfig):
    name: str = "or1"
    agg: str = "token_mean"
    """Loss aggregation: token_mean (OR1: every token of the batch weighs the same),
    seq_mean_token_sum, seq_mean_token_mean or microbatch_token_mean."""
    clip_eps_low: float = 0.2
    """PPO clip below: the ratio is clipped at ``1 - clip_eps_low``."""
    clip_eps_high: float = 0.2  # > clip_eps_low: DAPO's clip-higher
    dual_clip: float | None = None  # e.g. 3.0: bound the loss of negative-advantage tokens
    kl_coef: float = 0.0  # > 0: add kl_coef * k3(policy || reference); 0: no reference model
    rollout_correction: str = "none"
    """Correction for the gap between the engine's sampling log-probs and the learner's old
    log-probs: none (strictly on-policy runs), tis (each token's PPO term weighted by
    min(exp(old - rollout), tis_cap), detached) or seq_mask (a sequence whose geometric-mean
    ratio exp(mean over its tokens of old - rollout) leaves [seq_mask_low, seq_mask_high]
    contributes no PPO term; its tokens stay in the loss normaliser)."""
    tis_cap: float = 2.0
    """rollout_correction=tis: the cap C of the per-token importance weight (> 0)."""
    seq_mask_low: float = 0.5
    """rollout_correction=seq_mask: the lowest geometric-mean ratio a sequence keeps (>= 0)."""
    seq_mask_high: float = 2.0
    """rollout_correction=seq_mask: the highest geometric-mean ratio a sequence keeps
    (> seq_mask_low)."""


def token_weights(
    mask: torch.Tensor,
    micro_batches: list[list[int]],
    agg: str,
    totals: LossTotals | None = None,
) -> torch.Tensor:
    """Aggregation weights for ``agg`` (see the module docstring) of this rank's rows, with
    the step's ``totals`` over every data-parallel rank (None: these rows are the step)."""
    m = mask.to(torch.float32)
    totals = totals or LossTotals.of(m)
    seqs = totals.sequences
    if agg == "token_mean":
        return m / max(totals.tokens, 1.0)
    if agg == "seq_mean_token_sum":
        return m / max(seqs, 1)
    if agg == "seq_mean_token_mean":
        return m / (m.sum(dim=1, keepdim=True).clamp(min=1.0) * max(seqs, 1))
    if agg == "microbatch_token_mean":
        w = torch.zeros_like(m)
        for rows in micro_batches:
            idx = torch.as_tensor(rows, dtype=torch.long)
            w[idx] = m[idx] / m[idx].sum().clamp(min=1.0) * (len(rows) / seqs)
        return w
    raise ValueError(f"unknown loss.agg '{agg}' (one of {AGG_MODES})")


def ppo_clip_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    eps_low: float,
    eps_high: float,
    dual_clip: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token ``max(-A r, -A clip(r, 1-eps_low, 1+eps_high))`` with ``r = exp(logp - old)``;
    with ``dual_clip = c`` the loss of tokens with ``A < 0`` is capped at ``-c A``.
    Returns ``(loss, clipped)`` where ``clipped`` marks tokens whose clipped term was taken."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped_term = -advantages * torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    loss = torch.maximum(unclipped, clipped_term)
    clipped = (clipped_term > unclipped).to(torch.float32)
    if dual_clip is not None:
        capped = torch.minimum(loss, -advantages * dual_clip)
        loss = torch.where(advantages < 0, capped, loss)
    return loss, clipped


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(policy || reference): ``exp(ref - logp) - (ref - logp) - 1``
    (non-negative, unbiased for samples from the policy)."""
    d = ref_logprobs - logprobs
    return torch.exp(d) - d - 1.0


def tis_weights(
    old_logprobs: torch.Tensor, rollout_logprobs: torch.Tensor, cap: float
) -> torch.Tensor:
    """Per-token truncated importance weights ``min(exp(old - rollout), cap)``, detached."""
    return torch.exp(old_logprobs - rollout_logprobs).clamp(max=cap).detach()


def seq_mask_keep(
    old_logprobs: torch.Tensor,
    rollout_logprobs: torch.Tensor,
    mask: torch.Tensor,
    low: float,
    high: float,
) -> torch.Tensor:
    """``[b, 1]``: 1.0 for the sequences whose geometric-mean ratio
    ``exp(sum_t m (old - rollout) / sum_t m)`` lies in ``[low, high]`` (a sequence without
    loss tokens has ratio 1), else 0.0; detached."""
    m = mask.to(torch.float32)
    log_ratio = ((old_logprobs - rollout_logprobs) * m).sum(dim=1, keepdim=True)
    ratio = torch.exp(log_ratio / m.sum(dim=1, keepdim=True).clamp(min=1.0))
    return ((ratio >= low) & (ratio <= high)).to(torch.float32).detach()


class OR1Loss(PolicyLoss):
    @classmethod
    def check_config(cls, cfg: Any) -> None:
        from or1.core.errors import ConfigError

        if cfg.agg not in AGG_MODES:
            raise ConfigError(f"loss.agg={cfg.agg} is not one of {', '.join(AGG_MODES)}")
        for key in ("kl_coef", "clip_eps_low", "clip_eps_high"):
            if getattr(cfg, key) < 0:
                raise ConfigError(f"loss.{key}={getattr(cfg, key)} must be >= 0")
        if cfg.dual_clip is not None and cfg.dual_clip <= 1:
            raise ConfigError(f"loss.dual_clip={cfg.dual_clip} must be > 1 (or null)")
        if cfg.rollout_correction not in ROLLOUT_CORRECTIONS:
            raise ConfigError(
                f"loss.rollout_correction={cfg.rollout_correction} is not one of "
                f"{', '.join(ROLLOUT_CORRECTIONS)}"
            )
        if cfg.tis_cap <= 0:
            raise ConfigError(f"loss.tis_cap={cfg.tis_cap} must be > 0")
        if cfg.seq_mask_low < 0:
            raise ConfigError(f"loss.seq_mask_low={cfg.seq_mask_low} must be >= 0")
        if cfg.seq_mask_high <= cfg.seq_mask_low:
            raise ConfigError(
                f"loss.seq_mask_high={cfg.seq_mask_high} must be > "
                f"loss.seq_mask_low={cfg.seq_mask_low}"
            )

    def __init__(self, cfg: Any, ctx: Any = None) -> None:
        self.check_config(cfg)
        self.cfg = cfg
        self.needs_reference = cfg.kl_coef > 0
        self.needs_rollout_logprobs = cfg.rollout_correction != "none"

    def token_weights(
        self,
        response_mask: torch.Tensor,
        micro_batches: list[list[int]],
        totals: LossTotals | None = None,
    ) -> torch.Tensor:
        return token_weights(response_mask, micro_batches, self.cfg.agg, totals)

    def per_token_loss(
        self,
        logprobs: torch.Tensor,
        old_logprobs: torch.Tensor,
        advantages: torch.Tensor,
        mask: torch.Tensor,
        ref_logprobs: torch.Tensor | None = None,
        rollout_logprobs: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, clipped = ppo_clip_loss(
            logprobs,
            old_logprobs,
            advantages,
            self.cfg.clip_eps_low,
            self.cfg.clip_eps_high,
            self.cfg.dual_clip,
        )
        stats = {"clipfrac": clipped, "approx_kl": k3_kl(logprobs.detach(), old_logprobs)}
        if self.needs_rollout_logprobs:
            if rollout_logprobs is None:
                raise ValueError(
                    f"loss.rollout_correction={self.cfg.rollout_correction} needs rollout_logprobs"
                )
            old = old_logprobs.detach()
            if self.cfg.rollout_correction == "tis":
                factor = tis_weights(old, rollout_logprobs, self.cfg.tis_cap)
                stats["tis_weight"] = factor
                stats["tis_capped"] = (factor >= self.cfg.tis_cap).to(torch.float32)
            else:
                keep = seq_mask_keep(
                    old, rollout_logprobs, mask, self.cfg.seq_mask_low, self.cfg.seq_mask_high
                )
                factor = keep.expand_as(loss)
                stats["seq_masked"] = 1.0 - factor
            loss = factor * loss
        if self.needs_reference:
            if ref_logprobs is None:
                raise ValueError("loss.kl_coef > 0 needs ref_logprobs")
            kl = k3_kl(logprobs, ref_logprobs)
            loss = loss + self.cfg.kl_coef * kl
            stats["kl_ref"] = kl.detach()
        return loss, stats


@hookimpl
def or1_register(register: Any) -> None:
    register("loss", "or1", OR1Loss, OR1LossConfig)
