"""The example plugin's own tests: its components' behaviour (numbers worked out by hand) and,
once the package is installed, that or1 discovers it and Hydra finds its config files."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from or1_example_plugin import CloseNumberVerifier, RewardBandFilter
from or1_example_plugin.verifier import truth_value


def row(truth):
    return {"prompt": [], "reward_model": {"ground_truth": truth}}


def verifier(rel_tolerance=0.1, after_think=True):
    return CloseNumberVerifier(
        SimpleNamespace(rel_tolerance=rel_tolerance, after_think=after_think)
    )


def test_close_number_partial_credit():
    v = verifier(rel_tolerance=0.1)  # truth 50: the credit falls to 0 at a distance of 5
    assert v.score("\\boxed{50}", row("50")).value == 1.0
    assert v.score("\\boxed{50}", row("50")).status == "correct"
    s = v.score("it is 48", row("50"))
    assert s.value == pytest.approx(0.6) and s.status == "wrong"  # 1 - 2/5
    assert v.score("52.5", row(50)).value == pytest.approx(0.5)  # 1 - 2.5/5
    assert v.score("60", row("50")).value == 0.0  # 10 away: past the tolerance
    # truth 0: the scale is max(|0|, 1) * 0.5 = 0.5, so 0.25 away earns 0.5
    assert verifier(rel_tolerance=0.5).score("-0.25", row("0")).value == pytest.approx(0.5)


def test_close_number_reads_the_last_number_after_think():
    text = "<think>48 + 2 = 50, or 48?</think> so 50"
    assert verifier().score(text, row("50")).value == 1.0
    assert verifier().score("<think>50</think> no idea", row("50")).status == "no_answer"
    # reading the whole text, the last number is 48 (2 away from 50)
    assert verifier(after_think=False).score(
        "<think>7 50</think> 48", row("50")
    ).value == pytest.approx(0.6)


def test_close_number_ground_truth_forms():
    assert truth_value("12") == 12.0 and truth_value(12) == 12.0
    assert truth_value('["3", "three"]') == 3.0 and truth_value([4]) == 4.0
    assert truth_value("x^2") is None and truth_value(None) is None
    assert verifier().score("3", row("x^2")).status == "error"


def group(*rewards):
    return SimpleNamespace(rewards=list(rewards))


def test_reward_band_keeps_groups_by_mean_reward():
    f = RewardBandFilter(SimpleNamespace(min_mean=0.1, max_mean=0.9, refill=False))
    #                 mean 0      mean 1      mean 0.5    mean 0.1 (edge)  mean 0.925
    groups = [group(0, 0), group(1, 1), group(0, 1), group(0.2, 0, 0, 0.2), group(1, 0.85, 0.85, 1)]
    assert f.keep(groups) == [False, False, True, True, False]


def test_reward_band_rejects_an_empty_band():
    from or1.core.errors import ConfigError

    with pytest.raises(ConfigError, match="min_mean=0.5 is above filter.max_mean=0.2"):
        RewardBandFilter(SimpleNamespace(min_mean=0.5, max_mean=0.2, refill=False))


def test_installed_package_is_discovered_and_its_presets_compose():
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from or1.core.registry import get_registry
    from or1.core.schemas import CONFIG_MODULE, CONFIG_NAME, store_schemas

    registry = get_registry()
    assert registry.get("verifier", "close_number").plugin.package == "or1-example-plugin"
    assert registry.get("filter", "reward_band").plugin.package == "or1-example-plugin"
    store_schemas(registry)
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
            cfg = compose(
                CONFIG_NAME, overrides=["verifier=close_number_lenient", "filter=reward_band"]
            )
    finally:
        GlobalHydra.instance().clear()
    # values from the preset files, not from the schemas' defaults
    assert cfg.verifier.name == "close_number" and cfg.verifier.rel_tolerance == 1.0
    assert cfg.filter.min_mean == 0.1 and cfg.filter.max_mean == 0.9
