"""Sampling with ``transformers`` generate: portable, exact, and the numerics reference for
the vLLM engine. Its own copy of the policy receives weights by HF parameter name."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from or1.core.config import RolloutConfig
from or1.core.interfaces import BuildContext, RolloutEngine
from or1.core.types import FINISH_LENGTH, FINISH_STOP, Completion, SamplingParams

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class TransformersRolloutConfig(RolloutConfig):
    name: str = "transformers"
    dtype: str = "float32"
    """Weights and compute dtype: float32, bfloat16 or float16."""
    device: str = "auto"  # auto: cuda if available, else cpu
    max_batch_sequences: int = 256  # sequences generated together (prompts x n)


class TransformersEngine(RolloutEngine):
    @classmethod
    def check_model(cls, cfg: Any, hf_config: Any, model_path: Path) -> None:
        """Any causal LM that transformers implements (``AutoModelForCausalLM``)."""
        from or1.launch.model_support import check_transformers_causal_lm

        check_transformers_causal_lm(hf_config, model_path, "rollout=transformers")

    def __init__(self, cfg: Any, ctx: BuildContext) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg = cfg
        self.device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
        )
        self.model = AutoModelForCausalLM.from_pretrained(
            ctx.model_path, dtype=DTYPES[cfg.dtype]
        ).to(self.device)
        self.model.eval()
        self.tokenizer = AutoTokenizer.from_pretrained(ctx.model_path)
        gen = self.model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        pad = self.tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.eos_ids)
        self.max_len = getattr(self.model.config, "max_position_embeddings", None)
        self.params = self.model.state_dict(keep_vars=True)  # tied weights appear under both names

    def _check(self, prompts: Sequence[list[int]], params: SamplingParams) -> None:
        if not prompts:
            raise ValueError("generate() got an empty prompt list")
        for i, p in enumerate(prompts):
            if not p:
                raise ValueError(f"prompt {i} is empty")
            if self.max_len is not None and len(p) + params.max_tokens > self.max_len:
                raise ValueError(
                    f"prompt {i} has {len(p)} tokens; with max_tokens={params.max_tokens} it exceeds the "
                    f"model's context of {self.max_len}"
                )

    @torch.no_grad()
    def generate(
        self, prompts: Sequence[list[int]], params: SamplingParams
    ) -> list[list[Completion]]:
        self._check(prompts, params)
        per_call = max(1, self.cfg.max_batch_sequences // max(params.n, 1))
        out: list[list[Completion]] = []
        with torch.random.fork_rng(devices=[]):
            if params.seed is not None:
                torch.manual_seed(params.seed)
            for start in range(0, len(prompts), per_call):
                out += self._generate(prompts[start : start + per_call], params)
        return out

    def _generate(
        self, prompts: Sequence[list[int]], params: SamplingParams
    ) -> list[list[Completion]]:
        from transformers import GenerationConfig

        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, p in enumerate(prompts):  # left padding for generation
            ids[i, width - len(p) :] = torch.tensor(p)
            mask[i, width - len(p) :] = 1
        gen_cfg = GenerationConfig(
            do_sample=True,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k if params.top_k > 0 else 0,
            max_new_tokens=params.max_tokens,
            num_return_sequences=params.n,
            eos_token_id=sorted(self.eos_ids),
            pad_token_id=self.pad_id,
            return_dict_in_generate=True,
            output_scores=True,
        )
        result = self.model.generate(
            input_ids=ids.to(self.device),
            attention_mask=mask.to(self.device),
            generation_config=gen_cfg,
        )
        new_tokens = result.sequences[:, width:].cpu()
        scores = torch.stack(result.scores, dim=1).float().cpu()  # [B*n, steps, V], after warpers
        logprobs = (
            torch.log_softmax(scores, dim=-1)
            .gather(-1, new_tokens[:, : scores.shape[1], None])
            .squeeze(-1)
        )
        out: list[list[Completion]] = []
        for i, prompt in enumerate(prompts):
            group = []
            for j in range(params.n):
                row = i * params.n + j
                tokens = new_tokens[row].tolist()
                end = next((k for k, t in enumerate(tokens) if t in self.eos_ids), None)
                finish = FINISH_STOP if end is not None else FINISH_LENGTH
                n_tok = end + 1 if end is not None else min(len(tokens), params.max_tokens)
                response = tokens[:n_tok]
                group.append(
                    Completion(
                        prompt_ids=list(prompt),
                        response_ids=response,
                        logprobs=logprobs[row, :n_tok].tolist(),
                        finish_reason=finish,
                        text=self.tokenizer.decode(response, skip_special_tokens=True),
                    )
                )
            out.append(group)
        return out

    @torch.no_grad()
    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        for name, tensor in named_tensors:
            target = self.params.get(name)
            if target is None:
                raise KeyError(f"weight '{name}' does not exist in the rollout model")
            target.copy_(tensor)
