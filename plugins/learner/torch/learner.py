"""Plain PyTorch learner over ``transformers.AutoModelForCausalLM``.

The numerics reference for the Megatron learner: fp32 by default, per-token log-probs and
full-vocabulary entropy from the full logits, micro-batches by token budget with the loss's
global weights, AdamW and gradient-norm clipping.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from or1.core.atomic import atomic_path
from or1.core.config import LearnerConfig
from or1.core.interfaces import BuildContext, Learner, PolicyLoss
from or1.core.types import TrainBatch
from or1.rl.batch import split_by_token_budget
from or1.rl.learner_step import (
    MismatchSums,
    StepCoefficient,
    backward_micro_batch,
    finish_step,
    new_adamw,
)
from or1.rl.lr_schedule import LrCounter, LrSchedule

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class TorchLearnerConfig(LearnerConfig):
    name: str = "torch"
    dtype: str = "float32"
    """Weights and compute dtype: float32, bfloat16 or float16 (AdamW state in the same dtype)."""
    device: str = "auto"  # auto: cuda if available, else cpu
    gradient_checkpointing: bool = False
    """Recompute each layer's activations in the backward pass (Hugging Face's gradient
    checkpointing)."""


def token_logprobs_and_entropy(
    model: torch.nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    temperature: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, T]`` log-probs of each token given its prefix, and the entropy of that next-token
    distribution (logits / temperature, full vocabulary, in fp32); position 0 is 0."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits
    logits = logits[:, :-1].float() / temperature
    logp_all = F.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    zero = logp.new_zeros(logp.shape[0], 1)
    return torch.cat([zero, logp], dim=1), torch.cat([zero, entropy], dim=1)


class TorchLearner(Learner):
    @classmethod
    def check_model(cls, cfg: Any, hf_config: Any, model_path: Path) -> None:
        """Any causal LM that transformers implements (``AutoModelForCausalLM``)."""
        from or1.launch.model_support import check_transformers_causal_lm

        check_transformers_causal_lm(hf_config, model_path, "learner=torch")

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        if cfg.dtype not in DTYPES:
            from or1.core.errors import ConfigError

            raise ConfigError(f"learner.dtype={cfg.dtype} is not one of {', '.join(DTYPES)}")

    def __init__(self, cfg: Any, ctx: BuildContext) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.check_config(cfg)
        self.cfg = cfg
        self.model_path = ctx.model_path
        self.device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
        )
        self.model = AutoModelForCausalLM.from_pretrained(
            ctx.model_path, dtype=DTYPES[cfg.dtype]
        ).to(self.device)
        self.tokenizer = AutoTokenizer.from_pretrained(ctx.model_path)
        if cfg.gradient_checkpointing:
            self.model.gradient_checkpointing_enable()
        self.model.train()  # no dropout in these models' configs matters: eval/train are the same
        self.optimizer = self._new_optimizer()
        self.lr_schedule = LrCounter(LrSchedule.of(cfg))
        self.reference: torch.nn.Module | None = None

    def _new_optimizer(self) -> torch.optim.Optimizer:
        return new_adamw(self.model.parameters(), self.cfg)

    def _forward(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        return token_logprobs_and_entropy(
            self.model, batch.input_ids, batch.attention_mask, batch.temperature
        )

    def compute_logprobs(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        return self._no_grad_pass(self.model, batch)

    def compute_ref_logprobs(self, batch: TrainBatch) -> torch.Tensor:
        if self.reference is None:  # built on first use only: no KL, no reference model
            from transformers import AutoModelForCausalLM

            self.reference = AutoModelForCausalLM.from_pretrained(
                self.model_path, dtype=DTYPES[self.cfg.dtype]
            ).to(self.device)
            self.reference.requires_grad_(False)
        return self._no_grad_pass(self.reference, batch)[0]

    @torch.no_grad()
    def _no_grad_pass(
        self, model: torch.nn.Module, batch: TrainBatch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logp = torch.zeros(batch.input_ids.shape, dtype=torch.float32)
        ent = torch.zeros_like(logp)
        for rows in split_by_token_budget(batch.seq_lens, batch.micro_batch_tokens):
            sub = batch.select(rows).to(self.device)
            lp, h = token_logprobs_and_entropy(
                model, sub.input_ids, sub.attention_mask, sub.temperature
            )
            idx = torch.as_tensor(rows)
            width = lp.shape[1]
            logp[idx, :width] = (lp * sub.attention_mask).cpu()
            ent[idx, :width] = (h * sub.attention_mask).cpu()
        return logp, ent

    def train_step(
        self, batch: TrainBatch, loss: PolicyLoss, entropy_coef: float
    ) -> dict[str, float]:
        if batch.old_logprobs is None:
            raise ValueError("train_step needs batch.old_logprobs")
        return self._step(batch, loss, StepCoefficient.given(entropy_coef))

    def fuses_old_logprobs(self, batch: TrainBatch) -> bool:
        """When the batch is one micro-batch."""
        return len(split_by_token_budget(batch.seq_lens, batch.micro_batch_tokens)) == 1

    def fused_train_step(
        self, batch: TrainBatch, loss: PolicyLoss, coefficient: StepCoefficient
    ) -> dict[str, float]:
        return self._step(batch, loss, coefficient)

    def _step(
        self, batch: TrainBatch, loss: PolicyLoss, coefficient: StepCoefficient
    ) -> dict[str, float]:
        """The forward, backward and gradient clipping of one optimisation step; the entropy
        coefficient (and, fused, the old log-probs) from ``coefficient``."""
        micro = split_by_token_budget(batch.seq_lens, batch.micro_batch_tokens)
        weights = loss.token_weights(batch.response_mask, micro)
        sums: dict[str, float] = {"loss/pg": 0.0, "loss/entropy": 0.0}
        self.optimizer.zero_grad(set_to_none=True)
        for rows in micro:
            sub = batch.select(rows).to(self.device)
            w = weights[torch.as_tensor(rows), : sub.input_ids.shape[1]].to(self.device)
            logp, entropy = self._forward(sub)
            coef = coefficient.of_micro_batch(batch, sub, logp, entropy)
            backward_micro_batch(loss, sub, w, logp, entropy, coef, sums)
        coef = coefficient.of_step(batch)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        return finish_step(
            self.optimizer,
            sums,
            float(weights.sum()),
            coef,
            float(grad_norm),
            len(micro),
            coefficient.fused,
            mismatch=MismatchSums.of(batch),  # batch.old_logprobs: set by now
            lr_schedule=self.lr_schedule,
        )

    def named_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        for name, tensor in self.model.state_dict().items():
            yield name, tensor.detach()

    def save_pretrained(self, path: Path) -> None:
        with atomic_path(Path(path)) as tmp:
            self.model.save_pretrained(tmp, safe_serialization=True)
            self.tokenizer.save_pretrained(tmp)

    def reset_optimizer(self) -> None:
        self.optimizer = self._new_optimizer()

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "lr_updates": self.lr_schedule.updates,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_schedule.load(state.get("lr_updates", 0))  # absent: written before the schedule
