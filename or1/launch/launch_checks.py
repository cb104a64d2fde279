"""The checks of a launch against its processes, the model and the machine, before any engine
is built: the world size and rollout layout, the model's heads and context, the GPU memory
plan and the free disk for checkpoints; each failure is one ConfigError naming the key."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from or1.core.errors import ConfigError
from or1.core.registry import Registry
from or1.launch import distributed


def fp32_weight_bytes(model_path: Path) -> int:
    """The policy's size in fp32 (what checkpoints hold), from the safetensors headers (no
    tensor is read); ``*.bin`` files, assumed 16-bit, count twice their size."""
    from safetensors import safe_open

    total = 0
    for f in model_path.iterdir():
        if f.suffix == ".safetensors":
            with safe_open(f, "pt") as st:
                total += 4 * sum(int(np.prod(st.get_slice(k).get_shape())) for k in st.keys())
        elif f.suffix == ".bin":
            total += 2 * f.stat().st_size
    return total


def check_free_disk(cfg: DictConfig, run_dir: Path, model_path: Path) -> None:
    """Room for the checkpoints before anything is trained: ``trainer.min_free_disk_gb``, or
    by default (keep_checkpoints + 1) checkpoints of ~3x the weights (weights and AdamW's two
    moments) plus the final export."""
    import shutil

    gb = 1024**3
    need_gb = cfg.trainer.min_free_disk_gb
    if need_gb is None:
        weights = fp32_weight_bytes(model_path)
        need_gb = weights * (3 * (cfg.trainer.keep_checkpoints + 1) + 1) / gb
    free_gb = shutil.disk_usage(run_dir).free / gb
    if free_gb < need_gb:
        raise ConfigError(
            f"not enough free disk space for checkpoints in {run_dir}: {free_gb:.2f} GB free, about "
            f"{need_gb:.2f} GB needed (trainer.min_free_disk_gb; 0 turns the check off)"
        )


def check_launch(cfg: DictConfig, registry: Registry) -> distributed.EngineLayout:
    """The rollout layout of this launch, before anything is built: a multi-process launch
    (torchrun) needs a learner that runs in several processes, and the rollout engine's
    ``tensor_parallel_size`` must divide the world."""
    n = distributed.world_size()
    if cfg.trainer.async_steps:
        return check_async_launch(cfg, n, registry)
    layout = distributed.engine_layout(int(getattr(cfg.rollout, "tensor_parallel_size", 1)))
    learner = registry.get("learner", cfg.learner.name).factory
    check = getattr(learner, "check_launch", None)
    if check is not None:
        check(cfg.learner, n)
    if n <= 1:
        return layout
    if not getattr(learner, "multiprocess", False):
        raise ConfigError(
            f"learner={cfg.learner.name} runs in a single process but this launch has {n} "
            "(WORLD_SIZE); use learner=megatron or start or1-train without torchrun"
        )
    if getattr(registry.get("rollout", cfg.rollout.name).factory, "owns_process_group", False):
        raise ConfigError(
            f"rollout={cfg.rollout.name} sets up torch.distributed in the trainer's process and "
            f"cannot run in a {n}-process torchrun launch"
        )
    return layout


def check_async_launch(cfg: DictConfig, n: int, registry: Registry) -> distributed.EngineLayout:
    """``trainer.async_steps=1``: rollout engines and the learner on disjoint ranks, the last
    ``trainer.rollout_ranks`` ranks generating (one engine each) and the one rank before them
    training, with a single-process learner (a multi-process one, Megatron's, sets up its
    parallel groups over every rank of the launch, the rollout ranks included); this rank's
    engine layout among the rollout ranks (the learner rank's engine, which validates, is one
    engine of its own)."""
    t = cfg.trainer
    if getattr(registry.get("learner", cfg.learner.name).factory, "multiprocess", False):
        raise ConfigError(
            f"learner={cfg.learner.name} sets up its parallel groups over every rank of the "
            "launch and cannot yet train on the learner rank of trainer.async_steps=1 alone: "
            "use learner=torch"
        )
    if n - t.rollout_ranks < 1:
        raise ConfigError(
            f"trainer.rollout_ranks={t.rollout_ranks} leaves no learner rank of the {n} "
            "process(es) of this launch (trainer.async_steps=1 trains on separate ranks: launch "
            f"with torchrun --nproc-per-node {t.rollout_ranks + 1})"
        )
    if n - t.rollout_ranks > 1:
        raise ConfigError(
            f"trainer.rollout_ranks={t.rollout_ranks} leaves {n - t.rollout_ranks} learner ranks "
            f"of the {n} process(es); trainer.async_steps=1 trains on one rank (set "
            f"trainer.rollout_ranks={n - 1})"
        )
    tp = int(getattr(cfg.rollout, "tensor_parallel_size", 1) or 1)
    if tp != 1:
        raise ConfigError(
            f"rollout.tensor_parallel_size={tp}: trainer.async_steps=1 runs one engine per "
            "rollout rank (tensor_parallel_size=1)"
        )
    learners = n - t.rollout_ranks
    r = distributed.rank()
    if r < learners:
        return distributed.EngineLayout(0, 1, 1)
    return distributed.EngineLayout(r - learners, t.rollout_ranks, 1)


def check_parallel_sizes(cfg: DictConfig, model_path: Path) -> None:
    """Every ``tensor_parallel_size`` (rollout's, learner's) must divide the model's attention
    heads and KV heads: one line naming the key, before any engine starts."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_path)
    heads = int(getattr(config, "num_attention_heads", 0) or 0)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    for group in ("rollout", "learner"):
        tp = getattr(cfg[group], "tensor_parallel_size", None)
        if tp is None:
            continue
        for what, count in (("attention heads", heads), ("KV heads", kv_heads)):
            if count and int(tp) >= 1 and count % int(tp):
                raise ConfigError(
                    f"{group}.tensor_parallel_size={tp} does not divide the model's {count} "
                    f"{what} (model.path={model_path})"
                )


def check_context(cfg: DictConfig, model_path: Path) -> None:
    """Every response budget (each stage's ``max_response_length``, ``eval.max_tokens``) must
    leave room for a prompt in the model's context (``max_position_embeddings``): one line
    naming the key, before any engine starts (a run would otherwise fail at its first
    validation, or at the stage that outgrows the model)."""
    from transformers import AutoConfig

    context = getattr(AutoConfig.from_pretrained(model_path), "max_position_embeddings", None)
    if not context:
        return
    budgets = [
        (f"stages.stages[{i}].max_response_length", s.max_response_length)
        for i, s in enumerate(cfg.stages.get("stages") or [])
    ]
    if cfg.eval.max_tokens:
        budgets.append(("eval.max_tokens", cfg.eval.max_tokens))
    for key, tokens in budgets:
        if int(tokens) >= int(context):
            raise ConfigError(
                f"{key}={tokens} leaves no room for a prompt in the model's context of {context} "
                f"tokens (max_position_embeddings, model.path={model_path}); shorten it, e.g. "
                f"stages=single stages.stages.0.max_response_length={max(1, int(context) // 2)}"
            )
    extra = int(cfg.trainer.get("partial_rollout_tokens", 0) or 0)
    for key, tokens in budgets[: len(cfg.stages.get("stages") or [])] if extra else []:
        if int(tokens) + extra - 1 >= int(context):  # a continuation: the tokens so far + budget
            raise ConfigError(
                f"trainer.partial_rollout_tokens={extra} with {key}={tokens} leaves no room for a "
                f"prompt in the model's context of {context} tokens (max_position_embeddings, "
                f"model.path={model_path}); lower trainer.partial_rollout_tokens"
            )


def check_memory(cfg: DictConfig, model_path: Path) -> None:
    """GPU launches (``trainer.check_memory``): the memory plan of this launch's layout on its
    GPUs (:func:`or1.launch.memory_plan.check_fits`), one line naming the keys and the numbers when it
    does not fit, before any engine is built. CPU runs are not planned."""
    if not (cfg.trainer.check_memory and torch.cuda.is_available()):
        return
    from or1.launch.memory_plan import check_fits

    per_node = int(os.environ.get("LOCAL_WORLD_SIZE") or torch.cuda.device_count() or 1)
    memory = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    try:
        check_fits(cfg, distributed.world_size(), memory, per_node, model_path)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (trainer.check_memory=false launches anyway)") from None
