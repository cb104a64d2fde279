"""The Megatron-core learner (tensor parallel + data parallel, ``learner=megatron``)."""

from __future__ import annotations

from typing import Any

from or1.hookspecs import hookimpl


@hookimpl
def or1_register_learners(register: Any) -> None:
    from or1_plugins.megatron import memory
    from or1_plugins.megatron.learner import MegatronLearner, MegatronLearnerConfig

    if "memory_estimate" not in vars(MegatronLearner):  # until learner.py defines it itself
        MegatronLearner.memory_estimate = classmethod(
            lambda cls, cfg, query: memory.estimate(cfg, query)
        )
    register("megatron", MegatronLearner, MegatronLearnerConfig)
