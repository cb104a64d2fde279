"""Every experiment preset composes against the typed schemas, and the GPU presets hold what
the recipe and the memory arithmetic ask of them."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

PRESETS = ["cpu_demo", "cpu_long_cot", "recipe", "or1_math_7b", "or1_7b", "or1_32b"]


def compose(preset: str):
    return compose_with([f"experiment={preset}"])


def compose_with(overrides: list[str]):
    """The ``or1-train`` config with ``overrides``, checked for missing or bad values."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from or1.core.registry import get_registry
    from or1.core.schemas import CONFIG_MODULE, CONFIG_NAME, store_schemas

    store_schemas(get_registry())
    with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
        cfg = hydra_compose(config_name=CONFIG_NAME, overrides=overrides)
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)  # no missing or bad value
    return cfg


@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_composes(preset):
    cfg = compose(preset)
    assert cfg.trainer.prompts_per_step >= 1


@pytest.mark.parametrize("controller", ["none", "constant", "pi"])
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_takes_another_entropy_controller(preset, controller):
    # the presets' OR1 settings live in files of the entropy group (conf/entropy/or1.yaml, the
    # published ones; cpu_long_cot.yaml, scaled to that preset's model), so choosing another
    # controller replaces them instead of merging 'target' into a schema that has none
    base = compose(preset).entropy
    cfg = compose_with([f"experiment={preset}", f"entropy={controller}"])
    assert cfg.entropy.name == controller
    settings = (base.name, base.target, base.delta, base.coef_max)
    if preset == "cpu_long_cot":
        assert settings == ("adaptive", 0.1, 1e-3, 0.05)
    elif preset != "cpu_demo":
        assert settings == ("adaptive", 0.2, 1e-4, 0.005)


@pytest.mark.parametrize("preset", ["or1_math_7b", "or1_7b", "or1_32b"])
def test_gpu_presets_recompute_activations_and_validate_at_the_scripts_temperature(preset):
    cfg = compose(preset)
    assert cfg.learner.name == "megatron" and cfg.learner.recompute == "full"
    assert cfg.eval.temperature == 0.6
    assert cfg.rollout.temperature == 1.0  # training samples at 1.0 (RECIPE.md)
