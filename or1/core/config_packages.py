"""Hydra config files shipped by plugin packages: discovery and the config search path.

A package that ships Hydra config files (``<group>/<name>.yaml``, laid out like or1's own
``conf/``) names the Python package that holds them under the ``or1.conf`` entry-point group::

    [project.entry-points."or1.conf"]
    my_package = "my_package.conf"        # my_package/conf/verifier/my_preset.yaml ...

or1 then appends ``pkg://my_package.conf`` to Hydra's config search path (a Hydra
``SearchPathPlugin`` that or1 registers itself, so no ``hydra_plugins`` namespace package is
needed), and ``or1-train verifier=my_preset`` finds the file. or1's own ``conf/`` comes first:
a plugin's file never shadows a built-in file of the same name. Looking the packages up imports
only the named config packages and their parents (keep them cheap to import). A config package that cannot be found is reported like a plugin that fails to load, naming
its distribution, and the others stay on the search path.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from importlib import resources
from importlib.metadata import entry_points

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

ENTRY_POINT_GROUP = "or1.conf"
"""The entry-point group whose values are Python packages holding Hydra config groups."""


@dataclass(frozen=True)
class ConfigPackage:
    """A plugin distribution's config package: ``module`` holds ``<group>/<name>.yaml``."""

    name: str
    """The entry point's name."""
    module: str
    package: str
    """The distribution that declared it."""
    version: str

    @property
    def search_path(self) -> str:
        return f"pkg://{self.module}"

    def presets(self) -> dict[str, list[str]]:
        """Config group -> the names of the YAML files this package ships in that group."""
        root = resources.files(self.module)
        out: dict[str, list[str]] = {}
        for group in sorted(root.iterdir(), key=lambda p: p.name):
            if not group.is_dir() or group.name.startswith(("_", ".")):
                continue
            names = sorted(
                f.name[: -len(".yaml")] for f in group.iterdir() if f.name.endswith(".yaml")
            )
            if names:
                out[group.name] = names
        return out

    def has(self, group: str, name: str) -> bool:
        return resources.files(self.module).joinpath(group, f"{name}.yaml").is_file()


@cache
def discover() -> tuple[tuple[ConfigPackage, ...], tuple[str, ...]]:
    """Every declared config package that can be found (in distribution-name order), and one
    problem message per declared package that cannot (naming its distribution)."""
    found: list[ConfigPackage] = []
    problems: list[str] = []
    eps = sorted(
        entry_points(group=ENTRY_POINT_GROUP),
        key=lambda ep: (ep.dist.name if ep.dist else "", ep.name),
    )
    for ep in eps:
        package = ep.dist.name if ep.dist is not None else "?"
        version = ep.dist.version if ep.dist is not None else "?"
        try:
            spec = importlib.util.find_spec(ep.value)
        except (ImportError, ValueError) as exc:
            spec, why = None, str(exc)
        else:
            why = "no such package"
        if spec is None or spec.submodule_search_locations is None:
            problems.append(
                f"config package '{ep.value}' (entry point '{ep.name}' in group {ENTRY_POINT_GROUP}) "
                f"from package {package} cannot be used: {why}"
            )
            continue
        found.append(ConfigPackage(ep.name, ep.value, package, version))
    return tuple(found), tuple(problems)


def config_packages() -> list[ConfigPackage]:
    """The plugin config packages on Hydra's search path, in search order."""
    return list(discover()[0])


def problems() -> list[str]:
    return list(discover()[1])


def plugin_ships_yaml(group: str, name: str) -> bool:
    """True when some plugin config package ships ``<group>/<name>.yaml``."""
    return any(p.has(group, name) for p in config_packages())


class Or1PluginSearchPath(SearchPathPlugin):
    """Appends every plugin config package to Hydra's config search path (after or1's own
    ``conf/``, before the ConfigStore)."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        for pkg in config_packages():
            search_path.append(provider=f"or1-plugin:{pkg.package}", path=pkg.search_path)


def install_search_path() -> None:
    """Register :class:`Or1PluginSearchPath` with Hydra (idempotent). Must run before the
    config is composed (``or1.core.schemas.store_schemas`` calls it)."""
    from hydra.core.plugins import Plugins

    Plugins.instance().register(Or1PluginSearchPath)


def reset() -> None:
    """Forget the discovered packages (tests that install packages use this)."""
    discover.cache_clear()
