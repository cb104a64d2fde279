"""The config reference, generated from the registered dataclass schemas (never hand-kept).

``python -m or1.commands.config_docs > docs/config-reference.md``; a test fails when the file is stale.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from pathlib import Path

import yaml

from or1.core.config import (
    COMMON_KEYS,
    ClusterConfig,
    DataPrepConfig,
    EvalConfig,
    OfflineFilterConfig,
    PlanConfig,
    TrainerConfig,
)
from or1.core.field_docs import field_docs
from or1.core.hook_points import hook_point
from or1.core.registry import Registry, get_registry

CORE_SECTIONS: tuple[tuple[str, type, str], ...] = (
    ("trainer", TrainerConfig, "trainer"),
    ("eval", EvalConfig, "eval"),
    ("offline", OfflineFilterConfig, "offline (`or1-filter`)"),
    ("prep", DataPrepConfig, "prep (`or1-data`)"),
    ("cluster", ClusterConfig, "cluster (`or1-plan`)"),
    ("plan", PlanConfig, "plan (`or1-plan`)"),
)
"""The fixed sections: (key prefix, schema, heading)."""

CONF = Path(__file__).resolve().parents[2] / "conf"


def _type_name(tp: object) -> str:
    if isinstance(tp, str) or typing.get_origin(tp) is not None:
        text = str(tp)
    else:
        text = getattr(tp, "__name__", str(tp))
    return text.replace("typing.", "").replace("or1_plugins.", "").replace("|", "\\|")


def _default(field: dataclasses.Field) -> str:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = field.default_factory()  # type: ignore[misc]
    else:
        return "(required)"
    if dataclasses.is_dataclass(value):
        return "(see below)"
    if isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
        return f"{len(value)} item(s), see below"
    return f"`{value!r}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("``", "`")


def nested_schemas(schema: type) -> list[tuple[type, str]]:
    """``(dataclass, field name)`` of the dataclass-typed items inside ``schema``'s fields."""
    hints = typing.get_type_hints(schema)
    out = []
    for f in dataclasses.fields(schema):
        hint = hints.get(f.name)
        for tp in (hint, *typing.get_args(hint)):
            if isinstance(tp, type) and dataclasses.is_dataclass(tp):
                out.append((tp, f.name))
    return out


def all_schemas(registry: Registry) -> Iterator[tuple[str, type]]:
    """``(where, schema)`` for every config schema: the core sections, every registered
    component's and the dataclasses nested in them."""

    def walk(where: str, schema: type) -> Iterator[tuple[str, type]]:
        yield where, schema
        for tp, name in nested_schemas(schema):
            yield from walk(f"{where}.{name}", tp)

    for prefix, schema, _ in CORE_SECTIONS:
        yield from walk(prefix, schema)
    for group, components in registry.components.items():
        for name, comp in components.items():
            yield from walk(f"{group}={name}", comp.schema)


def schema_table(schema: type, prefix: str) -> list[str]:
    hints = typing.get_type_hints(schema)
    docs = field_docs(schema)
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    nested = []
    for f in dataclasses.fields(schema):
        lines.append(
            f"| `{prefix}.{f.name}` | {_type_name(hints.get(f.name, f.type))} | {_default(f)} "
            f"| {_cell(docs.get(f.name, ''))} |"
        )
        inner = typing.get_args(hints.get(f.name))
        for tp in inner:
            if dataclasses.is_dataclass(tp):
                nested.append((tp, f"{prefix}.{f.name}[i]"))
    out = lines
    for tp, p in nested:
        out += ["", f"Items of `{p.rsplit('[', 1)[0]}` ({tp.__name__}):", "", *schema_table(tp, p)]
    return out


def _flatten(node: object, prefix: str = "") -> Iterator[tuple[str, object]]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, node


def option_values(group: str, option: object) -> list[str]:
    """The scalar keys that the option file ``conf/<group>/<option>.yaml`` sets (a preset
    that selects ``entropy: or1`` uses its values), one table row each."""
    path = CONF / group / f"{option}.yaml"
    if not isinstance(option, str) or not path.is_file():
        return []
    spec = yaml.safe_load(path.read_text()) or {}
    body = {k: v for k, v in spec.items() if k not in ("defaults", "name")}
    return [
        f"| `{group}.{key}` (conf/{group}/{option}.yaml) | `{value!r}` |"
        for key, value in _flatten(body)
        if not isinstance(value, list | dict)
    ]


def preset_values() -> list[str]:
    """One table per ``experiment=`` preset: the groups it selects and the keys it sets,
    read from ``conf/experiment/*.yaml`` (what a run with that preset actually uses, where it
    differs from the schema defaults below)."""
    groups = [
        item
        for item in yaml.safe_load((CONF / "train.yaml").read_text())["defaults"]
        if isinstance(item, dict) and "/" not in next(iter(item))
    ]
    out = [
        "",
        "`or1-train` without overrides selects these components, then the preset:",
        "",
        ", ".join(f"`{k}={v}`" for item in groups for k, v in item.items()) + ".",
    ]
    for path in sorted((CONF / "experiment").glob("*.yaml")):
        spec = yaml.safe_load(path.read_text()) or {}
        header = next(
            (ln.lstrip("# ").strip() for ln in path.read_text().splitlines()[1:3] if ln),
            "",
        )
        out += ["", f"### `experiment={path.stem}`", ""]
        if header:
            out += [header, ""]
        out += ["| key | value |", "|---|---|"]
        for item in spec.get("defaults", []) or []:
            if isinstance(item, dict):
                for key, value in item.items():
                    group = key.replace("override /", "")
                    out.append(f"| `{group}` (group) | `{value}` |")
                    out += option_values(group, value)
        for key, value in _flatten({k: v for k, v in spec.items() if k != "defaults"}):
            out.append(f"| `{key}` | `{value!r}` |")
    return out


def render(registry: Registry) -> str:
    out = [
        "# Config reference",
        "",
        "Generated by `python -m or1.commands.config_docs` from the dataclass schemas of the core and of every",
        "registered component; do not edit by hand. Select a component with `GROUP=NAME`",
        "(`verifier=math`), set a key with `GROUP.KEY=VALUE`. A key that is not listed, or a value",
        "of the wrong type, is an error before anything is built. The defaults below are the",
        "schemas'; an `experiment=` preset sets its own values on top (see \"What the presets",
        'set"), and `or1-train ... --cfg job` prints every value a run will use.',
        "",
        "## The keys you will change",
        "",
        "| key | description |",
        "|---|---|",
        *(f"| `{key}` | {_cell(text)} |" for key, text in COMMON_KEYS),
        "",
        "The stage keys are per stage: `stages.stages.N.KEY` for stage N (0-based) of the schedule.",
        "",
        "## What the presets set",
        *preset_values(),
    ]
    for prefix, schema, heading in CORE_SECTIONS:
        out += ["", f"## {heading}", "", *schema_table(schema, prefix)]
    for group, components in registry.components.items():
        out += ["", f"## {group}"]
        for name in sorted(components):
            comp = components[name]
            prefix = f"{group}.{name}" if hook_point(group).many else group
            doc = (comp.factory.__doc__ or "").strip().split("\n\n")[0]
            out += ["", f"### `{group}={name}` ({comp.plugin.package}: `{comp.plugin.name}`)", ""]
            if doc:
                out += [" ".join(line.strip() for line in doc.splitlines()), ""]
            out += schema_table(comp.schema, prefix)
    return "\n".join(out) + "\n"


def main() -> None:
    print(render(get_registry()), end="")


if __name__ == "__main__":
    main()
