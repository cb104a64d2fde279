"""The reference rollout engine: Hugging Face ``generate`` in the trainer's process."""

from __future__ import annotations

from typing import Any

from or1.hookspecs import hookimpl


@hookimpl
def or1_register(register: Any) -> None:
    from or1_plugins.transformers_rollout.engine import (
        TransformersEngine,
        TransformersRolloutConfig,
    )

    register("rollout", "transformers", TransformersEngine, TransformersRolloutConfig)
