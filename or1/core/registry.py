"""The plugin manager and the registry of named components.

Plugins are modules (or objects) implementing hooks from :mod:`or1.core.hookspecs`. They are found
through the ``or1`` entry-point group, the built-in ones (this distribution's ``or1_plugins``)
exactly like third-party packages; built-ins load first, so a third-party package may override
a built-in component name. The registry records, for every config group, which component
names exist, their factory and schema, and which package offered them; the groups are the
hook points of :data:`or1.core.hook_points.HOOK_POINTS`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

import pluggy

from or1.core import config_packages, hook_points, hookspecs
from or1.core.errors import ConfigError, PluginError, first_line

log = logging.getLogger("or1.plugins")

BUILTIN_PACKAGE = "or1"


@dataclass(frozen=True)
class PluginInfo:
    """A registered plugin: its entry-point name, distribution, version and module."""

    name: str
    package: str
    version: str
    module: str = ""


@dataclass(frozen=True)
class Component:
    group: str
    name: str
    factory: Callable[..., Any]
    schema: type
    plugin: PluginInfo


@dataclass
class Registry:
    components: dict[str, dict[str, Component]] = field(
        default_factory=lambda: {hp.group: {} for hp in hook_points.HOOK_POINTS}
    )
    plugins: list[PluginInfo] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Plugins that failed to load or register, one message each (reported, not fatal)."""

    def get(self, group: str, name: str) -> Component:
        """The component ``name`` registered for hook point ``group``; a ConfigError naming
        the registered ones when there is none."""
        found = self.components[group].get(name)
        if found is None:
            known = ", ".join(sorted(self.components[group])) or "none"
            raise ConfigError(f"unknown {group} component '{name}' (registered: {known})")
        return found

    def build(self, group: str, node: Any, ctx: Any) -> Any:
        """The component that config section ``node`` of hook point ``group`` selects
        (``node.name``), made by its factory from ``node`` and ``ctx`` (what the hook point's
        factory takes: a :class:`~or1.core.interfaces.BuildContext`, a
        :class:`~or1.core.interfaces.DataPassContext`, or the cache folder of a data or model
        source). Every component the core makes is made here."""
        return self.get(group, node.name).factory(node, ctx)

    def build_partial(
        self, group: str, name: str, overrides: Mapping[str, Any] | None, ctx: Any
    ) -> Any:
        """:meth:`build` for a section that is not in a composed config: component ``name``
        of ``group`` from its schema's defaults updated with ``overrides`` (keys may be
        dotted, ``routes.math.workers``; values may be nested mappings, merged), typed by
        the schema. An unknown key or a wrong type is a ConfigError naming the component."""
        from omegaconf import OmegaConf

        comp = self.get(group, name)
        node = OmegaConf.structured(comp.schema)
        try:
            for key, value in (overrides or {}).items():
                OmegaConf.update(node, key, value, merge=True)
        except Exception as exc:  # an unknown key / a wrong type, from OmegaConf
            raise ConfigError(f"{group} '{name}': {first_line(exc)}") from None
        return comp.factory(node, ctx)

    def add(
        self, group: str, name: str, factory: Callable[..., Any], schema: type, plugin: PluginInfo
    ) -> None:
        if group not in self.components:
            known = ", ".join(self.components)
            raise PluginError(
                f"plugin '{plugin.name}' ({plugin.package}) registered {group} '{name}': there is "
                f"no hook point '{group}' (hook points: {known})"
            )
        base = hook_points.hook_point(group).schema
        if not (isinstance(schema, type) and issubclass(schema, base)):
            raise PluginError(
                f"plugin '{plugin.name}' ({plugin.package}) registered {group} '{name}' with a "
                f"schema that is not a subclass of {base.__name__}"
            )
        old = self.components[group].get(name)
        if old is not None:
            if old.plugin.package != BUILTIN_PACKAGE or plugin.package == BUILTIN_PACKAGE:
                raise PluginError(
                    f"{group} component '{name}' is claimed by two packages: "
                    f"{old.plugin.package} (plugin '{old.plugin.name}') and "
                    f"{plugin.package} (plugin '{plugin.name}')"
                )
            log.info("%s '%s' from %s overrides the built-in one", group, name, plugin.package)
        self.components[group][name] = Component(group, name, factory, schema, plugin)


def _load_entry_point_plugins(
    pm: pluggy.PluginManager, infos: dict[int, PluginInfo], problems: list[str]
) -> None:
    eps = list(entry_points(group=hookspecs.PROJECT))
    eps.sort(key=lambda ep: (ep.dist is None or ep.dist.name != BUILTIN_PACKAGE, ep.name))
    for ep in eps:
        package = ep.dist.name if ep.dist is not None else "?"
        version = ep.dist.version if ep.dist is not None else "?"
        if pm.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:  # a broken third-party package must not take the others down
            problems.append(f"plugin '{ep.name}' from package {package} failed to load: {exc}")
            continue
        infos[id(plugin)] = PluginInfo(ep.name, package, version, ep.value)


class Or1PluginManager(pluggy.PluginManager):
    """A pluggy manager that remembers which package each plugin came from."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.infos: dict[int, PluginInfo] = {}
        self.problems: list[str] = []

    def load_entry_points(self) -> None:
        _load_entry_point_plugins(self, self.infos, self.problems)

    def info(self, plugin: object) -> PluginInfo:
        name = self.get_name(plugin) or repr(plugin)
        return self.infos.get(id(plugin), PluginInfo(name, name, "?"))

    def unknown_hooks(self) -> list[str]:
        """One problem per hook implementation whose name or1 has no hook for (such as the
        per-group ``or1_register_rollout`` of older or1 releases): pluggy would otherwise
        keep it silently and the plugin would register nothing."""
        known = {name for name in dir(hookspecs) if name.startswith(f"{hookspecs.PROJECT}_")}
        out = []
        for plugin in self.get_plugins():
            for attr in dir(plugin):
                fn = getattr(plugin, attr, None)
                marked = getattr(fn, f"{hookspecs.PROJECT}_impl", None) is not None
                if marked and attr not in known:
                    info = self.info(plugin)
                    out.append(
                        f"plugin '{info.name}' from package {info.package} implements {attr}, "
                        f"a hook or1 does not have (hooks: {', '.join(sorted(known))}); "
                        "register components from or1_register(register) (docs/plugins.md)"
                    )
        return out

    def build_registry(self) -> Registry:
        """Call every ``or1_register`` implementation, one plugin at a time in registration
        (load) order, built-ins first, and collect what they register."""
        registry = Registry(problems=[*self.problems, *config_packages.problems()])
        seen: dict[int, PluginInfo] = {}
        # get_hookimpls() lists implementations in registration (load) order: built-ins first.
        for impl in self.hook.or1_register.get_hookimpls():
            info = self.info(impl.plugin)
            seen[id(impl.plugin)] = info

            def register(
                group: str,
                name: str,
                factory: Callable[..., Any],
                schema: type,
                _i: PluginInfo = info,
            ) -> None:
                registry.add(group, name, factory, schema, _i)

            try:
                impl.function(register=register)
            except PluginError:
                raise
            except Exception as exc:
                registry.problems.append(
                    f"plugin '{info.name}' from package {info.package} failed in or1_register: {exc}"
                )
        registry.problems += self.unknown_hooks()
        registry.plugins = sorted(
            seen.values(), key=lambda p: (p.package != BUILTIN_PACKAGE, p.name)
        )
        for problem in registry.problems:
            log.warning(problem)
        return registry


_PM: Or1PluginManager | None = None
_REGISTRY: Registry | None = None


def get_plugin_manager() -> Or1PluginManager:
    """The process-wide plugin manager (entry points loaded on first use)."""
    global _PM
    if _PM is None:
        _PM = Or1PluginManager()
        _PM.load_entry_points()
    return _PM


def get_registry() -> Registry:
    """The process-wide component registry, built on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = get_plugin_manager().build_registry()
    return _REGISTRY


def reset() -> None:
    """Forget the plugin manager and registry (tests that install plugin packages use this)."""
    global _PM, _REGISTRY
    _PM = None
    _REGISTRY = None
    config_packages.reset()
