"""Setting up a run: resolve model and data, build every component, restore a checkpoint.

Checks run cheapest first (config values, dataset files and rows, then the model folder), so
bad input fails in seconds with one line naming the culprit, before anything heavy is built.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from or1 import checkpoint
from or1.data import PromptSampler, as_path_list, read_dataset, tokenize_prompts
from or1.errors import ConfigError
from or1.interfaces import (
    AdvantageEstimator,
    BuildContext,
    EntropyController,
    Learner,
    Logger,
    OnlineFilter,
    PolicyLoss,
    RewardVerifier,
    RolloutEngine,
    StageScheduler,
)
from or1.plugins import Registry, get_plugin_manager, get_registry
from or1.types import Prompt

log = logging.getLogger("or1.run")

STATEFUL = ("rollout", "filter", "advantage", "entropy", "stages")
"""Components whose ``state_dict`` goes into ``state.pt`` (the learner has its own file)."""


@dataclass
class Components:
    rollout: RolloutEngine
    learner: Learner
    verifier: RewardVerifier
    filter: OnlineFilter
    advantage: AdvantageEstimator
    loss: PolicyLoss
    entropy: EntropyController
    stages: StageScheduler
    loggers: dict[str, Logger]


@dataclass
class Run:
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
    hook: Any = None

    @property
    def pad_id(self) -> int:
        tok = self.tokenizer
        return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id


def check_values(cfg: DictConfig) -> None:
    """Range checks the types cannot express; one ConfigError naming the key."""
    t = cfg.trainer
    for key, value, low in [
        ("trainer.prompts_per_step", t.prompts_per_step, 1),
        ("trainer.group_size", t.group_size, 1),
        ("trainer.save_every", t.save_every, 0),
        ("trainer.eval_every", t.eval_every, 0),
        ("trainer.keep_checkpoints", t.keep_checkpoints, 0),
        ("trainer.max_refill_rounds", t.max_refill_rounds, 0),
        ("eval.k", cfg.eval.k, 1),
    ]:
        if value < low:
            raise ConfigError(f"{key}={value} must be >= {low}")
    if t.total_steps is not None and t.total_steps < 1:
        raise ConfigError(f"trainer.total_steps={t.total_steps} must be >= 1")
    if not 0.0 < cfg.rollout.temperature:
        raise ConfigError(f"rollout.temperature={cfg.rollout.temperature} must be > 0")
    if not 0.0 < cfg.rollout.top_p <= 1.0:
        raise ConfigError(f"rollout.top_p={cfg.rollout.top_p} must be in (0, 1]")


def resolve_model(cfg: DictConfig, registry: Registry, cache_dir: Path) -> Path:
    """The policy's HF folder: ``model.path`` if set (checked), else the model source's."""
    if cfg.model.path:
        path = Path(cfg.model.path).expanduser()
    else:
        path = Path(registry.get("model", cfg.model.name).factory(cfg.model, cache_dir))
    if not (path / "config.json").is_file():
        raise ConfigError(f"model.path={path}: not a Hugging Face model folder (no config.json)")
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(path)
    except Exception as exc:
        raise ConfigError(f"model.path={path}: unusable config.json ({exc})") from None
    return path


def load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path)
    except Exception as exc:
        raise ConfigError(f"model.path={path}: cannot load its tokenizer ({exc})") from None
    if not getattr(tok, "chat_template", None):
        raise ConfigError(f"model.path={path}: the tokenizer has no chat template")
    return tok


def resolve_data(cfg: DictConfig, registry: Registry, cache_dir: Path) -> tuple[list[Path], list[Path]]:
    if cfg.data.path:
        return as_path_list(cfg.data.path), as_path_list(cfg.data.val_path)
    train, val = registry.get("data", cfg.data.name).factory(cfg.data, cache_dir)
    return [Path(p) for p in train], [Path(p) for p in (as_path_list(cfg.data.val_path) or val)]


def eval_files(cfg: DictConfig, val_files: list[Path]) -> dict[str, list[Path]]:
    files = as_path_list(list(cfg.eval.datasets)) or val_files
    return {p.stem: [p] for p in files}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def build(cfg: DictConfig, registry: Registry, ctx: BuildContext) -> Components:
    def make(group: str, node: DictConfig) -> Any:
        return registry.get(group, node.name).factory(node, ctx)

    loggers = {name: make("logger", node) for name, node in cfg.logger.items()}
    return Components(
        **{g: make(g, cfg[g]) for g in ("rollout", "learner", "verifier", "filter", "advantage", "loss", "entropy", "stages")},
        loggers=loggers,
    )


def prepare(cfg: DictConfig, run_dir: Path) -> Run:
    """Everything a run needs, in the order that fails cheapest first."""
    registry = get_registry()
    for group in ("rollout", "learner", "verifier", "filter", "advantage", "loss", "entropy", "stages", "data", "model"):
        registry.get(group, cfg[group].name)
    for node in cfg.logger.values():
        registry.get("logger", node.name)
    check_values(cfg)
    if cfg.trainer.num_threads > 0:
        torch.set_num_threads(cfg.trainer.num_threads)
    cache_dir = Path(cfg.trainer.cache_dir).expanduser()
    run_dir.mkdir(parents=True, exist_ok=True)

    resume_from = find_resume_checkpoint(cfg, run_dir)
    train_files, val_files = resolve_data(cfg, registry, cache_dir)
    train_rows = read_dataset(train_files)
    eval_rows = {name: read_dataset(files, cfg.eval.max_problems) for name, files in eval_files(cfg, val_files).items()}
    model_path = resolve_model(cfg, registry, cache_dir)
    tokenizer = load_tokenizer(model_path)
    max_len = cfg.data.max_prompt_length
    prompts = tokenize_prompts(train_rows, tokenizer, max_len)
    val_sets = {name: tokenize_prompts(rows, tokenizer, max_len) for name, rows in eval_rows.items()}

    seed_everything(cfg.trainer.seed)
    ctx = BuildContext(run_dir=run_dir, model_path=model_path, cache_dir=cache_dir, seed=cfg.trainer.seed, config=cfg)
    components = build(cfg, registry, ctx)
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
        hook=get_plugin_manager().hook,
    )
    if resume_from is not None:
        restore(run, resume_from)
    return run


def find_resume_checkpoint(cfg: DictConfig, run_dir: Path) -> Path | None:
    mode = str(cfg.trainer.resume)
    if mode == "never":
        if checkpoint.list_steps(run_dir / "checkpoints"):
            raise ConfigError(
                f"{run_dir} already holds checkpoints; use trainer.resume=auto to continue that run "
                "or choose another hydra.run.dir"
            )
        return None
    if mode == "auto":
        return checkpoint.latest(run_dir / "checkpoints")
    path = Path(mode).expanduser()
    problem = checkpoint.verify(path) if path.is_dir() else "not a folder"
    if problem:
        raise ConfigError(f"trainer.resume={mode}: not a usable checkpoint ({problem})")
    return path


def checkpoint_parts(run: Run, step: int) -> dict[str, Any]:
    c = run.components
    return {
        "learner": c.learner.state_dict(),
        "state": {
            "step": step,
            "sampler": run.sampler.state_dict(),
            "components": {name: getattr(c, name).state_dict() for name in STATEFUL},
            "rng": rng_state(),
            "start_metrics": run.start_metrics,
        },
    }


def restore(run: Run, path: Path) -> None:
    state = checkpoint.load(path, "state")
    run.components.learner.load_state_dict(checkpoint.load(path, "learner"))
    for name in STATEFUL:
        getattr(run.components, name).load_state_dict(state["components"][name])
    run.sampler.load_state_dict(state["sampler"])
    set_rng_state(state["rng"])
    run.start_step = int(state["step"])
    run.start_metrics = state.get("start_metrics")
    # the engine must serve the restored policy
    run.components.rollout.update_weights(run.components.learner.named_weights())
    log.info("resumed from %s (step %d)", path, run.start_step)


def config_dict(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))
