"""The embedded default task (``data=tiny_arith``) and model (``model=tiny``).

``or1-train`` with no arguments trains the tiny Qwen2 built by :mod:`.model` on the synthetic
arithmetic problems of :mod:`.task`. Importing this package is cheap: torch / transformers are
imported only when something is built.
"""

from __future__ import annotations

from or1.hookspecs import Register, hookimpl

from .model import TinyModelConfig, prepare_tiny_model
from .task import TinyArithDataConfig, prepare_tiny_arith

__all__ = ["TinyArithDataConfig", "TinyModelConfig", "prepare_tiny_arith", "prepare_tiny_model"]


@hookimpl
def or1_register_data_sources(register: Register) -> None:
    """Offer the ``tiny_arith`` data source."""
    register("tiny_arith", prepare_tiny_arith, TinyArithDataConfig)


@hookimpl
def or1_register_model_sources(register: Register) -> None:
    """Offer the ``tiny`` model source."""
    register("tiny", prepare_tiny_model, TinyModelConfig)
