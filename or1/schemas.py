"""Registering every component's schema in Hydra's ConfigStore, and checking overrides early.

Group ``G`` option ``N`` is ``conf/G/N.yaml`` when or1 ships one (its defaults list names
``N_schema``), else the registered dataclass itself, so a third-party component is selectable
by name with no YAML at all.
"""

from __future__ import annotations

from importlib import resources

from hydra.core.config_store import ConfigStore

from or1.config import Or1Config
from or1.plugins import Registry

CONFIG_MODULE = "or1_conf"
CONFIG_NAME = "train"


def shipped_yaml(group: str, name: str) -> bool:
    return resources.files(CONFIG_MODULE).joinpath(group, f"{name}.yaml").is_file()


def store_schemas(registry: Registry) -> None:
    cs = ConfigStore.instance()
    cs.store(name="or1_schema", node=Or1Config)
    for group, components in registry.components.items():
        for name, comp in components.items():
            package = f"logger.{name}" if group == "logger" else None
            cs.store(group=group, name=f"{name}_schema", node=comp.schema, package=package)
            if not shipped_yaml(group, name):
                cs.store(group=group, name=name, node=comp.schema, package=package)
