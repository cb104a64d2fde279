"""Docs that are generated must match the code."""

from __future__ import annotations

from pathlib import Path

from or1.commands.config_docs import render
from or1.core.registry import get_registry

ROOT = Path(__file__).resolve().parents[1]


def test_config_reference_is_generated_from_the_schemas():
    expected = render(get_registry())
    actual = (ROOT / "docs" / "config-reference.md").read_text()
    assert actual == expected, "docs/config-reference.md is stale: run `make docs-reference`"


def test_readme_gives_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make train" in readme and "make test" in readme


def test_every_config_key_has_a_description():
    from or1.commands.config_docs import all_schemas
    from or1.core.field_docs import undocumented

    missing = [
        f"{where}.{name} ({schema.__module__}.{schema.__qualname__})"
        for where, schema in all_schemas(get_registry())
        for name in undocumented(schema)
    ]
    assert not missing, (
        "config keys without a description (add a docstring under the field):\n"
        + "\n".join(missing)
    )


def _field_doc(schema: type, parts: list[str]) -> str | None:
    import dataclasses
    import typing

    from or1.core.field_docs import field_docs

    head, rest = parts[0], [p for p in parts[1:] if not p.isdigit()]
    if not rest:
        return field_docs(schema).get(head)
    hint = typing.get_type_hints(schema).get(head)
    for tp in (hint, *typing.get_args(hint)):
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            return _field_doc(tp, rest)
    return None


def test_the_common_keys_are_described_as_their_schema_fields_are():
    from or1.commands.config_docs import CORE_SECTIONS
    from or1.core.config import COMMON_KEYS
    from or1.core.hook_points import hook_point

    core = {prefix: schema for prefix, schema, _ in CORE_SECTIONS}
    registry = get_registry()
    for key, text in COMMON_KEYS:
        section, *parts = key.split(".")
        if section in core:
            schemas = [core[section]]
        else:  # the base schema where it declares the key, else the group's components
            schemas = [hook_point(section).schema] + [
                c.schema for c in registry.components[section].values()
            ]
        docs = [d for d in (_field_doc(s, parts) for s in schemas) if d is not None]
        assert docs, f"{key}: no schema declares it"
        assert docs[0] == text, f"{key}: COMMON_KEYS says {text!r}, the schema {docs[0]!r}"


def test_train_help_needs_neither_hydra_nor_torch():
    import subprocess
    import sys

    code = (
        "import sys; from or1.cli.train import main; sys.argv = ['or1-train', '--help']; main(); "
        "assert not {'torch', 'hydra', 'or1.core.registry'} & set(sys.modules), sorted(sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    assert out.startswith("usage: or1-train")
    assert "stages.stages.0.max_response_length" in out and "or1_7b" in out
