"""or1's hook specifications: how a plugin offers components, each docstring its contract.

A plugin is a module (or object) found through the ``or1`` entry-point group that implements
:func:`or1_register`. It offers *components*: a factory and its config schema for one of the
hook points of :data:`or1.hook_points.HOOK_POINTS` (the config groups ``rollout``,
``learner``, ``verifier``, ...; ``docs/hooks.md`` lists them with their interfaces). What a
built component is then asked to do, by whom and when, is its interface's contract in
:mod:`or1.interfaces`. The event hooks (broadcast, no return value) are called by the
trainer; every plugin hears them; arguments are read-only.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pluggy

PROJECT = "or1"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Register = Callable[[str, str, Callable[..., Any], type], None]
"""``register(group, name, factory, schema)``: see :func:`or1_register`."""


@hookspec
def or1_register(register: Register) -> None:
    """Offer components: call ``register(group, name, factory, schema)`` once for each.

    Called once per process by :func:`or1.plugins.get_registry` (broadcast: every plugin's
    implementation, one at a time in plugin registration order, built-in plugins first), on
    the calling thread, before the Hydra config is composed. Implementations must not build
    anything expensive (they only describe) and should import their component modules
    inside the hook, so that listing plugins stays cheap.

    ``group`` is a hook point's config group (a row of :data:`or1.hook_points.HOOK_POINTS`;
    any other is an error naming the plugin). ``name`` is what the config selects
    (``verifier=math`` selects the verifier registered as ``"math"``). ``schema`` is a
    dataclass subclassing the hook point's base schema (in :mod:`or1.config`) whose fields are
    the component's config keys and whose ``name`` defaults to ``name``; it is stored in
    Hydra's ConfigStore so a typo or a wrong type in an override fails before anything is
    built. ``factory`` makes the component as the hook point states, for most hook points
    ``factory(cfg, ctx)`` with the component's config node and an
    :class:`or1.interfaces.BuildContext`, returning an instance of the hook point's
    interface (the data and model sources are functions of ``(cfg, cache_dir)``). Class
    attributes of ``factory``
    (``check_config``, ``check_model``, ``check_launch``, ``memory_estimate``,
    ``multiprocess``, ``owns_process_group``) are read before anything is built.

    A name claimed by two third-party packages is an error naming both; a third-party
    package may override a built-in (``or1``) name. An implementation that raises is
    reported with its package name (``or1-plugins`` lists it under problems); what it
    registered before raising stays registered, the other plugins are unaffected.
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
