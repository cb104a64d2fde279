"""The docs site: the generated hook contracts page is fresh, and the nav tolerates pages that
come and go (mkdocs_hooks.py). ``make docs`` (part of ``make test``) builds the site strictly."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from or1.commands.hook_docs import markdown, render

ROOT = Path(__file__).resolve().parents[1]


def test_hook_contracts_page_is_generated_from_the_code():
    actual = (ROOT / "docs" / "hooks.md").read_text()
    assert actual == render(), "docs/hooks.md is stale: run `make docs-reference`"


def test_hook_contracts_page_covers_every_hook_and_interface():
    import inspect

    from or1.core import hookspecs, interfaces

    page = render()
    for name, _ in inspect.getmembers(hookspecs, inspect.isfunction):
        if name.startswith("or1_"):
            assert f"\n### {name}\n" in page, name
    from or1.core.hook_points import HOOK_POINTS

    for hp in HOOK_POINTS:
        assert f"\n### Hook point `{hp.group}`\n" in page, hp.group
    for cls in (
        interfaces.RolloutEngine,
        interfaces.Learner,
        interfaces.RewardVerifier,
        interfaces.OnlineFilter,
    ):
        assert f"\n### {cls.__name__}" in page
        for method in cls.__abstractmethods__:
            assert f"#### `{cls.__name__}.{method}(" in page, method


def test_docstring_markup_becomes_markdown():
    doc = """Returns an :class:`or1.core.types.Score` for ``row``; see :func:`~or1.x.f`.

        Example::

            register("a", f, S)
        """
    assert (
        markdown(doc)
        == 'Returns an `or1.core.types.Score` for `row`; see `or1.x.f`.\n\nExample:\n\n    register("a", f, S)'
    )


def load_hooks():
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "mkdocs_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_nav_drops_missing_pages_and_adds_unlisted_ones(tmp_path):
    for page in ("index.md", "a.md", "b.md", "sub/c.md", "extra.md"):
        (tmp_path / page).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / page).write_text("# x\n")
    nav = [
        {"Home": "index.md"},
        {"Guides": [{"A": "a.md"}, {"Gone": "gone.md"}, "b.md"]},
        {"Soon": [{"Not yet": "missing.md"}]},
        {"Site": "https://example.org"},
        {"C": "sub/c.md"},
    ]
    config = load_hooks().on_config({"docs_dir": str(tmp_path), "nav": nav})
    assert config["nav"] == [
        {"Home": "index.md"},
        {"Guides": [{"A": "a.md"}, "b.md"]},
        {"Site": "https://example.org"},
        {"C": "sub/c.md"},
        {"More": ["extra.md"]},
    ]
