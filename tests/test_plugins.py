"""Hook contracts: every hook point has a built-in implementation; entry-point discovery."""

from __future__ import annotations

import inspect
import sys
import textwrap
from pathlib import Path

import pytest

from or1.core import hookspecs
from or1.core import registry as plugins
from or1.core.errors import PluginError
from or1.core.hook_points import HOOK_POINTS


def hook_names() -> list[str]:
    return [n for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("or1_")]


def test_every_hookspec_has_a_contract_docstring():
    for name in hook_names():
        doc = inspect.getdoc(getattr(hookspecs, name)) or ""
        assert len(doc) > 60, f"{name} needs a docstring that states its contract"


def test_every_hook_point_is_filled_by_a_builtin():
    registry = plugins.get_registry()
    assert list(registry.components) == [hp.group for hp in HOOK_POINTS]
    assert [n for n in hook_names() if n.startswith("or1_register")] == ["or1_register"]
    for hp in HOOK_POINTS:
        group = hp.group
        builtins = [c for c in registry.components[group].values() if c.plugin.package == "or1"]
        assert builtins, f"no built-in component for hook point '{group}'"
        for comp in builtins:
            assert issubclass(comp.schema, hp.schema)
            assert comp.schema().name == comp.name  # the schema's default selects itself


def test_builtin_components_implement_their_interfaces(tiny_model, tmp_path):

    from or1.core import interfaces
    from or1.core.interfaces import BuildContext

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
        "data_pass": interfaces.DataPass,
    }
    assert expected == {hp.group: hp.interface for hp in HOOK_POINTS if hp.interface}
    ctx = BuildContext(
        run_dir=tmp_path, model_path=tiny_model, cache_dir=tmp_path, seed=0, config=None
    )
    registry = plugins.get_registry()
    for group, interface in expected.items():
        for comp in registry.components[group].values():
            obj = registry.build_partial(group, comp.name, None, ctx)
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
    from or1.core.config import AdvantageConfig
    from or1.core.hookspecs import hookimpl
    from or1.core.interfaces import AdvantageEstimator

    @dataclass
    class HalfConfig(AdvantageConfig):
        name: str = "grpo"

    class Half(AdvantageEstimator):
        def __init__(self, cfg, ctx=None):
            pass
        def compute(self, rewards, truncated, truncation):
            return torch.full_like(rewards, 0.5)

    @hookimpl
    def or1_register(register):
        register("advantage", "grpo", Half, HalfConfig)
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
        from or1.core.hookspecs import hookimpl
        @hookimpl
        def or1_register(register):
            raise ValueError("bad registration")
        """,
    )
    registry = plugins.get_registry()
    problems = " | ".join(registry.problems)
    assert "or1-test-broken" in problems and "boom at import" in problems
    assert "or1-test-raising" in problems and "bad registration" in problems
    assert registry.get("verifier", "math").plugin.package == "or1"


def test_a_plugin_written_for_the_old_per_group_hooks_is_reported(site):
    make_dist(
        site,
        "or1-test-old",
        "or1test_old",
        """
        from or1.core.hookspecs import hookimpl
        @hookimpl
        def or1_register_verifier(register):
            raise AssertionError("never called: or1 has no such hook")
        """,
    )
    registry = plugins.get_registry()
    (problem,) = [p for p in registry.problems if "or1-test-old" in p]
    assert "implements or1_register_verifier, a hook or1 does not have" in problem
    assert "or1_register(register)" in problem


def test_a_hook_point_added_to_the_table_is_registered_composed_built_and_documented(
    monkeypatch, tiny_model, tmp_path
):
    """Adding a hook point is one table row, its interface and its base schema: the registry
    accepts it, Hydra composes and types it, a run builds and checkpoints it, and the
    generated docs list it, with no other edit."""
    from abc import ABC, abstractmethod
    from dataclasses import dataclass

    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import ConfigCompositionException

    from or1.commands import config_docs as reference
    from or1.commands import hook_docs as hook_reference
    from or1.core import hook_points
    from or1.core.config import ComponentConfig
    from or1.core.hook_points import HookPoint
    from or1.core.hookspecs import hookimpl
    from or1.core.interfaces import BuildContext, Component, Stateful
    from or1.core.schemas import CONFIG_MODULE, CONFIG_NAME, store_schemas
    from or1.launch.prepare import build
    from or1.launch.resume import stateful_attributes

    @dataclass
    class ShaperConfig(ComponentConfig):  # the base schema
        pass

    class RewardShaper(Component, Stateful, ABC):  # the interface
        """Reshapes a step's rewards before the advantages."""

        @abstractmethod
        def shape(self, rewards: list[float]) -> list[float]:
            """The rewards to train on."""

    row = HookPoint("shaper", ShaperConfig, RewardShaper, "Built once per rank.", stateful=True)
    monkeypatch.setattr(hook_points, "HOOK_POINTS", (*hook_points.HOOK_POINTS, row))

    @dataclass
    class ScaleConfig(ShaperConfig):
        name: str = "scale"
        factor: float = 0.5

    class Scale(RewardShaper):
        def __init__(self, cfg, ctx):
            self.factor = cfg.factor

        def shape(self, rewards):
            return [r * self.factor for r in rewards]

    class Plugin:  # a plugin that fills the new hook point, as any other plugin would
        @hookimpl
        def or1_register(self, register):
            register("shaper", "scale", Scale, ScaleConfig)

    pm = plugins.Or1PluginManager()
    pm.load_entry_points()
    pm.register(Plugin(), name="test_shaper")
    registry = pm.build_registry()
    assert registry.get("shaper", "scale").factory is Scale

    store_schemas(registry)
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
            cfg = compose(
                config_name=CONFIG_NAME,
                overrides=["learner=torch", "+shaper=scale", "shaper.factor=2"],
            )
            with pytest.raises(ConfigCompositionException, match="shaper.factor=x"):  # typed
                compose(config_name=CONFIG_NAME, overrides=["+shaper=scale", "shaper.factor=x"])
    finally:
        GlobalHydra.instance().clear()
    assert cfg.shaper.name == "scale" and cfg.shaper.factor == 2.0

    components = build(cfg, registry, BuildContext.of_run(cfg, tmp_path, tiny_model))
    assert components.shaper.shape([1.0, 0.25]) == [2.0, 0.5]
    assert "shaper" in stateful_attributes()  # its state goes into every checkpoint
    for c in (components.verifier, components.learner, components.rollout):
        c.close()

    hooks_page = hook_reference.render()
    assert "### Hook point `shaper`" in hooks_page and "`RewardShaper`" in hooks_page
    assert "### RewardShaper" not in hooks_page  # (the interface lives in the test, not or1)
    assert "### `shaper=scale`" in reference.render(registry)


def test_the_trainer_calls_score_many_once_per_group_from_a_helper_thread():
    """What ``RewardVerifier.score_many``'s docstring promises its implementers: in training
    it is called once per group (that group's responses, all with its row) from the
    ``or1-reward`` helper thread, never from the trainer's thread when no engine restarts."""
    import threading
    from types import SimpleNamespace

    from or1.core.interfaces import OnlineFilter, RewardVerifier, RolloutEngine
    from or1.core.types import Completion, Prompt, SamplingParams, Score
    from or1.launch.distributed import EngineLayout
    from or1.rl.steps import Timer
    from or1.rl.trainer import collect_groups

    calls = []

    class Recording(RewardVerifier):
        def score(self, response, row):
            return Score(1.0 if response == row["answer"] else 0.0, "correct")

        def score_many(self, responses, rows):
            calls.append((threading.current_thread().name, list(responses), list(rows)))
            return super().score_many(responses, rows)

    class Echo(RolloutEngine):
        def generate(self, prompts, params):
            return [
                [Completion(p, [1], [0.0], "stop", str(p[0] + j)) for j in range(params.n)]
                for p in prompts
            ]

        def update_weights(self, named_tensors):
            pass

    class KeepAll(OnlineFilter):
        def keep(self, groups):
            return [True] * len(groups)

    prompts = [Prompt(f"u{i}", {"answer": str(i)}, [i]) for i in range(3)]
    run = SimpleNamespace(
        components=SimpleNamespace(rollout=Echo(), verifier=Recording(), filter=KeepAll()),
        cfg=SimpleNamespace(
            trainer=SimpleNamespace(prompts_per_step=3, seed=0, group_size=2, max_refill_rounds=0)
        ),
        sampler=SimpleNamespace(next=lambda n: prompts[:n]),
        layout=EngineLayout(),
    )
    params = SamplingParams(n=2, temperature=1.0, top_p=1.0, top_k=-1, max_tokens=4)
    groups, _ = collect_groups(run, 1, params, Timer())
    assert len(calls) == len(prompts)  # once per group
    for (thread, responses, rows), prompt in zip(calls, prompts, strict=True):
        assert thread.startswith("or1-reward") and thread != threading.current_thread().name
        assert rows == [prompt.row] * 2 and len(responses) == 2
    assert [g.rewards for g in groups] == [[1.0, 0.0]] * 3
