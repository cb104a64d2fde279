"""The embedded CPU tasks and models: ``data=tiny_arith`` / ``model=tiny`` (the default demo)
and ``data=tiny_cot`` / ``model=tiny_cot`` (the long chain-of-thought workload).

``or1-train`` with no arguments trains the tiny Qwen2 built by :mod:`.model` on the synthetic
arithmetic problems of :mod:`.task`; ``experiment=cpu_long_cot`` trains the model of
:mod:`.cot_model` on the step-by-step additions of :mod:`.cot_task`. Both models are built by
:mod:`.build`. Importing this package is cheap: torch / transformers are imported only when
something is built.
"""

from __future__ import annotations

from or1.core.hookspecs import Register, hookimpl

from .cot_model import TinyCotModelConfig, prepare_tiny_cot_model
from .cot_task import TinyCotDataConfig, prepare_tiny_cot
from .model import TinyModelConfig, prepare_tiny_model
from .task import TinyArithDataConfig, prepare_tiny_arith

__all__ = [
    "TinyArithDataConfig",
    "TinyCotDataConfig",
    "TinyCotModelConfig",
    "TinyModelConfig",
    "prepare_tiny_arith",
    "prepare_tiny_cot",
    "prepare_tiny_cot_model",
    "prepare_tiny_model",
]


@hookimpl
def or1_register(register: Register) -> None:
    """Offer the ``tiny_arith`` and ``tiny_cot`` data sources and model sources."""
    register("data", "tiny_arith", prepare_tiny_arith, TinyArithDataConfig)
    register("data", "tiny_cot", prepare_tiny_cot, TinyCotDataConfig)
    register("model", "tiny", prepare_tiny_model, TinyModelConfig)
    register("model", "tiny_cot", prepare_tiny_cot_model, TinyCotModelConfig)
