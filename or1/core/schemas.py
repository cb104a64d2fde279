"""Registering every component's schema in Hydra's ConfigStore, and checking overrides early.

Group ``G`` option ``N`` is ``conf/G/N.yaml`` when or1 ships one (its defaults list names
``N_schema``), else the registered dataclass itself, so a third-party component is selectable
by name with no YAML at all. A plugin package may ship its own YAML files too (see
:mod:`or1.core.config_packages`).
"""

from __future__ import annotations

from importlib import resources

from hydra.core.config_store import ConfigStore

from or1.core import hook_points
from or1.core.config_packages import install_search_path, plugin_ships_yaml
from or1.core.registry import Registry

CONFIG_MODULE = "or1_conf"
CONFIG_NAME = "train"


def shipped_yaml(group: str, name: str) -> bool:
    """True when or1's ``conf/`` or a plugin's config package has ``<group>/<name>.yaml``."""
    if resources.files(CONFIG_MODULE).joinpath(group, f"{name}.yaml").is_file():
        return True
    return plugin_ships_yaml(group, name)


def store_schemas(registry: Registry) -> None:
    """Store every component's schema in the ConfigStore and put the plugins' config packages
    on Hydra's search path (:mod:`or1.core.config_packages`); call before composing the config."""
    install_search_path()
    cs = ConfigStore.instance()
    cs.store(name="or1_schema", node=hook_points.run_config_schema())
    for group, components in registry.components.items():
        many = hook_points.hook_point(group).many  # all selected options active at once
        for name, comp in components.items():
            package = f"{group}.{name}" if many else None
            cs.store(group=group, name=f"{name}_schema", node=comp.schema, package=package)
            if not shipped_yaml(group, name):
                cs.store(group=group, name=name, node=comp.schema, package=package)
