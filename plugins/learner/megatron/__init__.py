"""The Megatron-core learner (tensor parallel + data parallel, ``learner=megatron``)."""

from __future__ import annotations

from typing import Any

from or1.core.hookspecs import hookimpl


@hookimpl
def or1_register(register: Any) -> None:
    from or1_plugins.learner.megatron.learner import MegatronLearner, MegatronLearnerConfig

    register("learner", "megatron", MegatronLearner, MegatronLearnerConfig)
