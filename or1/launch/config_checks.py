"""The checks of a run config that need no engine, no model and no file: every selected
component is registered, the core's value ranges, and each component's own ``check_config``.
``or1-train`` runs them before Hydra writes anything (:func:`check_config`), and
:func:`or1.launch.prepare.prepare` again; each failure is one ConfigError naming the key."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from omegaconf import DictConfig

from or1.core import hook_points
from or1.core.errors import ConfigError
from or1.core.registry import Registry
from or1.rl.lr_schedule import check_lr_schedule

MIN_TEMPERATURE = 0.01
"""The lowest sampling temperature accepted (logits / T overflows float32 far below it)."""


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
    check_at_least([("trainer.partial_rollout_tokens", t.partial_rollout_tokens, 0)])
    if t.partial_rollout_tokens and not t.async_steps:
        raise ConfigError(
            f"trainer.partial_rollout_tokens={t.partial_rollout_tokens} needs trainer.async_steps=1 "
            "(partial rollouts carry samples into the next step of the asynchronous loop)"
        )
    if t.partial_rollout_tokens and cfg.filter.get("refill", False):
        raise ConfigError(
            "filter.refill=true cannot be combined with trainer.partial_rollout_tokens (each "
            "step's new prompts top the pool up instead): set filter.refill=false"
        )
    check_sampling("rollout", cfg.rollout)
    check_lr_schedule(cfg.learner)


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
    from or1.rl.evaluation import check_pass_ks

    check_at_least([("eval.k", e.k, 1), ("eval.chunk", e.chunk, 1)])
    check_sampling("eval", e)
    check_at_least([("eval.max_tokens", e.max_tokens, 1)])
    try:
        check_pass_ks(e.k, list(e.pass_k))
    except ValueError as exc:
        raise ConfigError(f"eval.pass_k={list(e.pass_k)}: {exc}") from None


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
