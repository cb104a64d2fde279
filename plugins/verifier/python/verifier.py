"""The ``python`` verifier: a reward function in one file, run in killable workers.

``verifier=python verifier.path=my_reward.py:score`` scores every response with
``score(response, row)`` from ``my_reward.py`` (see ``docs/verifiers.md``, "One-file rewards",
and :func:`~or1_plugins.verifier.python.worker.as_score` for what it may return). The trainer
never imports the file: :meth:`PythonVerifier.check_config` reads it with :mod:`ast` (it
exists, parses, and defines the function with a signature that takes ``(response, row)``),
and the function runs in a :class:`~or1.core.worker_pool.WorkerPool` of persistent worker
processes that load the file once each, with the math verifier's bounds: a hard deadline per
response (``timeout_s``; past it the worker is killed, the response scores 0 with status
``timeout`` and a new worker takes its place), an address-space cap, death with the trainer.
A function that raises scores 0 with status ``error``; the run goes on.
"""

from __future__ import annotations

import ast
import logging
import os
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from or1.core.config import VerifierConfig
from or1.core.errors import ConfigError
from or1.core.interfaces import RewardVerifier
from or1.core.types import Score
from or1.core.worker_pool import WorkerFailure, WorkerPool

log = logging.getLogger("or1.verifier.python")

WORKER_PY = str(Path(__file__).with_name("worker.py"))
DEFAULT_FUNCTION = "score"


@dataclass
class PythonVerifierConfig(VerifierConfig):
    """The ``python`` verifier: a reward function ``fn(response, row)`` in a file of yours,
    run in killable worker processes (``docs/verifiers.md``, "One-file rewards")."""

    name: str = "python"
    path: str = ""
    """The reward function as ``file.py:function`` (``file.py`` alone: its function ``score``);
    a relative file is relative to the working directory."""
    timeout_s: float = 5.0
    """The hard per-response limit (seconds): past it the worker is killed and replaced, and
    the response scores 0 with status ``timeout``."""
    workers: int = 2
    """Worker processes, each with its own copy of the file (<= 0: min(2, CPU count))."""
    max_memory_mb: int = 4096
    """Each worker's address-space cap in MiB (0: none)."""


def _get(cfg: Any, key: str, default: Any) -> Any:
    if cfg is None:
        return default
    if isinstance(cfg, Mapping):
        value = cfg.get(key, default)
    else:
        value = getattr(cfg, key, default)
    return default if value is None else value


def parse_target(spec: str) -> tuple[Path, str]:
    """``(file, function)`` of ``file.py:function`` (``file.py`` alone: ``score``)."""
    file, sep, name = str(spec).strip().rpartition(":")
    if not sep:
        file, name = name, DEFAULT_FUNCTION
    if not file:
        raise ConfigError(f"verifier.path={spec}: no file before ':' (give file.py:function)")
    if not name.isidentifier():
        raise ConfigError(f"verifier.path={spec}: '{name}' is not a function name")
    return Path(file).expanduser(), name


def _bindings(body: list[ast.stmt]) -> list[tuple[str, ast.stmt]]:
    """The names a module body binds at top level (also inside top-level ``if``/``try``/
    ``with`` blocks), in order."""
    out: list[tuple[str, ast.stmt]] = []
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.append((node.name, node))
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for sub in ast.walk(target):
                    if isinstance(sub, ast.Name):
                        out.append((sub.id, node))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for alias in node.names:
                out.append(((alias.asname or alias.name).split(".")[0], node))
        elif isinstance(node, ast.If | ast.Try | ast.With):
            inner = list(node.body) + list(getattr(node, "orelse", []))
            inner += list(getattr(node, "finalbody", []))
            for handler in getattr(node, "handlers", []):
                inner += list(handler.body)
            out.extend(_bindings(inner))
    return out


def _takes_two_positional(fn: ast.FunctionDef) -> bool:
    """Whether ``fn(response, row)`` binds: at least two positional parameters (or ``*args``)
    and no more than two without a default, no required keyword-only parameter."""
    a = fn.args
    positional = len(a.posonlyargs) + len(a.args)
    required = positional - len(a.defaults)
    if fn.decorator_list:  # a decorator may change the signature: trust it
        return True
    if positional < 2 and a.vararg is None:
        return False
    return required <= 2 and all(d is not None for d in a.kw_defaults)


def check_reward_file(spec: str) -> tuple[Path, str]:
    """``(file, function)`` of ``verifier.path``, after checking, without importing it, that
    the file exists, parses, and binds the function at top level (a ``def`` taking
    ``(response, row)``, or any other top-level name: an import, an assignment). A
    ConfigError names the file and the function otherwise."""
    file, name = parse_target(spec)
    if not file.is_file():
        raise ConfigError(f"verifier.path={spec}: no such file {file}")
    try:
        source = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"verifier.path={spec}: cannot read {file}: {e}") from None
    try:
        tree = ast.parse(source, filename=str(file))
    except SyntaxError as e:
        raise ConfigError(f"verifier.path={spec}: {file}, line {e.lineno}: {e.msg}") from None
    bound = [node for n, node in _bindings(tree.body) if n == name]
    if not bound:
        defs = [n.name for n in tree.body if isinstance(n, ast.FunctionDef)]
        known = ", ".join(defs) if defs else "none"
        raise ConfigError(
            f"verifier.path={spec}: {file.name} defines no function '{name}' (functions: {known})"
        )
    node = bound[-1]  # the last binding wins, as at import
    if isinstance(node, ast.AsyncFunctionDef):
        raise ConfigError(
            f"verifier.path={spec}: {file.name}:{name} is async; a reward function is a plain "
            "def called as fn(response, row)"
        )
    if isinstance(node, ast.FunctionDef) and not _takes_two_positional(node):
        raise ConfigError(
            f"verifier.path={spec}: {file.name}:{name}({ast.unparse(node.args)}) cannot be "
            f"called as {name}(response, row)"
        )
    return file, name


def jsonable(value: Any) -> Any:
    """A row as plain JSON data: mappings and sequences recursively, numpy arrays and scalars
    as lists and numbers, bytes as text, anything else unknown as its ``str``."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "tolist"):  # numpy array / scalar
        return jsonable(value.tolist())
    return str(value)


class PythonVerifier(RewardVerifier):
    """Scores each response with the user's ``fn(response, row)`` (``verifier.path``), in
    killable worker processes started when the verifier is built."""

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        """``verifier.path`` is set and names a function of an existing file (read with
        :mod:`ast`, never imported here); the bounds are in range."""
        spec = str(_get(cfg, "path", "") or "")
        if not spec:
            raise ConfigError(
                "verifier.path is not set: give the reward function as "
                "verifier.path=my_reward.py:score"
            )
        timeout_s = float(_get(cfg, "timeout_s", 5.0))
        if not timeout_s > 0:
            raise ConfigError(f"verifier.timeout_s={timeout_s} must be > 0")
        mem = int(_get(cfg, "max_memory_mb", 4096))
        if mem < 0:
            raise ConfigError(f"verifier.max_memory_mb={mem} must be >= 0 (0: no cap)")
        check_reward_file(spec)

    def __init__(self, cfg: Any = None, ctx: Any = None) -> None:
        self.spec = str(_get(cfg, "path", "") or "")
        self.label = ""
        self._pool: WorkerPool | None = None
        self._warned = False
        if not self.spec:  # built from the bare schema (contract tests): scores say why
            return
        self.check_config(cfg)
        file, name = check_reward_file(self.spec)
        file = file.resolve()
        self.label = f"{file.name}:{name}"
        workers = int(_get(cfg, "workers", 2))
        if workers <= 0:
            workers = min(2, os.cpu_count() or 1)
        self._pool = WorkerPool(
            WORKER_PY,
            size=workers,
            timeout_s=float(_get(cfg, "timeout_s", 5.0)),
            max_memory_mb=int(_get(cfg, "max_memory_mb", 4096)),
            args=[str(file), name],
            name=self.label,
        )
        self._finalizer = weakref.finalize(self, self._pool.close)
        if not self._pool.start():  # the file is imported in the workers: its errors are here
            reason = self._pool.last_start_error or "the workers did not start"
            self._pool.close()
            raise ConfigError(f"verifier.path={self.spec}: {reason}")

    @property
    def pool(self) -> WorkerPool | None:
        """The worker pool (None when ``verifier.path`` is not set)."""
        return self._pool

    def score(self, response: str, row: dict[str, Any]) -> Score:
        return self.score_many([response], [row])[0]

    def score_many(self, responses: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[Score]:
        responses, rows = list(responses), list(rows)
        if len(responses) != len(rows):
            raise ValueError(f"{len(responses)} responses but {len(rows)} rows")
        if self._pool is None:
            return [Score(0.0, "error", "verifier.path is not set")] * len(responses)
        soft = self._pool.soft_timeout_s
        requests = [
            {"response": "" if r is None else str(r), "row": jsonable(row), "t": soft}
            for r, row in zip(responses, rows, strict=True)
        ]
        out = []
        for reply in self._pool.run(requests):
            if isinstance(reply, WorkerFailure):
                out.append(Score(0.0, reply.status, reply.reason))
                continue
            value, status, reason = reply
            out.append(Score(float(value), str(status), str(reason)))
        self._warn_once(out)
        return out

    def _warn_once(self, scores: list[Score]) -> None:
        """Log the first error of the user's function (later ones are in the statuses)."""
        if self._warned:
            return
        first = next((s for s in scores if s.status == "error"), None)
        if first is not None:
            self._warned = True
            log.warning("%s (later errors only show as status 'error')", first.reason)

    def warmup(self, timeout: float | None = None) -> bool:
        """Start any missing worker now; True once all are ready."""
        return self._pool.start(timeout) if self._pool is not None else False

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()

    def __enter__(self) -> PythonVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
