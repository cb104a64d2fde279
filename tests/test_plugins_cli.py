"""``or1-plugins`` and plugin packages that misbehave, through the installed commands: distributions
are put on the commands' ``PYTHONPATH`` (an installed package is exactly that to
importlib.metadata), so the project's venv is never modified."""

from __future__ import annotations

import json
import os

from or1.commands.list_plugins import hook_names
from or1.core.hook_points import HOOK_POINTS
from or1.core.registry import get_registry
from tests.conftest import run_cli
from tests.test_cli import assert_one_line_error
from tests.test_plugins import OVERRIDE_GRPO, make_dist


def with_path(site) -> dict[str, str]:
    return {
        "PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH", "")]))
    }


def test_or1_plugins_lists_every_builtin_hook_point(tmp_path):
    proc = run_cli("or1-plugins", [], tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert len(HOOK_POINTS) == 12
    assert hook_names() == ["or1_register"]  # one registration hook, no event hooks
    for hook in hook_names():
        assert f"\n  {hook}: " in out, hook
    for hp in HOOK_POINTS:
        assert f"  {hp.group} ({hp.interface.__name__ if hp.interface else 'a function'}): " in out
    # every built-in plugin with its package and version, e.g. the math verifier
    assert "\nor1 0.1.0\n" in out
    assert (
        "  plugin builtin_math_verifier (or1_plugins.verifier.math)\n    hooks: or1_register\n"
        in out
    )
    registry = get_registry()  # this process: the built-ins only
    for hp in HOOK_POINTS:
        listed = ", ".join(
            f"{n} ({c.plugin.package})" for n, c in sorted(registry.components[hp.group].items())
        )
        interface = hp.interface.__name__ if hp.interface else "a function"
        assert f"  {hp.group} ({interface}): {listed}\n" in out


def test_a_failing_plugin_is_reported_with_its_package_and_the_builtins_stay(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    make_dist(site, "or1-test-broken", "or1test_broken", "raise RuntimeError('boom at import')\n")
    make_dist(
        site,
        "or1-test-raising",
        "or1test_raising",
        """
        from or1.core.hookspecs import hookimpl
        @hookimpl
        def or1_register(register):
            raise ValueError("bad registration")
        """,
    )
    proc = run_cli("or1-plugins", ["--json"], tmp_path, env=with_path(site))
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["problems"] == [
        "plugin 'or1test_broken' from package or1-test-broken failed to load: boom at import",
        "plugin 'or1test_raising' from package or1-test-raising failed in or1_register: bad registration",
    ]
    points = {h["group"]: h for h in info["hook_points"]}
    registry = get_registry()  # this process: the built-ins only
    for hp in HOOK_POINTS:  # every built-in component is still there
        group = hp.group
        assert points[group]["components"] == {n: "or1" for n in sorted(registry.components[group])}
    text = run_cli("or1-plugins", [], tmp_path, env=with_path(site)).stdout
    assert "problems\n  plugin 'or1test_broken' from package or1-test-broken failed to load" in text


def test_two_packages_claiming_one_name_stop_the_commands_naming_both(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    make_dist(site, "or1-test-a", "or1test_a", OVERRIDE_GRPO)
    make_dist(site, "or1-test-b", "or1test_b", OVERRIDE_GRPO)
    expected = "advantage component 'grpo' is claimed by two packages: or1-test-a (plugin 'or1test_a') and or1-test-b"
    for command in ("or1-plugins", "or1-train"):
        proc = run_cli(command, [], tmp_path, env=with_path(site))
        assert_one_line_error(proc, expected)
    assert not (tmp_path / "outputs").exists()


def test_a_missing_config_package_is_reported_with_its_package(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    info = site / "or1_test_conf-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: or1-test-conf\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[or1.conf]\nmine = or1test_missing.conf\n")
    proc = run_cli("or1-plugins", ["--json"], tmp_path, env=with_path(site))
    assert proc.returncode == 0, proc.stderr
    (problem,) = json.loads(proc.stdout)["problems"]
    assert problem.startswith(
        "config package 'or1test_missing.conf' (entry point 'mine' in group or1.conf) "
        "from package or1-test-conf cannot be used"
    )
