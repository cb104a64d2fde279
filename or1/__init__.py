"""or1: reinforcement learning with verifiable rewards for reasoning language models.

The Python API (``or1.train``, ``or1.evaluate``) lives in :mod:`or1.api`; importing ``or1``
itself stays cheap (the engines load when a run starts).
"""

from __future__ import annotations

from typing import Any

__all__ = ["evaluate", "train"]


def train(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """:func:`or1.api.train`: train as ``or1-train`` would and return the run's summary."""
    from or1.api import train as _train

    return _train(*args, **kwargs)


def evaluate(*args: Any, **kwargs: Any) -> dict[str, dict[str, float]]:
    """:func:`or1.api.evaluate`: evaluate as ``or1-eval`` would and return the report."""
    from or1.api import evaluate as _evaluate

    return _evaluate(*args, **kwargs)
