"""What vLLM can serve, decided from a model's config.json alone (no torch, no vLLM import),
so ``or1-train`` can refuse a model in its first second (the ``or1.model_checks`` entry point)
as well as in :meth:`VLLMEngine.check_model` before the engine starts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from or1.core.errors import ConfigError
from or1.launch.model_support import architecture_name, head_dim

CPU_HEAD_SIZES = (32, 64, 80, 96, 112, 128, 160, 192, 224, 256, 512)
"""Head dimensions vLLM's CPU attention backend serves (``CPUAttentionBackend.
get_supported_head_sizes()`` in vllm/v1/attention/backends/cpu_attn.py; a test checks the
installed vLLM against it). Any other fails deep in engine start-up, so it is checked first."""

GPU_HEAD_SIZE_NOTE = (
    "FlashAttention takes multiples of 8 up to 256, Triton attention 32 and above, and vLLM "
    "falls back to FlexAttention for the rest"
)
"""On a GPU vLLM picks among several attention backends (vllm/platforms/cuda.py) and one of
them, FlexAttention, lists no head-size limit, so no head dimension is refused there."""


def check_model_config(hf_config: Any, model_path: Path, on_gpu: bool) -> None:
    """Device-aware: on CPU the head dimension must be one of :data:`CPU_HEAD_SIZES`; on a GPU
    every head dimension has a backend (:data:`GPU_HEAD_SIZE_NOTE`). The architecture itself
    is vLLM's to judge (its own implementations, else its Transformers backend)."""
    if on_gpu:
        return
    size = head_dim(hf_config)
    if size not in CPU_HEAD_SIZES:
        raise ConfigError(
            f"model.path={model_path}: {architecture_name(hf_config)} has head dimension "
            f"{size}, which vLLM's CPU attention does not support (it takes "
            f"{', '.join(map(str, CPU_HEAD_SIZES))}); use rollout=transformers for it"
        )
