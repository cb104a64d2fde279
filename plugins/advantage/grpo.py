"""GRPO group-normalised advantages (Skywork-OR1 default): ``(r - mean) / (std + eps)``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from or1.core.config import AdvantageConfig
from or1.core.hookspecs import hookimpl
from or1.core.interfaces import AdvantageEstimator
from or1.core.types import TRUNCATION_MODES


@dataclass
class GRPOConfig(AdvantageConfig):
    name: str = "grpo"
    eps: float = 1e-6
    """Added to the group's std before dividing: ``(r - mean) / (std + eps)``."""
    norm_by_std: bool = True  # false: Dr. GRPO style (r - mean) only


class GRPOAdvantage(AdvantageEstimator):
    """Per group: ``A_i = (r_i - mean(r)) / (std(r) + eps)`` with the unbiased std.

    A group whose statistics rest on fewer than two completions has std 0. Under
    ``mask_before`` truncated completions are left out of mean and std; under ``mask_after``
    they count in both; under both masks their own advantage is 0.
    """

    def __init__(self, cfg: Any, ctx: Any = None) -> None:
        self.eps = float(cfg.eps)
        self.norm_by_std = bool(cfg.norm_by_std)

    def compute(
        self, rewards: torch.Tensor, truncated: torch.Tensor, truncation: str
    ) -> torch.Tensor:
        if truncation not in TRUNCATION_MODES:
            raise ValueError(f"unknown truncation mode '{truncation}' (one of {TRUNCATION_MODES})")
        r = rewards.to(torch.float64)
        in_stats = ~truncated if truncation == "mask_before" else torch.ones_like(truncated)
        w = in_stats.to(torch.float64)
        count = w.sum(dim=1, keepdim=True)
        mean = (r * w).sum(dim=1, keepdim=True) / count.clamp(min=1)
        var = ((r - mean) ** 2 * w).sum(dim=1, keepdim=True) / (count - 1).clamp(min=1)
        std = torch.where(count > 1, var.sqrt(), torch.zeros_like(var))
        adv = r - mean
        if self.norm_by_std:
            adv = adv / (std + self.eps)
        if truncation != "none":
            adv = torch.where(truncated, torch.zeros_like(adv), adv)
        return adv.to(torch.float32)


@hookimpl
def or1_register(register: Any) -> None:
    register("advantage", "grpo", GRPOAdvantage, GRPOConfig)
