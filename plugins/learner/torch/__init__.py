"""The reference learner: a Hugging Face causal LM trained in plain PyTorch (one process)."""

from __future__ import annotations

from typing import Any

from or1.core.hookspecs import hookimpl


@hookimpl
def or1_register(register: Any) -> None:
    from or1_plugins.learner.torch.learner import TorchLearner, TorchLearnerConfig

    register("learner", "torch", TorchLearner, TorchLearnerConfig)
