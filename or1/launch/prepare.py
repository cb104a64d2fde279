"""Setting up a run: resolve model and data, build every component, restore a checkpoint.

Checks run cheapest first (config values: :mod:`or1.launch.config_checks`; dataset files and rows;
the model folder and the launch: :mod:`or1.launch.launch_checks`), so bad input fails in seconds
with one line naming the culprit, before anything heavy is built; :mod:`or1.launch.resume` finds and
restores the checkpoint a run continues from.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from or1.core import hook_points
from or1.core.atomic import atomic_path
from or1.core.data import PromptSampler, as_path_list, held_out_sets, read_dataset, tokenize_prompts
from or1.core.errors import ConfigError
from or1.core.interfaces import BuildContext, RolloutEngine
from or1.core.registry import Registry, get_registry
from or1.core.types import Prompt
from or1.launch import distributed
from or1.launch.config_checks import check_config
from or1.launch.launch_checks import (
    check_context,
    check_free_disk,
    check_launch,
    check_memory,
    check_parallel_sizes,
)
from or1.launch.resume import check_same_settings, find_resume_checkpoint, restore

log = logging.getLogger("or1.run")


class Components:
    """The components :func:`build` made for a run: one attribute per hook point with
    ``in_run`` (:attr:`or1.core.hook_points.HookPoint.attribute`: ``rollout``, ``learner``,
    ``verifier``, ``filter``, ``advantage``, ``loss``, ``entropy``, ``stages``, and
    ``loggers``, a mapping name -> :class:`~or1.core.interfaces.Logger`), each an instance of its
    hook point's interface."""

    def __init__(self, **parts: Any) -> None:
        self.__dict__.update(parts)

    def __repr__(self) -> str:
        return f"Components({', '.join(self.__dict__)})"


@dataclass
class Run:
    """Everything one rank's trainer loop needs. Under torchrun every rank holds one: the same
    config, sampler and stage schedule, its own rollout engine (``layout``) and learner shard;
    loggers only on rank 0."""

    cfg: DictConfig
    run_dir: Path
    model_path: Path
    tokenizer: Any
    components: Components
    sampler: PromptSampler
    val_sets: dict[str, list[Prompt]]
    total_steps: int
    start_step: int = 0
    start_metrics: dict[str, float] | None = None
    resumed_from: Path | None = None
    layout: distributed.EngineLayout = distributed.EngineLayout()

    @property
    def pad_id(self) -> int:
        tok = self.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id


def resolve_model(cfg: DictConfig, registry: Registry, cache_dir: Path) -> Path:
    """The policy's HF folder: ``model.path`` if set (checked), else the model source's."""
    if cfg.model.path:
        path = Path(cfg.model.path).expanduser()
    else:
        path = Path(registry.build("model", cfg.model, cache_dir))
    if not (path / "config.json").is_file():
        raise ConfigError(f"model.path={path}: not a Hugging Face model folder (no config.json)")
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(path)
    except Exception as exc:
        raise ConfigError(f"model.path={path}: unusable config.json ({exc})") from None
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ConfigError(
            f"model.path={path}: model_type '{config.model_type}' is not a causal language model "
            "architecture that transformers knows"
        )
    if not list(path.glob("*.safetensors")) and not list(path.glob("*.bin")):
        raise ConfigError(f"model.path={path}: no weights (*.safetensors or *.bin) in the folder")
    return path


def load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path)
    except Exception as exc:
        raise ConfigError(f"model.path={path}: cannot load its tokenizer ({exc})") from None
    if not getattr(tok, "chat_template", None):
        raise ConfigError(f"model.path={path}: the tokenizer has no chat template")
    if len(tok) < 2 or not tok.encode("1 + 1 = 2", add_special_tokens=False):
        raise ConfigError(
            f"model.path={path}: the tokenizer is empty (no tokenizer.json or vocabulary files)"
        )
    return tok


def resolve_data(
    cfg: DictConfig, registry: Registry, cache_dir: Path
) -> tuple[list[Path], list[Path]]:
    if cfg.data.path:
        return as_path_list(cfg.data.path), as_path_list(cfg.data.val_path)
    train, val = registry.build("data", cfg.data, cache_dir)
    return [Path(p) for p in train], [Path(p) for p in (as_path_list(cfg.data.val_path) or val)]


def eval_files(cfg: DictConfig, val_files: list[Path]) -> dict[str, list[Path]]:
    return {name: [path] for name, path in held_out_sets(cfg, val_files).items()}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build(cfg: DictConfig, registry: Registry, ctx: BuildContext) -> Components:
    """Every component of the run: one per hook point of
    :func:`or1.core.hook_points.run_hook_points` (for a
    ``many`` hook point, one per section under it); a ``rank0_only`` one (the loggers) on
    rank 0 only (elsewhere None, or an empty mapping)."""

    parts: dict[str, Any] = {}
    for hp in hook_points.run_hook_points():
        here = not hp.rank0_only or distributed.is_main()
        if hp.many:
            sections = cfg[hp.group].items() if here else []
            parts[hp.attribute] = {n: registry.build(hp.group, node, ctx) for n, node in sections}
        else:
            parts[hp.attribute] = registry.build(hp.group, cfg[hp.group], ctx) if here else None
    return Components(**parts)


DEFAULT_LOGGERS = ("console", "jsonl")
"""The loggers every run keeps unless ``trainer.default_loggers=false``: the progress bar and
``metrics.jsonl`` (which ``or1-plot`` and the sweep summary read)."""


def add_default_loggers(cfg: DictConfig, registry: Registry) -> None:
    """``logger=wandb`` replaces Hydra's default list; put the console and JSONL loggers back
    (with their schema defaults). A list that names either of them (``logger=[jsonl,wandb]``)
    is taken as written, and ``trainer.default_loggers=false`` keeps only the loggers named."""
    if not cfg.trainer.default_loggers or any(name in cfg.logger for name in DEFAULT_LOGGERS):
        return
    missing = list(DEFAULT_LOGGERS)
    with open_dict(cfg):
        for name in missing:
            node = OmegaConf.structured(registry.get("logger", name).schema)
            cfg.logger[name] = node


def run_description(cfg: DictConfig) -> str:
    """One line of what a run will do, for the start of its log: the preset, the model, the
    engines and the handful of values that decide a run (batch, learning rate, stages, eval)."""
    from hydra.core.hydra_config import HydraConfig

    choices = HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}
    t, e, lr = cfg.trainer, cfg.eval, cfg.learner.get("lr")
    model = cfg.model.path or f"model={cfg.model.name}"
    parts = [
        f"experiment={choices.get('experiment', '?')}",
        f"model {model}",
        f"rollout={cfg.rollout.name} learner={cfg.learner.name} verifier={cfg.verifier.name}",
        f"{t.prompts_per_step} prompts x {t.group_size} samples per step, lr {lr}",
    ]
    stages = cfg.stages.get("stages")
    if stages:
        parts.append(
            "stages "
            + ", ".join(
                f"{s.name} {s.max_response_length} tokens x {s.steps} steps" for s in stages
            )
        )
    parts.append(f"eval {e.k} samples at T={e.temperature} every {t.eval_every or 'end'}")
    return "; ".join(parts)


def prepare(cfg: DictConfig, run_dir: Path) -> Run:
    """Everything a run needs, in the order that fails cheapest first."""
    registry = get_registry()
    add_default_loggers(cfg, registry)
    async_defaults(cfg)
    check_config(cfg, registry)
    if distributed.is_main():
        log.info("or1-train: %s", run_description(cfg))
    layout = check_launch(cfg, registry)
    if cfg.trainer.num_threads > 0:
        torch.set_num_threads(cfg.trainer.num_threads)
    cache_dir = Path(cfg.trainer.cache_dir).expanduser()
    distributed.init(cfg.trainer.dist_timeout_s)
    distributed.check_same_config(config_dict(cfg), ignore=["trainer.cache_dir"])  # node-local
    run_dir = Path(distributed.broadcast_object(str(run_dir)))  # rank 0's output folder
    run_dir.mkdir(parents=True, exist_ok=True)

    resume_from = find_resume_checkpoint(cfg, run_dir)
    with distributed.main_first():  # rank 0 builds what the cache lacks, once
        train_files, val_files = resolve_data(cfg, registry, cache_dir)
        train_rows = read_dataset(train_files)
        eval_rows = {
            name: read_dataset(files, cfg.eval.max_problems)
            for name, files in eval_files(cfg, val_files).items()
        }
        model_path = resolve_model(cfg, registry, cache_dir)
    check_parallel_sizes(cfg, model_path)
    check_context(cfg, model_path)
    from or1.launch.model_support import check_model_support  # every engine's check_model

    check_model_support(cfg, registry, model_path)
    check_memory(cfg, model_path)
    check_free_disk(cfg, run_dir, model_path)
    if resume_from is not None and resume_from.parent.parent == run_dir:
        check_same_settings(cfg, run_dir)  # the inputs are fine: are they the run's own?
    tokenizer = load_tokenizer(model_path)
    max_len = cfg.data.max_prompt_length
    prompts = tokenize_prompts(train_rows, tokenizer, max_len)
    val_sets = {
        name: tokenize_prompts(rows, tokenizer, max_len) for name, rows in eval_rows.items()
    }

    seed_everything(cfg.trainer.seed)
    ctx = BuildContext.of_run(cfg, run_dir, model_path)
    components = build(cfg, registry, ctx)
    if distributed.is_main():
        save_config_snapshot(cfg, run_dir)  # every check passed, every component built
    total = cfg.trainer.total_steps or components.stages.total_steps
    run = Run(
        cfg=cfg,
        run_dir=run_dir,
        model_path=model_path,
        tokenizer=tokenizer,
        components=components,
        sampler=PromptSampler(prompts, cfg.trainer.seed, cfg.data.shuffle),
        val_sets=val_sets,
        total_steps=total,
        layout=layout,
    )
    if resume_from is not None:
        restore(run, resume_from)
    return run


def save_config_snapshot(cfg: DictConfig, run_dir: Path) -> None:
    """``<run>/.hydra/config.yaml``, ``overrides.yaml`` and ``hydra.yaml`` (what Hydra itself
    would write), written only after the input checks passed, each atomically."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    folder = run_dir / ".hydra"
    folder.mkdir(exist_ok=True)
    texts = {
        "config.yaml": OmegaConf.to_yaml(cfg),
        "overrides.yaml": OmegaConf.to_yaml(hydra_cfg.overrides.task),
        "hydra.yaml": OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra_cfg})),
    }
    for name, text in texts.items():
        with atomic_path(folder / name) as tmp:
            tmp.write_text(text)


def async_defaults(cfg: DictConfig) -> None:
    """``trainer.async_steps=1`` trains on samples of a one-step-stale policy: the loss's
    rollout correction becomes ``tis`` unless ``loss.rollout_correction`` is set on the
    command line."""
    if not cfg.trainer.async_steps or "rollout_correction" not in cfg.loss:
        return
    from hydra.core.hydra_config import HydraConfig

    named = HydraConfig.initialized() and any(
        o.split("=", 1)[0].lstrip("+~") == "loss.rollout_correction"
        for o in HydraConfig.get().overrides.task
    )
    if not named and cfg.loss.rollout_correction == "none":
        cfg.loss.rollout_correction = "tis"


def restart_rollout(run: Run) -> RolloutEngine:
    """Replace a crashed rollout engine by a fresh one serving the learner's current weights."""
    try:
        run.components.rollout.close()
    except Exception as exc:  # the engine is already broken; closing it is best effort
        log.debug("closing the failed rollout engine: %s", exc)
    cfg = run.cfg
    ctx = BuildContext.of_run(cfg, run.run_dir, run.model_path)
    engine = get_registry().build("rollout", cfg.rollout, ctx)
    engine.update_weights(run.components.learner.named_weights())
    run.components.rollout = engine
    return engine


def config_dict(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
