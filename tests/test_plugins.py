"""Hook contracts: every hook point has a built-in implementation; entry-point discovery."""

from __future__ import annotations

import inspect
import sys
import textwrap
from pathlib import Path

import pytest

from or1 import hookspecs, plugins
from or1.config import HOOK_GROUPS
from or1.errors import PluginError


def hook_names() -> list[str]:
    return [n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("or1_")]


def test_every_hookspec_has_a_contract_docstring():
    for name in hook_names():
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert len(doc) > 60, f"{name} needs a docstring that states its contract"


def test_every_registration_hook_is_filled_by_a_builtin():
    registry = plugins.get_registry()
    assert set(plugins.REGISTRATION_HOOKS) == set(HOOK_GROUPS)
    assert set(plugins.REGISTRATION_HOOKS.values()) == {
        n for n in hook_names() if n.startswith("or1_register_")
    }
    for group in plugins.REGISTRATION_HOOKS:
        builtins = [c for c in registry.components[group].values() if c.plugin.package == "or1"]
        assert builtins, f"no built-in component for hook point '{group}'"
        for comp in builtins:
            assert issubclass(comp.schema, HOOK_GROUPS[group])
            assert comp.schema().name == comp.name  # the schema's default selects itself


def test_builtin_components_implement_their_interfaces(tiny_model, tmp_path):
    from omegaconf import OmegaConf

    from or1 import interfaces
    from or1.interfaces import BuildContext

    expected = {
        "rollout": interfaces.RolloutEngine,
        "learner": interfaces.Learner,
        "verifier": interfaces.RewardVerifier,
        "filter": interfaces.OnlineFilter,
        "advantage": interfaces.AdvantageEstimator,
        "loss": interfaces.PolicyLoss,
        "entropy": interfaces.EntropyController,
        "stages": interfaces.StageScheduler,
        "logger": interfaces.Logger,
        "data_stage": interfaces.DataStage,
    }
    ctx = BuildContext(
        run_dir=tmp_path, model_path=tiny_model, cache_dir=tmp_path, seed=0, config=None
    )
    registry = plugins.get_registry()
    for group, interface in expected.items():
        for comp in registry.components[group].values():
            obj = comp.factory(OmegaConf.structured(comp.schema), ctx)
            assert isinstance(obj, interface), (
                f"{group} '{comp.name}' is not a {interface.__name__}"
            )
            getattr(obj, "close", lambda: None)()


def make_dist(site: Path, dist: str, module: str, body: str) -> None:
    """An installed distribution on ``site`` with one ``or1`` entry point."""
    (site / f"{module}.py").write_text(textwrap.dedent(body))
    info = site / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[or1]\n{module} = {module}\n")


@pytest.fixture
def site(tmp_path):
    sys.path.insert(0, str(tmp_path))
    plugins.reset()
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for mod in [m for m in sys.modules if m.startswith("or1test_")]:
        del sys.modules[mod]
    plugins.reset()


OVERRIDE_GRPO = """
    from dataclasses import dataclass
    import torch
    from or1.config import AdvantageConfig
    from or1.hookspecs import hookimpl
    from or1.interfaces import AdvantageEstimator

    @dataclass
    class HalfConfig(AdvantageConfig):
        name: str = "grpo"

    class Half(AdvantageEstimator):
        def __init__(self, cfg, ctx=None):
            pass
        def compute(self, rewards, truncated, truncation):
            return torch.full_like(rewards, 0.5)

    @hookimpl
    def or1_register_advantage_estimators(register):
        register("grpo", Half, HalfConfig)
"""


def test_entry_point_plugin_is_discovered_and_overrides_a_default(site):
    make_dist(site, "or1-test-override", "or1test_override", OVERRIDE_GRPO)
    registry = plugins.get_registry()
    comp = registry.get("advantage", "grpo")
    assert comp.plugin.package == "or1-test-override"
    assert comp.factory.__module__ == "or1test_override"
    assert "or1-test-override" in {p.package for p in registry.plugins}
    assert registry.get("loss", "or1").plugin.package == "or1"  # the other built-ins stay


def test_two_packages_claiming_one_name_is_an_error_naming_both(site):
    make_dist(site, "or1-test-a", "or1test_a", OVERRIDE_GRPO)
    make_dist(site, "or1-test-b", "or1test_b", OVERRIDE_GRPO)
    with pytest.raises(PluginError, match=r"or1-test-a.*or1-test-b|or1-test-b.*or1-test-a"):
        plugins.get_registry()


def test_a_broken_plugin_is_reported_and_the_builtins_survive(site):
    make_dist(site, "or1-test-broken", "or1test_broken", "raise RuntimeError('boom at import')\n")
    make_dist(
        site,
        "or1-test-raising",
        "or1test_raising",
        """
        from or1.hookspecs import hookimpl
        @hookimpl
        def or1_register_verifiers(register):
            raise ValueError("bad registration")
        """,
    )
    registry = plugins.get_registry()
    problems = " | ".join(registry.problems)
    assert "or1-test-broken" in problems and "boom at import" in problems
    assert "or1-test-raising" in problems and "bad registration" in problems
    assert registry.get("verifier", "math").plugin.package == "or1"
