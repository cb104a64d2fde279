"""or1's hook specifications: every hook point a plugin can fill, each docstring its contract.

Two kinds of hooks, as in pytest:

* **Registration hooks** (``or1_register_*``, broadcast). Called once per process by
  :func:`or1.plugins.get_registry`, in plugin registration order, before the Hydra config is
  composed. Each implementation receives a ``register`` callable and calls it for every
  component it offers::

      register(name: str, factory: Callable, schema: type) -> None

  ``name`` is what the config selects (``verifier=math`` selects the verifier registered as
  ``"math"``); ``schema`` is a dataclass (subclass of the hook point's base schema in
  :mod:`or1.config`) whose fields are the component's config keys, stored in Hydra's
  ConfigStore so a typo or a wrong type in an override fails before anything is built;
  ``factory(cfg, ctx)`` builds the component from its config node and an
  :class:`or1.interfaces.BuildContext` and must return an instance of the interface named in
  the hook's docstring. A name claimed by two third-party packages is an error naming both; a
  third-party package may override a built-in (``or1``) name. An implementation that raises
  is reported with its package name and skipped; the other plugins stay registered.
  Implementations must not build anything expensive: they only describe.

* **Event hooks** (broadcast, no return value). Called by the trainer; every plugin hears
  them. Arguments are read-only unless stated.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pluggy

PROJECT = "or1"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[[str, Callable[..., Any], type], None]


# --------------------------------------------------------------------------- registration


@hookspec
def or1_register_rollout_engines(register: Register) -> None:
    """Offer rollout engines (config group ``rollout``).

    ``factory(cfg, ctx)`` returns an :class:`or1.interfaces.RolloutEngine` serving the policy
    at ``ctx.model_path``. The trainer calls ``generate_stream`` once or more per step (the
    default is ``generate``, then each group handed over; evaluation calls ``generate``), then
    ``update_weights`` with the learner's new weights after each optimisation step, and
    ``sleep``/``wake_up`` around training. Schema base: :class:`or1.config.RolloutConfig`
    (``temperature``, ``top_p``, ``top_k``; group size and max tokens come from the trainer
    and the stage).
    """


@hookspec
def or1_register_learners(register: Register) -> None:
    """Offer learners (config group ``learner``).

    ``factory(cfg, ctx)`` returns an :class:`or1.interfaces.Learner` holding the policy loaded
    from ``ctx.model_path`` and its optimiser. Per step the trainer calls ``on_policy_step``
    (old log-probs and entropy of the current policy, the entropy coefficient from them, one
    optimiser step; by default ``compute_logprobs`` then ``train_step``) or, with
    ``trainer.updates_per_step`` > 1, ``compute_logprobs`` on every mini-batch of the step
    and then ``train_step`` on each in turn (all against those old log-probs), then
    ``named_weights`` for weight sync; ``save_pretrained`` to export. Its ``state_dict`` must
    hold the model and optimiser so a checkpoint can resume it exactly.
    Schema base: :class:`or1.config.LearnerConfig`.
    """


@hookspec
def or1_register_verifiers(register: Register) -> None:
    """Offer reward verifiers (config group ``verifier``).

    ``factory(cfg, ctx)`` returns an :class:`or1.interfaces.RewardVerifier`. The trainer calls
    ``score_many`` once per step with the text of every completion (the whole decoded
    response; verifiers choose what part to read) and its dataset row. Rewards are the
    returned ``Score.value`` in [0, 1]. Schema base: :class:`or1.config.VerifierConfig`.
    """


@hookspec
def or1_register_filters(register: Register) -> None:
    """Offer online data filters (config group ``filter``).

    ``factory(cfg, ctx)`` returns an :class:`or1.interfaces.OnlineFilter`. Called once per
    step after scoring (``keep``); dropped groups get no advantage and no loss, and appear in
    ``samples.jsonl`` with ``kept: false``. Schema base: :class:`or1.config.FilterConfig`.
    """


@hookspec
def or1_register_advantage_estimators(register: Register) -> None:
    """Offer advantage estimators (config group ``advantage``).

    ``factory(cfg, ctx)`` returns an :class:`or1.interfaces.AdvantageEstimator`, called once
    per step on the kept groups' rewards. Schema base: :class:`or1.config.AdvantageConfig`.
    """


@hookspec
def or1_register_policy_losses(register: Register) -> None:
    """Offer policy losses (config group ``loss``).

    ``factory(cfg, ctx)`` returns an :class:`or1.interfaces.PolicyLoss`, handed to the
    learner's ``train_step``; the learner calls ``token_weights`` once per batch and
    ``per_token_loss`` once per micro-batch. Schema base: :class:`or1.config.LossConfig`.
    """


@hookspec
def or1_register_entropy_controllers(register: Register) -> None:
    """Offer entropy controllers (config group ``entropy``).

    ``factory(cfg, ctx)`` returns an :class:`or1.interfaces.EntropyController`. Per step the
    trainer measures the batch entropy ``e_k`` (with the controller's ``estimator``) before
    the update, calls ``coefficient(e_k)`` for the loss, then ``update(e_k)`` after the step.
    Schema base: :class:`or1.config.EntropyConfig`.
    """


@hookspec
def or1_register_stage_schedulers(register: Register) -> None:
    """Offer stage schedulers (config group ``stages``).

    ``factory(cfg, ctx)`` returns an :class:`or1.interfaces.StageScheduler`; the trainer asks
    ``stage_at(step)`` at the start of every step and applies the stage's max response length,
    micro-batch token budget, truncation mode and resets on entry, and hands it the step's
    metrics with ``observe(step, metrics)`` at the end of the step. ``total_steps`` of the
    scheduler is the run length unless ``trainer.total_steps`` is set.
    Schema base: :class:`or1.config.StagesConfig`.
    """


@hookspec
def or1_register_loggers(register: Register) -> None:
    """Offer loggers (config group ``logger``; several can be active at once).

    ``factory(cfg, ctx)`` returns an :class:`or1.interfaces.Logger`. A logger that raises is
    reported once and disabled; training goes on. Schema base:
    :class:`or1.config.LoggerConfig`.
    """


@hookspec
def or1_register_data_sources(register: Register) -> None:
    """Offer dataset builders (config group ``data``).

    Here ``factory(cfg, cache_dir: Path) -> (train_files, val_files)`` is a function, called
    only when ``data.path`` is not set; it writes OR1-schema files (parquet or JSONL) under
    ``cache_dir`` (deterministic in ``cfg``, reused when present) and returns their paths.
    Schema base: :class:`or1.config.DataConfig`.
    """


@hookspec
def or1_register_model_sources(register: Register) -> None:
    """Offer model builders (config group ``model``).

    Here ``factory(cfg, cache_dir: Path) -> Path`` is a function, called only when
    ``model.path`` is not set; it returns a Hugging Face folder (config, safetensors,
    tokenizer with a chat template), built once under ``cache_dir`` and reused after.
    Schema base: :class:`or1.config.ModelConfig`.
    """


@hookspec
def or1_register_data_stages(register: Register) -> None:
    """Offer data-preparation stages for ``or1-data`` (config group ``data_stage``; several
    are active at once, each under ``data_stage.<name>``, run in the order of the list).

    ``factory(cfg, ctx)`` (``ctx``: the run's :class:`or1.interfaces.DataStageContext`) returns
    an :class:`or1.interfaces.DataStage`; it only checks its config, building nothing
    expensive. ``or1-data`` calls its ``run(rows, ctx)`` once with every row the previous
    stage kept (or, for the first stage, every row of the input files) and the context
    (progress bars, work files for in-stage resumption, verifiers and rollout engines from the
    registry). The stage returns an :class:`or1.types.StageResult`: the kept rows, in input
    order, and one :class:`or1.types.DroppedRow` (uid, reason, details) for every other input
    row; a row neither kept nor dropped, or both, is an error. ``or1-data`` writes the kept
    rows to ``<out>/<NN>_<name>.parquet`` and the dropped ones to
    ``<out>/<NN>_<name>_report.jsonl`` (each under a temporary name, then renamed), and skips
    the stage on a later run when that output carries the same fingerprint (the stage's
    config, its input, and the config sections listed in ``DataStage.fingerprint_sections``).
    A stage with ``enabled: false`` is not built; its input passes through. Schema base:
    :class:`or1.config.DataStageConfig` (``enabled``).
    """


# --------------------------------------------------------------------------------- events


@hookspec
def or1_train_start(config: Any, run_dir: Path, start_step: int) -> None:
    """After every component is built and a checkpoint (if any) restored, before the first
    step. ``start_step`` is 0 for a fresh run."""


@hookspec
def or1_stage_changed(step: int, previous: Any, stage: Any) -> None:
    """At the start of ``step`` when the stage differs from the previous step's (also at the
    first step of a run, with ``previous=None``). ``stage`` is an :class:`or1.types.Stage`."""


@hookspec
def or1_step_end(step: int, metrics: dict[str, float], groups: list[Any]) -> None:
    """After a step's update, weight sync and evaluation, with the step's metrics and its
    :class:`or1.types.Group` list (read-only)."""


@hookspec
def or1_checkpoint_saved(step: int, path: Path) -> None:
    """After the checkpoint of ``step`` is complete and renamed into place at ``path``."""


@hookspec
def or1_train_end(run_dir: Path, summary: dict[str, Any]) -> None:
    """After the last step, the final export and ``summary.json``; not called
    when a signal stopped the run early. ``summary`` holds start/end accuracies."""
