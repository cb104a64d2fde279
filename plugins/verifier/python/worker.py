"""The ``python`` verifier's worker: loads the user's reward file once and calls its function.

Run by path by :class:`or1.core.worker_pool.WorkerPool` (``python -P worker.py FD_IN FD_OUT PPID
MEM_MB PDEATHSIG FILE FUNCTION``), so it imports only the standard library,
:mod:`or1.core.pool_worker` and whatever the user's file imports: never torch or the trainer.
Importing it (for :func:`as_score`) is as cheap.

Requests are ``{"response": str, "row": dict, "t": soft_timeout_s}``; replies are ``[score,
status, reason]`` (see :func:`as_score` for how a return value becomes one).
"""

from __future__ import annotations

import importlib.util
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from or1.core.pool_worker import SoftTimeout, StartError, WorkerArgs, one_line, serve, soft_deadline

STATUSES = ("correct", "wrong", "no_answer", "timeout", "error")
"""The statuses a reward function may give in a dict (``{"score": 0, "status": "no_answer"}``)."""
MODULE_NAME = "or1_user_reward"
"""The name the reward file is imported under (``sys.modules``)."""
_REASON_CHARS = 200
_EXPECTED = "expected a number in [0, 1], a bool, or a dict with 'score'"


def load_function(path: str, name: str) -> Callable[..., Any]:
    """Import the file at ``path`` (its folder first on ``sys.path``, so it may import the
    modules beside it) and return its ``name``; a :class:`StartError` naming the file says
    why not."""
    file = Path(path)
    spec = importlib.util.spec_from_file_location(MODULE_NAME, file)
    if spec is None or spec.loader is None:
        raise StartError(f"{file.name} cannot be imported as a Python file")
    sys.path.insert(0, str(file.parent))
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE_NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as e:  # SyntaxError, ImportError, SystemExit, anything it raises
        raise StartError(f"importing {file.name} failed: {one_line(e)}") from None
    fn = getattr(module, name, None)
    if fn is None:
        raise StartError(f"{file.name} has no function '{name}'")
    if not callable(fn):
        raise StartError(f"{file.name}:{name} is not a function ({type(fn).__name__})")
    return fn


def _number(value: Any) -> float | None:
    """A bool, an int or a float (numpy scalars included) as a float; None for anything else."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            value = value.item()  # numpy scalar / 0-d array
        except Exception:
            return None
    if isinstance(value, bool | int | float):
        return float(value)
    return None


def as_score(value: Any, label: str) -> tuple[float, str, str]:
    """A reward function's return value as ``(score, status, reason)``.

    * a bool: ``True`` is ``(1.0, "correct")``, ``False`` is ``(0.0, "wrong")``;
    * a number in [0, 1] (int, float, numpy scalar): that score, status ``correct`` for 1.0 and
      ``wrong`` below;
    * a dict with ``score`` (a bool or a number as above) and optionally ``status`` (one of
      :data:`STATUSES`) and ``reason`` (a string); other keys are ignored;
    * anything else, a NaN or a number outside [0, 1]: ``(0.0, "error", why)``, naming
      ``label`` (``file.py:function``).
    """
    status: Any = None
    reason: Any = ""
    raw = value
    if isinstance(value, dict):
        if "score" not in value:
            keys = ", ".join(repr(k) for k in list(value)[:5])
            return 0.0, "error", f"{label} returned a dict without 'score' (keys: {keys})"
        raw, status, reason = value["score"], value.get("status"), value.get("reason", "")
        if status is not None and status not in STATUSES:
            return 0.0, "error", f"{label} returned status {status!r} (not one of {STATUSES})"
    score = _number(raw)
    if score is None:
        return 0.0, "error", f"{label} returned {type(raw).__name__} ({_EXPECTED})"
    if not math.isfinite(score) or not 0.0 <= score <= 1.0:
        return 0.0, "error", f"{label} returned {score!r}, outside [0, 1]"
    if status is None:
        status = "correct" if score == 1.0 else "wrong"
    reason = "" if reason is None else str(reason)
    if len(reason) > _REASON_CHARS:
        reason = reason[: _REASON_CHARS - 3] + "..."
    return score, str(status), reason


class RewardWorker:
    """The loaded function and how one request is answered."""

    def __init__(self, path: str, name: str) -> None:
        self.path, self.name = path, name
        self.label = f"{Path(path).name}:{name}"
        self.fn: Callable[..., Any] | None = None

    def load(self) -> None:
        self.fn = load_function(self.path, self.name)

    def handle(self, request: dict[str, Any]) -> list[Any]:
        """``[score, status, reason]`` for one request; never raises."""
        limit = float(request.get("t") or 0.0)
        assert self.fn is not None
        try:
            with soft_deadline(limit):
                value = self.fn(request["response"], request["row"])
        except SoftTimeout:
            return [0.0, "timeout", f"{self.label} took longer than {limit:g}s"]
        except MemoryError:
            return [0.0, "error", f"{self.label} ran out of memory"]
        except RecursionError:
            return [0.0, "error", f"{self.label}: recursion too deep"]
        except (Exception, SystemExit) as e:
            return [0.0, "error", f"{self.label} raised {one_line(e)}"]
        try:
            return list(as_score(value, self.label))
        except Exception as e:  # a dict or a number whose methods raise
            return [0.0, "error", f"{self.label} returned an unusable value: {one_line(e)}"]


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - runs in a worker
    args = WorkerArgs.parse(argv)
    path, name = args.extra[:2]
    worker = RewardWorker(path, name)
    serve(worker.handle, args, load=worker.load)


if __name__ == "__main__":  # pragma: no cover
    main()
