"""What Megatron-core needs to run on a machine without a GPU (gloo, fp32, local spec).

Applied by the learner in its own process(es), and only when ``torch.cuda.is_available()`` is
false; idempotent. Megatron allocates on ``torch.cuda.current_device()`` in many places
(all-gather outputs, RoPE frequencies, buffers), keeps its model-parallel RNG states on CUDA
generators, and builds its default causal mask on ``cuda``; the learner also always passes an
explicit causal mask.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

_applied = False


def apply_cpu_shims() -> bool:
    """Patch the three CUDA assumptions above when no GPU is present; True if patched now."""
    global _applied
    if _applied or torch.cuda.is_available():
        return False
    from megatron.core.fusions import fused_softmax
    from megatron.core.tensor_parallel import random as mrandom
    from megatron.core.transformer import utils as tutils

    torch.cuda.current_device = lambda: torch.device("cpu")

    def _get_state(
        device: object = "cuda", clone: bool = False, graph_safe: bool = False
    ) -> torch.Tensor:
        return torch.get_rng_state()

    def _set_state(state: torch.Tensor, device: object = -1, graph_safe: bool = False) -> None:
        torch.set_rng_state(state)

    def _add(self: object, name: str, seed: int) -> None:  # CudaRNGStatesTracker.add, on CPU
        if seed in self.seeds_ or name in self.states_:
            raise RuntimeError(f"model-parallel RNG state {name} / seed {seed} already exists")
        self.seeds_.add(seed)
        saved = torch.get_rng_state()
        torch.manual_seed(seed)
        self.states_[name] = torch.get_rng_state()
        torch.set_rng_state(saved)

    mrandom._get_cuda_rng_state = _get_state
    mrandom._set_cuda_rng_state = _set_state
    mrandom.CudaRNGStatesTracker.add = _add

    def causal_mask(sq: int) -> torch.Tensor:
        return torch.triu(torch.ones(sq, sq, dtype=torch.bool), diagonal=1)

    tutils.get_default_causal_mask = causal_mask
    fused_softmax.get_default_causal_mask = causal_mask
    _applied = True
    return True


@contextlib.contextmanager
def cuda_names() -> Iterator[None]:
    """While Megatron's optimiser is built or steps on a machine without a GPU: tensor
    factories given ``device='cuda'`` make CPU tensors, ``Tensor.cuda()`` is the tensor
    itself, and ``Tensor.type()`` names CPU tensors ``torch.cuda.*`` (the mixed-precision and
    distributed optimisers sort parameters, and its gradient clipping asserts, by those names).
    Scoped: everything is restored on exit, so code outside these calls (vLLM in the same
    process) never sees it. With a GPU: nothing is patched."""
    if torch.cuda.is_available():
        yield
        return
    saved = {name: getattr(torch, name) for name in _FACTORIES}
    saved_type, saved_cuda = torch.Tensor.type, torch.Tensor.cuda

    def on_cpu(fn: Callable[..., Any]) -> Callable[..., Any]:
        def factory(*args: Any, **kwargs: Any) -> Any:
            if "cuda" in str(kwargs.get("device", "")):
                kwargs["device"] = "cpu"
            return fn(*args, **kwargs)

        return factory

    def type_(self: torch.Tensor, dtype: Any = None, non_blocking: bool = False, **kw: Any) -> Any:
        if dtype is None and not kw:
            name = saved_type(self)
            return name.replace("torch.", "torch.cuda.", 1) if ".cuda." not in name else name
        return saved_type(self, dtype, non_blocking, **kw)

    try:
        for name, fn in saved.items():
            setattr(torch, name, on_cpu(fn))
        torch.Tensor.type = type_
        torch.Tensor.cuda = lambda self, *a, **k: self
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch, name, fn)
        torch.Tensor.type, torch.Tensor.cuda = saved_type, saved_cuda


_FACTORIES = ("tensor", "zeros", "ones", "empty", "full", "zeros_like", "empty_like", "ones_like")
