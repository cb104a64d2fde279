"""``or1-plan``: will a run config fit on a cluster's GPUs? A memory plan, by calculation.

    or1-plan experiment=or1_7b cluster.nodes=1 cluster.gpus_per_node=8 cluster.gpu_memory_gib=80
    or1-plan experiment=or1_32b cluster.nodes=8 learner.precision=bf16 plan.reserve_gib=6
    or1-plan model.path=/models/qwen learner=megatron rollout=vllm stages=or1_8k_16k_32k

Takes the ``or1-train`` config (any override) plus ``cluster.*`` and ``plan.*``
(:class:`or1.core.config.ClusterConfig`, :class:`or1.core.config.PlanConfig`), builds nothing, and
prints per stage and phase the bytes each component holds on one GPU, the smallest layout that
fits, and a last line ``fits`` (exit 0) or ``does not fit: <what to change>`` (exit 1). See
docs/memory-plan.md.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from or1.cli.common import fail, guarded, quiet_transformers

PLAN_SECTIONS = ("cluster.", "plan.")


def split_args(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(train overrides, plan overrides)``: ``cluster.*`` / ``plan.*`` keys are the plan's."""
    train, plan = [], []
    for a in argv:
        (plan if a.startswith(PLAN_SECTIONS) else train).append(a)
    return train, plan


def plan_settings(args: Sequence[str]):  # noqa: ANN201 - a DictConfig
    """The ``cluster`` / ``plan`` sections from their overrides, typed and range-checked."""
    from omegaconf import OmegaConf

    from or1.cli.common import describe_config_error
    from or1.core.config import PlanSections
    from or1.core.errors import ConfigError

    try:
        cfg = OmegaConf.merge(
            OmegaConf.structured(PlanSections), OmegaConf.from_dotlist(list(args))
        )
    except Exception as exc:
        raise ConfigError(f"config: {describe_config_error(exc)}") from None
    c, p = cfg.cluster, cfg.plan
    for key, value in (("cluster.nodes", c.nodes), ("cluster.gpus_per_node", c.gpus_per_node)):
        if value < 1:
            raise ConfigError(f"{key}={value} must be >= 1")
    if not c.gpu_memory_gib > 0:
        raise ConfigError(f"cluster.gpu_memory_gib={c.gpu_memory_gib} must be > 0")
    if p.min_kv_sequences < 1:
        raise ConfigError(f"plan.min_kv_sequences={p.min_kv_sequences} must be >= 1")
    if not 0 <= p.reserve_gib < c.gpu_memory_gib:
        raise ConfigError(
            f"plan.reserve_gib={p.reserve_gib} must be >= 0 and below cluster.gpu_memory_gib="
            f"{c.gpu_memory_gib}"
        )
    return cfg


def compose_train(args: Sequence[str]):  # noqa: ANN201 - (DictConfig, experiment name)
    """The ``or1-train`` config of ``args`` (Hydra's compose API: nothing is written) and the
    experiment preset chosen."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from or1.cli.common import describe_config_error
    from or1.core.errors import ConfigError
    from or1.core.registry import get_registry
    from or1.core.schemas import CONFIG_MODULE, CONFIG_NAME, store_schemas

    store_schemas(get_registry())
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
            cfg = compose(config_name=CONFIG_NAME, overrides=list(args), return_hydra_config=True)
    except Exception as exc:
        raise ConfigError(f"config: {describe_config_error(exc)}") from None
    finally:
        GlobalHydra.instance().clear()
    experiment = cfg.hydra.runtime.choices.get("experiment")
    from omegaconf import open_dict

    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, experiment


def run(argv: Sequence[str]) -> int:
    from or1.core.registry import get_registry
    from or1.launch.memory_plan import GIB, planner_for, render, search

    train_args, plan_args = split_args(argv)
    settings = plan_settings(plan_args)
    quiet_transformers()
    cfg, experiment = compose_train(train_args)
    c, p = settings.cluster, settings.plan
    world = c.nodes * c.gpus_per_node
    planner = planner_for(
        cfg,
        get_registry(),
        gpu_memory=int(c.gpu_memory_gib * GIB),
        reserve=int(p.reserve_gib * GIB),
        model=p.model,
        experiment=experiment,
        min_kv_sequences=p.min_kv_sequences,
    )
    shape = planner.shape
    header = [
        f"or1-plan: {f'experiment={experiment}, ' if experiment else ''}model {shape.name} "
        f"({shape.num_params() / 1e9:.2f}e9 parameters), {world} GPU(s) ({c.nodes} node(s) x "
        f"{c.gpus_per_node}) of {c.gpu_memory_gib:g} GiB, {p.reserve_gib:g} GiB reserved each; "
        "GiB per GPU"
    ]
    result = search(planner, world, c.gpus_per_node)
    print("\n".join(render(planner, result, header)))
    return 0 if result.fits else 1


@guarded
def main() -> None:
    argv = sys.argv[1:]
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return
    if any(a.startswith("-") for a in argv):
        fail(
            f"or1-plan takes overrides only (key=value), not {next(a for a in argv if a.startswith('-'))}"
        )
    sys.exit(run(argv))


if __name__ == "__main__":
    main()
