"""Docs that are generated must match the code."""

from __future__ import annotations

from pathlib import Path

from or1.plugins import get_registry
from or1.reference import render

ROOT = Path(__file__).resolve().parents[1]


def test_config_reference_is_generated_from_the_schemas():
    expected = render(get_registry())
    actual = (ROOT / "docs" / "config-reference.md").read_text()
    assert actual == expected, "docs/config-reference.md is stale: run `make docs-reference`"


def test_readme_gives_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make train" in readme and "make test" in readme
