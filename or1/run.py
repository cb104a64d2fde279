"""Setting up a run: resolve model and data, build every component, restore a checkpoint.

Checks run cheapest first (config values, dataset files and rows, then the model folder), so
bad input fails in seconds with one line naming the culprit, before anything heavy is built.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from or1 import checkpoint, distributed, hook_points
from or1.atomic import atomic_path
from or1.data import PromptSampler, as_path_list, held_out_sets, read_dataset, tokenize_prompts
from or1.errors import ConfigError
from or1.hook_points import HookPoint
from or1.interfaces import BuildContext, RolloutEngine
from or1.plugins import Registry, get_registry
from or1.types import Prompt

log = logging.getLogger("or1.run")

MIN_TEMPERATURE = 0.01
"""The lowest sampling temperature accepted (logits / T overflows float32 far below it)."""


class Components:
    """The components :func:`build` made for a run: one attribute per hook point with
    ``in_run`` (:attr:`or1.hook_points.HookPoint.attribute`: ``rollout``, ``learner``,
    ``verifier``, ``filter``, ``advantage``, ``loss``, ``entropy``, ``stages``, and
    ``loggers``, a mapping name -> :class:`~or1.interfaces.Logger`), each an instance of its
    hook point's interface."""

    def __init__(self, **parts: Any) -> None:
        self.__dict__.update(parts)

    def __repr__(self) -> str:
        return f"Components({', '.join(self.__dict__)})"


def run_hook_points() -> list[HookPoint]:
    """The hook points :func:`build` makes a component (or, ``many``, components) of: those a
    run uses that have an interface (the data and model sources are functions, called)."""
    return [hp for hp in hook_points.HOOK_POINTS if hp.in_run and hp.interface is not None]


def stateful_attributes() -> list[str]:
    """The :class:`Components` whose ``state_dict`` goes into ``state.pt`` but the rollout
    engine's, which is kept per rank (the learner has its own file)."""
    return [
        hp.attribute
        for hp in hook_points.HOOK_POINTS
        if hp.stateful and hp in run_hook_points() and hp.group != "rollout"
    ]


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


def check_at_least(bounds: Iterable[tuple[str, float | None, float]]) -> None:
    """``(key, value, low)`` in turn: a ConfigError ``KEY=VALUE must be >= LOW`` for the
    first value below its bound (None: unset, not checked)."""
    for key, value, low in bounds:
        if value is not None and value < low:
            raise ConfigError(f"{key}={value} must be >= {low}")


def check_sampling(section: str, node: DictConfig) -> None:
    """A section's sampling settings: ``temperature`` of at least :data:`MIN_TEMPERATURE`
    and ``top_p`` in (0, 1]."""
    if not node.temperature >= MIN_TEMPERATURE:
        raise ConfigError(
            f"{section}.temperature={node.temperature} must be >= {MIN_TEMPERATURE} (lower "
            "temperatures overflow the sampling distribution; 0.01 is already near-greedy)"
        )
    if not 0.0 < node.top_p <= 1.0:
        raise ConfigError(f"{section}.top_p={node.top_p} must be in (0, 1]")


def check_values(cfg: DictConfig) -> None:
    """Range checks the types cannot express; one ConfigError naming the key."""
    t = cfg.trainer
    check_at_least(
        [
            ("trainer.prompts_per_step", t.prompts_per_step, 1),
            ("trainer.group_size", t.group_size, 1),
            ("trainer.updates_per_step", t.updates_per_step, 1),
            ("trainer.save_every", t.save_every, 0),
            ("trainer.eval_every", t.eval_every, 0),
            ("trainer.keep_checkpoints", t.keep_checkpoints, 0),
            ("trainer.max_refill_rounds", t.max_refill_rounds, 0),
            ("trainer.samples_every", t.samples_every, 0),
            ("trainer.max_nonfinite_steps", t.max_nonfinite_steps, 0),
            ("trainer.min_free_disk_gb", t.min_free_disk_gb, 0.0),
        ]
    )
    check_eval_values(cfg.eval)
    check_micro_batch_budgets(cfg)
    check_at_least([("trainer.total_steps", t.total_steps, 1)])
    if t.async_steps not in (0, 1):
        raise ConfigError(
            f"trainer.async_steps={t.async_steps} is not supported (0: strictly on-policy, "
            "1: one-step asynchronous)"
        )
    if t.async_steps:
        check_at_least([("trainer.rollout_ranks", t.rollout_ranks, 1)])
    check_sampling("rollout", cfg.rollout)


def check_micro_batch_budgets(cfg: DictConfig) -> None:
    """A stage's ``micro_batch_tokens`` (when set) must hold its longest sequence: the
    longest prompt plus the stage's ``max_response_length``."""
    for i, s in enumerate(getattr(cfg.stages, "stages", None) or []):
        budget = int(getattr(s, "micro_batch_tokens", 0) or 0)
        longest = int(cfg.data.max_prompt_length) + int(getattr(s, "max_response_length", 0))
        if 0 < budget < longest:
            raise ConfigError(
                f"stages.stages[{i}].micro_batch_tokens={budget} is below the stage's longest "
                f"sequence of {longest} tokens (data.max_prompt_length={cfg.data.max_prompt_length}"
                f" + max_response_length={s.max_response_length})"
            )


def check_eval_values(e: DictConfig) -> None:
    """The eval section's ranges: sampling settings, and pass@k only for k <= eval.k."""
    from or1.evaluation import check_pass_ks

    check_at_least([("eval.k", e.k, 1), ("eval.chunk", e.chunk, 1)])
    check_sampling("eval", e)
    check_at_least([("eval.max_tokens", e.max_tokens, 1)])
    try:
        check_pass_ks(e.k, list(e.pass_k))
    except ValueError as exc:
        raise ConfigError(f"eval.pass_k={list(e.pass_k)}: {exc}") from None


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


def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def build(cfg: DictConfig, registry: Registry, ctx: BuildContext) -> Components:
    """Every component of the run: one per hook point of :func:`run_hook_points` (for a
    ``many`` hook point, one per section under it); a ``rank0_only`` one (the loggers) on
    rank 0 only (elsewhere None, or an empty mapping)."""

    parts: dict[str, Any] = {}
    for hp in run_hook_points():
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


def check_config(cfg: DictConfig, registry: Registry) -> None:
    """Every check that needs no engine, no model and no file: each selected component is
    registered, the core's range checks, and each component's own ``check_config``. Run by
    ``or1-train`` before Hydra writes anything, and again by :func:`prepare`."""
    sections = list(config_sections(cfg))
    for group, node in sections:
        registry.get(group, node.name)
    check_values(cfg)
    for group, node in sections:
        check = getattr(registry.get(group, node.name).factory, "check_config", None)
        if check is not None:
            check(node)


def config_sections(cfg: DictConfig) -> Iterator[tuple[str, DictConfig]]:
    """``(group, section)`` of every component a training run uses: the hook points it
    builds and its data and model sources (each section of a ``many`` hook point)."""
    for hp in hook_points.HOOK_POINTS:
        if not hp.in_run:
            continue
        if hp.many:
            yield from ((hp.group, node) for node in cfg[hp.group].values())
        else:
            yield hp.group, cfg[hp.group]


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
    from or1.model_support import check_model_support  # every engine's check_model

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


def check_launch(cfg: DictConfig, registry: Registry) -> distributed.EngineLayout:
    """The rollout layout of this launch, before anything is built: a multi-process launch
    (torchrun) needs a learner that runs in several processes, and the rollout engine's
    ``tensor_parallel_size`` must divide the world."""
    n = distributed.world_size()
    if cfg.trainer.async_steps:
        return check_async_launch(cfg, n)
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


def check_async_launch(cfg: DictConfig, n: int) -> distributed.EngineLayout:
    """``trainer.async_steps=1``: rollout engines and the learner on disjoint ranks, the last
    ``trainer.rollout_ranks`` ranks generating (one engine each) and the one rank before them
    training; this rank's engine layout among the rollout ranks (the learner rank's engine,
    which validates, is one engine of its own)."""
    t = cfg.trainer
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


def check_memory(cfg: DictConfig, model_path: Path) -> None:
    """GPU launches (``trainer.check_memory``): the memory plan of this launch's layout on its
    GPUs (:func:`or1.memory_plan.check_fits`), one line naming the keys and the numbers when it
    does not fit, before any engine is built. CPU runs are not planned."""
    if not (cfg.trainer.check_memory and torch.cuda.is_available()):
        return
    from or1.memory_plan import check_fits

    per_node = int(os.environ.get("LOCAL_WORLD_SIZE") or torch.cuda.device_count() or 1)
    memory = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
    try:
        check_fits(cfg, distributed.world_size(), memory, per_node, model_path)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (trainer.check_memory=false launches anyway)") from None


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


RESUME_MAY_CHANGE = (
    "trainer.total_steps",
    "trainer.save_every",
    "trainer.keep_checkpoints",
    "trainer.eval_every",
    "trainer.eval_at_start",
    "trainer.export_final",
    "trainer.resume",
    "trainer.cache_dir",
    "trainer.num_threads",
    "trainer.dist_timeout_s",
    "trainer.profile",
    "trainer.profile_steps",
    "trainer.samples_every",
    "trainer.dump_samples",
    "trainer.check_memory",
    "trainer.min_free_disk_gb",
    "trainer.max_nonfinite_steps",
    "trainer.default_loggers",
    "eval.chunk",
    "logger",
)
"""Keys a resumed run may set differently from the run it continues: bookkeeping, logging,
how far it goes; anything else would train the second half of a run with other settings."""


def _flat(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out |= _flat(value, f"{prefix}.{key}" if prefix else str(key))
        return out
    return {prefix: node}


def check_same_settings(cfg: DictConfig, run_dir: Path) -> None:
    """A run folder resumes only with the settings it was started with (its saved
    ``.hydra/config.yaml``), but for :data:`RESUME_MAY_CHANGE`; one line naming the keys."""
    saved_file = run_dir / ".hydra" / "config.yaml"
    if not saved_file.is_file():
        return
    saved = _flat(OmegaConf.to_container(OmegaConf.load(saved_file), resolve=False))
    now = _flat(OmegaConf.to_container(cfg, resolve=False))  # both as written, unresolved
    free = tuple(RESUME_MAY_CHANGE)
    changed = [
        k
        for k in sorted(set(saved) | set(now))
        if saved.get(k, "<unset>") != now.get(k, "<unset>")
        and not any(k == f or k.startswith(f + ".") for f in free)
    ]
    if changed:
        shown = ", ".join(
            f"{k}={saved.get(k, '<unset>')} -> {now.get(k, '<unset>')}" for k in changed[:3]
        )
        more = f" (and {len(changed) - 3} more)" if len(changed) > 3 else ""
        raise ConfigError(
            f"hydra.run.dir={run_dir} holds a run started with other settings: {shown}{more}; "
            f"resume it with its own settings ({run_dir}/.hydra/overrides.yaml) or choose "
            "another hydra.run.dir"
        )


def finished_summary(cfg: DictConfig, run_dir: Path) -> dict[str, Any] | None:
    """The ``summary.json`` of a run folder that already holds this whole run, else None: the
    summary, a complete checkpoint at its last step, ``trainer.resume=auto``, the same
    settings (:func:`check_same_settings`) and ``trainer.total_steps`` unset or that step.
    Reads files only (no model, no engine), so a re-submitted sweep skips its finished jobs
    in a second; anything else (a changed setting, a longer run) goes through :func:`prepare`."""
    import json

    path = run_dir / "summary.json"
    if str(cfg.trainer.resume) != "auto" or not path.is_file():
        return None
    try:
        summary = json.loads(path.read_text())
    except ValueError:
        return None
    steps = summary.get("steps") if isinstance(summary, dict) else None
    if not isinstance(steps, int) or cfg.trainer.total_steps not in (None, steps):
        return None
    root = run_dir / "checkpoints"
    saved = checkpoint.list_steps(root)
    if (
        not saved
        or saved[-1] != steps
        or not (root / f"step_{steps}" / checkpoint.MANIFEST).is_file()
    ):
        return None
    try:
        check_same_settings(cfg, run_dir)
    except ConfigError:
        return None  # prepare() says what differs
    return summary


def find_resume_checkpoint(cfg: DictConfig, run_dir: Path) -> Path | None:
    mode = str(cfg.trainer.resume)
    if mode == "never":
        if checkpoint.list_steps(run_dir / "checkpoints"):
            raise ConfigError(
                f"{run_dir} already holds checkpoints; use trainer.resume=auto to continue that run "
                "or choose another hydra.run.dir"
            )
        return None
    if mode == "auto":  # checksums read once, on rank 0 (the folder is shared)
        latest = checkpoint.latest(run_dir / "checkpoints") if distributed.is_main() else None
        found = distributed.broadcast_object(None if latest is None else str(latest))
        return None if found is None else Path(found)
    path = Path(mode).expanduser()
    problem = checkpoint.verify(path) if path.is_dir() else "not a folder"
    if problem:
        raise ConfigError(f"trainer.resume={mode}: not a usable checkpoint ({problem})")
    return path


def checkpoint_parts(run: Run, step: int) -> dict[str, Any]:
    """What a checkpoint holds besides a sharded learner's ``learner/`` folder; collective
    (every rank calls it). The learner's ``state_dict`` (as it gives it on rank 0) unless its
    checkpoints are sharded; the trainer's state once (the sampler, stage schedule
    and controllers are the same on every rank); each rank's own RNG and rollout-engine state
    under ``ranks`` (gathered: a few kilobytes each). Only rank 0's answer is written."""
    c = run.components
    learner = None if c.learner.sharded_checkpoints else c.learner.state_dict()
    ranks = distributed.all_gather_object({"rng": rng_state(), "rollout": c.rollout.state_dict()})
    return {
        **({"learner": learner} if learner is not None else {}),
        "state": {
            "step": step,
            "sampler": run.sampler.state_dict(),
            "components": {name: getattr(c, name).state_dict() for name in stateful_attributes()},
            "ranks": ranks,
            "start_metrics": run.start_metrics,
        },
    }


def restore(run: Run, path: Path) -> None:
    """Every rank reads the checkpoint (a sharded learner's slices of ``learner/``, or
    ``learner.pt`` memory-mapped: each rank keeps only its shards) and takes its own RNG and
    engine state; a checkpoint of another world size gives every rank rank 0's."""
    state = checkpoint.load(path, "state")
    try:
        checkpoint.load_learner(path, run.components.learner)
    except ValueError as exc:
        raise ConfigError(f"trainer.resume: {exc} (learner={run.cfg.learner.name})") from None
    for name in stateful_attributes():
        getattr(run.components, name).load_state_dict(state["components"][name])
    ranks = state["ranks"]
    mine = ranks[distributed.rank()] if len(ranks) == distributed.world_size() else ranks[0]
    run.components.rollout.load_state_dict(mine["rollout"])
    run.sampler.load_state_dict(state["sampler"])
    set_rng_state(mine["rng"])
    run.start_step = int(state["step"])
    run.start_metrics = state.get("start_metrics")
    run.resumed_from = path
    # the engine must serve the restored policy
    run.components.rollout.update_weights(run.components.learner.named_weights())
    log.info("resumed from %s (step %d)", path, run.start_step)


def config_dict(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
