"""or1's hook specifications: how a plugin offers components, each docstring its contract.

A plugin is a module (or object) found through the ``or1`` entry-point group that implements
:func:`or1_register`. It offers *components*: a factory and its config schema for one of the
hook points of :data:`or1.core.hook_points.HOOK_POINTS` (the config groups ``rollout``,
``learner``, ``verifier``, ...; ``docs/hooks.md`` lists them with their interfaces). What a
built component is then asked to do, by whom and when, is its interface's contract in
:mod:`or1.core.interfaces`. A run is observed through one mechanism, the ``logger`` hook point
(:class:`or1.core.interfaces.Logger`: the start, every step's metrics and samples, messages such as
stage changes, saved checkpoints and the summary, artifacts, the end); there are no event
hooks.
"""

from __future__ import annotations

from collections.abc import Callable
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

    Called once per process by :func:`or1.core.registry.get_registry` (broadcast: every plugin's
    implementation, one at a time in plugin registration order, built-in plugins first), on
    the calling thread, before the Hydra config is composed. Implementations must not build
    anything expensive (they only describe) and should import their component modules
    inside the hook, so that listing plugins stays cheap.

    ``group`` is a hook point's config group (a row of :data:`or1.core.hook_points.HOOK_POINTS`;
    any other is an error naming the plugin). ``name`` is what the config selects
    (``verifier=math`` selects the verifier registered as ``"math"``). ``schema`` is a
    dataclass subclassing the hook point's base schema (in :mod:`or1.core.config`) whose fields are
    the component's config keys and whose ``name`` defaults to ``name``; it is stored in
    Hydra's ConfigStore so a typo or a wrong type in an override fails before anything is
    built. ``factory`` makes the component as the hook point states, for most hook points
    ``factory(cfg, ctx)`` with the component's config node and an
    :class:`or1.core.interfaces.BuildContext`, returning an instance of the hook point's
    interface (the data and model sources are functions of ``(cfg, cache_dir)``); the core
    makes every component through :meth:`or1.core.registry.Registry.build`. Class attributes of
    ``factory``
    (``check_config``, ``check_model``, ``check_launch``, ``memory_estimate``,
    ``multiprocess``, ``owns_process_group``) are read before anything is built.

    A name claimed by two third-party packages is an error naming both; a third-party
    package may override a built-in (``or1``) name. An implementation that raises is
    reported with its package name (``or1-plugins`` lists it under problems); what it
    registered before raising stays registered, the other plugins are unaffected.
    """
