"""The embedded default model: a tiny Qwen2 with a task-trained byte-level BPE tokenizer,
warmed up by supervised fine-tuning on the tiny arithmetic task until its sampled accuracy
reaches a target band (so that RL has room to improve it).

The building blocks (tokenizer training, the Qwen2, sampling, the warm-up loop, the cached
folder) live in :mod:`.build`, shared with the long chain-of-thought model of :mod:`.cot_model`;
this module feeds them the tiny arithmetic task. Everything heavy (torch, transformers,
tokenizers) is imported inside the functions.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .build import (
    BUILD_INFO_FILE,
    CHAT_TEMPLATE,
    IM_END,
    IM_START,
    PAD_TOKEN,
    SPECIAL_TOKENS,
    BuiltModelConfig,
    Example,
    WarmupResult,
    boxed_answer,
    build_model,
    build_model_folder,
    chat_prompt_text,
    prepare_cached_model,
    sample,
    sampled_accuracy,
    supervised_warmup,
    tokenizer_corpus,
    train_tokenizer,
)
from .task import (
    Problem,
    TinyArithDataConfig,
    config_hash,
    ground_truth,
    problem_pools,
    prompt_text,
    target_response,
)

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

__all__ = [
    "BUILD_INFO_FILE",
    "CHAT_TEMPLATE",
    "IM_END",
    "IM_START",
    "PAD_TOKEN",
    "SPECIAL_TOKENS",
    "TASK_CHARACTERS",
    "TinyModelConfig",
    "WarmupResult",
    "boxed_answer",
    "build_model",
    "build_tokenizer",
    "chat_prompt",
    "model_hash",
    "prepare_tiny_model",
    "sample",
    "sampled_accuracy",
    "task_config",
    "warmup",
]

FORMAT_VERSION = 1
"""Bumped whenever the built folder changes for the same config (it is part of the hash)."""

TASK_CHARACTERS = "0123456789+-*=?<>/{}\\\n " + "Whatisuserassistantthinkboxed"
"""Every character any tiny_arith config can produce (the tokenizer's base alphabet)."""

_NON_CONTENT_FIELDS = {"name", "path"}


@dataclass
class TinyModelConfig(BuiltModelConfig):
    """A tiny random-initialised Qwen2 (fp32) plus a supervised warm-up on tiny_arith.

    The warm-up trains on ``train``-pool problems of the task defined by the ``task_*`` fields
    (keep them equal to the data section's) and stops as soon as the accuracy of one sample per
    problem at temperature 1.0 on a fixed probe set reaches ``warmup_target_accuracy`` (checked
    every ``warmup_eval_every`` steps, every ``warmup_eval_every_near`` steps once it is past
    half the target), or after ``warmup_max_steps``.
    """

    name: str = "tiny"
    # the task the warm-up learns (must match the data section's tiny_arith settings)
    task_ops: str = "+"
    """Operators of the warm-up task (keep equal to ``data.ops``)."""
    task_min_operand: int = 0
    """Smallest operand of the warm-up task (keep equal to ``data.min_operand``)."""
    task_max_operand: int = 99
    """Largest operand of the warm-up task (keep equal to ``data.max_operand``)."""
    task_split_seed: int = 0
    """Pool seed of the warm-up task (keep equal to ``data.split_seed``)."""


def task_config(cfg: Any) -> TinyArithDataConfig:
    """The tiny_arith config whose problems the model's tokenizer and warm-up use."""
    return TinyArithDataConfig(
        ops=str(cfg.task_ops),
        min_operand=int(cfg.task_min_operand),
        max_operand=int(cfg.task_max_operand),
        split_seed=int(cfg.task_split_seed),
    )


def example(p: Problem) -> Example:
    """A problem as a supervised example."""
    return Example(prompt_text(p), target_response(p), ground_truth(p))


def chat_prompt(p: Problem) -> str:
    """The chat-templated prompt text of a problem (ends with the generation prompt)."""
    return chat_prompt_text(prompt_text(p))


def build_tokenizer(cfg: Any, problems: Sequence[Problem]) -> PreTrainedTokenizerFast:
    """Train the byte-level BPE (digits split one per token) on the task's own chat text;
    its base alphabet is :data:`TASK_CHARACTERS` unless ``cfg.tokenizer_byte_alphabet``."""
    return train_tokenizer(cfg, tokenizer_corpus(map(example, problems)), TASK_CHARACTERS)


def warmup(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, cfg: Any) -> WarmupResult:
    """Supervised warm-up on ``train``-pool problems until the accuracy on a fixed sample of
    the ``probe`` pool reaches ``cfg.warmup_target_accuracy``."""
    pools = problem_pools(task_config(cfg))
    rng = random.Random(f"tiny-warmup:{cfg.seed}")
    train = [example(p) for p in pools["train"]]
    probe = rng.sample(pools["probe"], min(int(cfg.warmup_probe_size), len(pools["probe"])))
    return supervised_warmup(
        model,
        tokenizer,
        cfg,
        train=train,
        probe=[example(p) for p in probe],
        rng=rng,
        accuracy=sampled_accuracy,
        label="tiny",
    )


def model_hash(cfg: Any) -> str:
    """The cache key of a model config (content-relevant fields only)."""
    return config_hash(cfg, TinyModelConfig, _NON_CONTENT_FIELDS, FORMAT_VERSION)


def _build_model_folder(cfg: Any, folder: Path) -> WarmupResult:
    """Build tokenizer + model, warm it up and save everything into ``folder``."""
    return build_model_folder(
        cfg,
        folder,
        make_tokenizer=lambda: build_tokenizer(cfg, problem_pools(task_config(cfg))["train"]),
        run_warmup=lambda model, tokenizer: warmup(model, tokenizer, cfg),
        label="tiny",
    )


def prepare_tiny_model(cfg: Any, cache_dir: Path) -> Path:
    """Build (once) the tiny model's Hugging Face folder under
    ``cache_dir/models/tiny-<hash>/`` and return it; reuse it when present."""
    folder = Path(cache_dir) / "models" / f"tiny-{model_hash(cfg)}"
    return prepare_cached_model(folder, lambda tmp: _build_model_folder(cfg, tmp), label="tiny")
