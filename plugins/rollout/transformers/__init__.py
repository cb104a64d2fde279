"""The reference rollout engine: Hugging Face ``generate`` in the trainer's process."""

from __future__ import annotations

from typing import Any

from or1.core.hookspecs import hookimpl


@hookimpl
def or1_register(register: Any) -> None:
    from or1_plugins.rollout.transformers.engine import (
        TransformersEngine,
        TransformersRolloutConfig,
    )

    register("rollout", "transformers", TransformersEngine, TransformersRolloutConfig)
