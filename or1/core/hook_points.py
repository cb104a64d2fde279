"""The table of hook points: every place a plugin's component can fill, in one place.

Each :class:`HookPoint` row names a config group, the interface its components implement,
the group's base schema, whether one component or several are active at once and whether
their state goes into checkpoints. Everything else is derived from this table: the run
config's schema (:func:`run_config_schema`), the registry's groups (:mod:`or1.core.registry`), the Hydra
ConfigStore entries (:mod:`or1.core.schemas`), the components a run builds
(:class:`or1.launch.prepare.Components`, :func:`or1.launch.prepare.build`), the checkpointed state
(:func:`or1.launch.resume.checkpoint_parts`), ``or1-plugins`` and the generated ``docs/hooks.md``.

Adding a hook point is one row here, its interface in :mod:`or1.core.interfaces` (its docstrings
are the contract) and its base schema in :mod:`or1.core.config` (with ``conf/<group>/`` for
shipped presets); the caller that uses the component is the feature itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import Any

from omegaconf import MISSING

from or1.core import interfaces
from or1.core.config import (
    AdvantageConfig,
    DataConfig,
    DataPassConfig,
    DataPrepConfig,
    EntropyConfig,
    EvalConfig,
    FilterConfig,
    LearnerConfig,
    LoggerConfig,
    LossConfig,
    ModelConfig,
    OfflineFilterConfig,
    RolloutConfig,
    StagesConfig,
    TrainerConfig,
    VerifierConfig,
)


@dataclass(frozen=True)
class HookPoint:
    """One hook point: a config group that a registered component fills."""

    group: str
    """The config group: ``GROUP=NAME`` selects the component registered as ``NAME`` here,
    and ``GROUP.KEY=VALUE`` sets its keys."""
    schema: type
    """The group's base schema (a dataclass in :mod:`or1.core.config`); every component's schema
    registered here subclasses it."""
    interface: type | None
    """What ``factory(cfg, ctx)`` returns; None for a hook point whose factory is itself
    the component, a function with the signature ``factory`` states."""
    contract: str
    """Who builds the component, when, and which of its methods are called when (the
    interface's docstrings are each method's contract)."""
    factory: str = "factory(cfg, ctx: BuildContext)"
    """How the component is made from its config node."""
    many: bool = False
    """True: several components are active at once, each under ``GROUP.NAME`` (the group's
    config section is a mapping name -> section); False: one, under ``GROUP``."""
    stateful: bool = False
    """True: the run's component state (``state_dict``) goes into every checkpoint's
    ``state.pt`` and is restored on resume."""
    in_run: bool = True
    """True: every training run uses it, and :func:`or1.launch.config_checks.check_config` checks its
    section; one with an ``interface`` is then built by :func:`or1.launch.prepare.build` (an attribute
    of :class:`or1.launch.prepare.Components`, see :attr:`attribute`). False: another command builds
    it (a pass of ``or1-data``)."""
    rank0_only: bool = False
    """True: under torchrun only rank 0 builds it (the other ranks hold none)."""

    @property
    def attribute(self) -> str:
        """The :class:`or1.launch.prepare.Components` attribute that holds this hook point's component(s)."""
        return f"{self.group}s" if self.many else self.group


HOOK_POINTS: tuple[HookPoint, ...] = (
    HookPoint(
        "rollout",
        RolloutConfig,
        interfaces.RolloutEngine,
        """Built once per rank by :func:`or1.launch.prepare.build` (and again by the trainer if it
        crashes, serving the learner's current weights), for ``or1-eval`` / ``or1-filter`` /
        ``or1-data`` by those commands; serves the policy at ``ctx.model_path``. Per step the
        trainer calls ``generate_stream`` on an engine's leading rank (``generate`` on its
        other ranks, and after a restart) once per sampling round (one, plus a refill round
        while the filter wants a full batch), ``sleep`` before the learner trains and
        ``wake_up`` then ``update_weights`` with the learner's new weights after a step that
        trained; evaluation calls ``generate``. Group size, max tokens and seeds come from the
        trainer and the stage.""",
        stateful=True,
    ),
    HookPoint(
        "learner",
        LearnerConfig,
        interfaces.Learner,
        """Built once per rank by :func:`or1.launch.prepare.build`; holds the policy loaded from
        ``ctx.model_path`` and its optimiser. On every step that kept a group the trainer
        calls ``compute_ref_logprobs`` first when the loss has a KL term, then either the
        on-policy step of :func:`or1.rl.learner_step.on_policy_step` (one mini-batch: the
        recipe's single update; ``fuses_old_logprobs``, then ``fused_train_step`` or
        ``compute_logprobs`` and ``train_step``) or, with more than one mini-batch
        (``trainer.updates_per_step`` > 1), ``compute_logprobs`` on every mini-batch and then
        ``train_step`` on each in turn; then ``named_weights`` for the weight sync. It calls
        the entropy coefficient it is handed (see ``entropy``). ``reset_optimizer`` when a
        stage asks for it, ``save_pretrained`` for the final policy; its own checkpoint file
        holds its ``state_dict`` (or ``save_sharded``), so a resumed run continues it
        exactly.""",
    ),
    HookPoint(
        "verifier",
        VerifierConfig,
        interfaces.RewardVerifier,
        """Built once per rank by :func:`or1.launch.prepare.build` (and by ``or1-eval``, ``or1-filter``,
        ``or1-verify``, ``or1-data``). Rewards are the ``Score.value`` in [0, 1] returned by
        ``score_many`` for the text of every completion (the whole decoded response) and its
        dataset row; the trainer calls it once per group, as each group finishes generating,
        from a helper thread (see :meth:`or1.core.interfaces.RewardVerifier.score_many`).""",
    ),
    HookPoint(
        "filter",
        FilterConfig,
        interfaces.OnlineFilter,
        """Built once per rank by :func:`or1.launch.prepare.build`. The trainer calls ``keep`` once per
        sampling round with that round's scored groups; dropped groups get no advantage and
        no loss, and appear in ``samples.jsonl`` with ``kept: false``.""",
        stateful=True,
    ),
    HookPoint(
        "advantage",
        AdvantageConfig,
        interfaces.AdvantageEstimator,
        """Built once per rank by :func:`or1.launch.prepare.build`; the trainer calls ``compute`` once per
        step on the kept groups' rewards (not at all when it kept none).""",
        stateful=True,
    ),
    HookPoint(
        "loss",
        LossConfig,
        interfaces.PolicyLoss,
        """Built once per rank by :func:`or1.launch.prepare.build` and handed to the learner's
        ``train_step`` / ``fused_train_step``; the learner calls ``token_weights`` once per
        update and ``per_token_loss`` once per micro-batch (through
        :func:`or1.rl.learner_step.backward_micro_batch`). The trainer reads
        ``needs_reference``; the learner reads ``needs_rollout_logprobs``.""",
    ),
    HookPoint(
        "entropy",
        EntropyConfig,
        interfaces.EntropyController,
        """Built once per rank by :func:`or1.launch.prepare.build`. On every step that trains, the batch
        entropy ``e_k`` is measured (with the controller's ``estimator``) over the pre-update
        policy's response tokens of every rank and ``coefficient(e_k)`` gives the entropy
        bonus of the loss, once per step, before any gradient, on the trainer's thread: by
        :class:`or1.rl.learner_step.EntropyCoefficient`, which the learner calls (the
        on-policy step; inside its training forward when fused) or which
        :func:`or1.rl.mini_batches.sequential_updates` calls before the mini-batch updates. The
        trainer calls ``update(e_k)`` after the step and ``reset`` when a stage asks for it.""",
        stateful=True,
    ),
    HookPoint(
        "stages",
        StagesConfig,
        interfaces.StageScheduler,
        """Built once per rank by :func:`or1.launch.prepare.build`. The trainer asks ``stage_at(step)``
        at the start of every step and applies the stage's max response length, micro-batch
        token budget, truncation mode and resets on entry, and hands it the step's metrics
        with ``observe(step, metrics)`` at the end of the step. ``total_steps`` is the run
        length unless ``trainer.total_steps`` is set.""",
        stateful=True,
    ),
    HookPoint(
        "logger",
        LoggerConfig,
        interfaces.Logger,
        """Built by :func:`or1.launch.prepare.build` on rank 0 only (no loggers elsewhere); the only
        observer of a run: ``start`` once, then metrics, samples, messages (stage changes,
        checkpoints saved, the summary) and artifacts as the run goes, ``close`` at the end.
        A logger that raises is reported once and disabled; training goes on.""",
        many=True,
        rank0_only=True,
    ),
    HookPoint(
        "data",
        DataConfig,
        None,
        """Called once per run by :func:`or1.launch.prepare.resolve_data` (rank 0 first), only when
        ``data.path`` is not set: writes OR1-schema files (parquet or JSONL) under
        ``cache_dir`` (deterministic in ``cfg``, reused when present) and returns their paths
        as ``(train_files, val_files)``.""",
        factory="factory(cfg, cache_dir: Path) -> (train_files, val_files)",
    ),
    HookPoint(
        "model",
        ModelConfig,
        None,
        """Called by :func:`or1.launch.prepare.resolve_model` (rank 0 first), only when ``model.path``
        is not set: returns a Hugging Face folder (config, safetensors, tokenizer with a chat
        template), built once under ``cache_dir`` and reused after.""",
        factory="factory(cfg, cache_dir: Path) -> Path",
    ),
    HookPoint(
        "data_pass",
        DataPassConfig,
        interfaces.DataPass,
        """A pass of ``or1-data``, run in the order of the ``data_pass`` list; built by
        ``or1-data`` with its :class:`or1.core.interfaces.DataPassContext` as ``ctx`` (a pass
        with ``enabled: false`` is not built: its input passes through) and only checks its
        config, building nothing expensive. ``or1-data`` calls its ``run(rows, ctx)`` once
        with every row the previous pass kept (or, for the first pass, every row of the
        input files); the kept rows go to ``<out>/<NN>_<name>.parquet`` and the dropped ones
        to ``<out>/<NN>_<name>_report.jsonl`` (each written atomically), and the pass is
        skipped on a later run when that output carries the same fingerprint (the pass's
        config, its input and the config sections in ``DataPass.fingerprint_sections``).""",
        factory="factory(cfg, ctx: DataPassContext)",
        many=True,
        in_run=False,
    ),
)
"""Every hook point, in the order the docs and ``or1-plugins`` list them."""


def hook_point(group: str) -> HookPoint:
    """The row of ``group``; KeyError naming the known groups for any other."""
    for hp in HOOK_POINTS:
        if hp.group == group:
            return hp
    known = ", ".join(hp.group for hp in HOOK_POINTS)
    raise KeyError(f"no hook point '{group}' (hook points: {known})")


def run_config_schema() -> type:
    """The run config's schema (stored in Hydra's ConfigStore as ``or1_schema``): the core
    sections (``trainer``, ``eval``, ``offline``, ``prep``) and one section per hook point
    of :data:`HOOK_POINTS` as it is now (MISSING until a component is selected; a mapping
    name -> section for a ``many`` hook point)."""
    core: list[tuple[str, type, Any]] = [
        ("trainer", TrainerConfig, field(default_factory=TrainerConfig)),
        ("eval", EvalConfig, field(default_factory=EvalConfig)),
        ("offline", OfflineFilterConfig, field(default_factory=OfflineFilterConfig)),
        ("prep", DataPrepConfig, field(default_factory=DataPrepConfig)),
    ]
    sections = [
        (hp.group, Any, field(default_factory=dict) if hp.many else field(default=MISSING))
        for hp in HOOK_POINTS
    ]
    return make_dataclass("Or1Config", [*core, *sections], namespace={"__module__": __name__})


def run_hook_points() -> list[HookPoint]:
    """The hook points :func:`or1.launch.prepare.build` makes a component (or, ``many``, components)
    of: those a run uses that have an interface (the data and model sources are functions,
    called)."""
    return [hp for hp in HOOK_POINTS if hp.in_run and hp.interface is not None]
