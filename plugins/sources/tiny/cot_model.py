"""The long chain-of-thought model (``model=tiny_cot``): a small Qwen2 with a character-level
tokenizer, warmed up by supervised fine-tuning on the step-by-step additions of
:mod:`.cot_task` until its sampled accuracy on held-out-like problems reaches a moderate target.

It is built by the same code as the tiny model (:mod:`.build`); only the task differs. The
tokenizer's base alphabet is the task's few characters and its vocabulary cap leaves room for
a handful of merges only, which fall inside words (``think``, ``boxed``); digits are split one
per token before the merges: every digit, ``:``, ``+``, ``=`` and newline of a chain is a token
of its own, so the chains are long in tokens.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .build import (
    BuiltModelConfig,
    Example,
    WarmupResult,
    build_model_folder,
    prepare_cached_model,
    sampled_accuracy,
    supervised_warmup,
    tokenizer_corpus,
    train_tokenizer,
)
from .cot_task import (
    TASK_CHARACTERS,
    ChainProblem,
    TinyCotDataConfig,
    draw_distinct,
    draw_problems,
    ground_truth,
    prompt_text,
    target_response,
)
from .task import config_hash

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

FORMAT_VERSION = 2
"""Bumped whenever the built folder changes for the same config (it is part of the hash)."""

_NON_CONTENT_FIELDS = {"name", "path"}


@dataclass
class TinyCotModelConfig(BuiltModelConfig):
    """A small random-initialised Qwen2 (fp32) plus a supervised warm-up on tiny_cot.

    The warm-up trains on ``warmup_train_size`` problems of the ``train`` pool of the task
    defined by the ``task_*`` fields (keep them equal to the data section's), their sizes drawn
    with ``warmup_size_exponent``, and stops once the
    accuracy of one sample per problem at temperature 1.0 on ``warmup_probe_size`` problems of
    the ``probe`` pool, with ``warmup_max_new_tokens`` tokens, reaches
    ``warmup_target_accuracy``.
    """

    name: str = "tiny_cot"
    hidden_size: int = 128
    intermediate_size: int = 512
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    max_position_embeddings: int = 2048
    tokenizer_vocab_size: int = 96
    warmup_lr: float = 3e-3
    warmup_batch_size: int = 32
    warmup_max_steps: int = 4000
    warmup_eval_every: int = 100
    warmup_eval_every_near: int = 50
    warmup_probe_size: int = 64
    warmup_target_accuracy: float = 0.35
    warmup_max_new_tokens: int = 384
    num_threads: int = 1
    warmup_micro_batch_tokens: int = 4096
    """Padded tokens per forward/backward of the warm-up (length-sorted micro-batches; 0: the
    whole batch at once)."""
    warmup_train_size: int = 50000
    """Training-pool problems the warm-up draws its batches from."""
    warmup_size_exponent: float = 2.0
    """Size exponent of the warm-up's training problems (above the task's: shorter chains, so
    more steps per CPU-minute; the probe follows the task's own distribution)."""
    # the task the warm-up learns (must match the data section's tiny_cot settings)
    task_min_count: int = 1
    """Fewest additions of the warm-up task (keep equal to ``data.min_count``)."""
    task_max_count: int = 110
    """Most additions of the warm-up task (keep equal to ``data.max_count``)."""
    task_size_exponent: float = 1.0
    """Size exponent of the warm-up task (keep equal to ``data.size_exponent``)."""
    task_max_start: int = 99
    """Largest starting number of the warm-up task (keep equal to ``data.max_start``)."""
    task_max_step: int = 9
    """Largest step of the warm-up task (keep equal to ``data.max_step``)."""
    task_split_seed: int = 0
    """Pool seed of the warm-up task (keep equal to ``data.split_seed``)."""


def task_config(cfg: Any) -> TinyCotDataConfig:
    """The tiny_cot config whose problems the model's tokenizer and warm-up use."""
    return TinyCotDataConfig(
        min_count=int(cfg.task_min_count),
        max_count=int(cfg.task_max_count),
        size_exponent=float(cfg.task_size_exponent),
        max_start=int(cfg.task_max_start),
        max_step=int(cfg.task_max_step),
        split_seed=int(cfg.task_split_seed),
    )


def example(p: ChainProblem) -> Example:
    """A problem as a supervised example."""
    return Example(prompt_text(p), target_response(p), ground_truth(p))


def warmup_problems(cfg: Any) -> tuple[list[ChainProblem], list[ChainProblem]]:
    """(train, probe): the warm-up's training problems and its fixed probe set."""
    task = task_config(cfg)
    rng = random.Random(f"tiny-cot-warmup:{cfg.seed}")
    probe = draw_distinct(task, "probe", int(cfg.warmup_probe_size), rng)
    stream = draw_problems(
        dataclasses.replace(task, size_exponent=float(cfg.warmup_size_exponent)), "train", rng
    )
    train = [next(stream) for _ in range(int(cfg.warmup_train_size))]
    return train, probe


def build_tokenizer(cfg: Any, problems: list[ChainProblem]) -> PreTrainedTokenizerFast:
    """The character-level BPE of the task (base alphabet :data:`.cot_task.TASK_CHARACTERS`)."""
    return train_tokenizer(cfg, tokenizer_corpus(map(example, problems)), TASK_CHARACTERS)


def warmup(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    cfg: Any,
    problems: tuple[list[ChainProblem], list[ChainProblem]] | None = None,
) -> WarmupResult:
    """Supervised warm-up on train-pool problems until the probe accuracy reaches the target."""
    train, probe = problems if problems is not None else warmup_problems(cfg)
    return supervised_warmup(
        model,
        tokenizer,
        cfg,
        train=[example(p) for p in train],
        probe=[example(p) for p in probe],
        rng=random.Random(f"tiny-cot-batches:{cfg.seed}"),
        accuracy=sampled_accuracy,
        label="tiny_cot",
        micro_batch_tokens=int(cfg.warmup_micro_batch_tokens),
    )


def model_hash(cfg: Any) -> str:
    """The cache key of a model config (content-relevant fields only)."""
    return config_hash(cfg, TinyCotModelConfig, _NON_CONTENT_FIELDS, FORMAT_VERSION)


def _build_model_folder(cfg: Any, folder: Path) -> WarmupResult:
    """Build tokenizer + model, warm it up and save everything into ``folder``."""
    problems = warmup_problems(cfg)
    return build_model_folder(
        cfg,
        folder,
        make_tokenizer=lambda: build_tokenizer(cfg, problems[0]),
        run_warmup=lambda model, tokenizer: warmup(model, tokenizer, cfg, problems),
        label="tiny_cot",
    )


def prepare_tiny_cot_model(cfg: Any, cache_dir: Path) -> Path:
    """Build (once) the model's Hugging Face folder under
    ``cache_dir/models/tiny_cot-<hash>/`` and return it; reuse it when present."""
    folder = Path(cache_dir) / "models" / f"tiny_cot-{model_hash(cfg)}"
    return prepare_cached_model(folder, lambda tmp: _build_model_folder(cfg, tmp), label="tiny_cot")
