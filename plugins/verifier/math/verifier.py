"""The math reward verifier: binary reward from math-verify, bounded by killable workers.

Design. math-verify (latex2sympy + sympy) can hang or eat memory on model text
(``9^{9^{9^9}}``), and its own ``signal.alarm`` timeout only works in a main thread and cannot
interrupt long C-level big-integer work. So verification runs in a small pool of persistent
worker processes (or1's :class:`~or1.core.worker_pool.WorkerPool`: plain ``subprocess`` children
running ``verify.py`` by path, so they never import the trainer's modules or torch, and need no
``spawn``/``fork`` of a threaded parent), talking over private pipes:

* a request is sent only to an idle worker; its *hard* deadline is ``timeout_s`` after it was
  sent. The caller waits on all busy workers at once (``multiprocessing.connection.wait``) and
  SIGKILLs a worker past its deadline, scores that item ``timeout`` and starts a replacement;
* inside the worker a *soft* ``ITIMER_REAL`` alarm (a bit shorter) raises out of pure-Python
  sympy loops, so most timeouts cost no restart;
* workers die with the trainer (``PR_SET_PDEATHSIG``, end of input on their pipe) and are killed
  by :meth:`MathVerifier.close`, a ``weakref.finalize`` and therefore also at exit; their address
  space is capped (``max_memory_mb``).

The trainer process does only cheap string work: cutting at ``</think>``, finding the final
box(es), and the fast paths (box equal to a gold answer after normalisation, or both plain
numbers / fractions whose verdict is certain without sympy: see ``verify.quick_verdict``).
Comparison options come from the config, overridden per row ``data_source``
(``verifier.sources``), and travel with each request.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from or1.core.config import VerifierConfig
from or1.core.interfaces import RewardVerifier
from or1.core.types import Score
from or1.core.worker_pool import WorkerFailure, WorkerPool

from .verify import (
    MathOptions,
    answer_region,
    final_answers,
    gold_answers,
    normalize,
    quick_verdict,
)

_VERIFY_PY = str(Path(__file__).with_name("verify.py"))


@dataclass
class MathSourceOptions:
    """Per-data-source overrides of the comparison options (``verifier.sources.<data_source>.
    <key>``); a key left ``None`` keeps the verifier's own value."""

    precision: int | None = None
    """Decimal places floats are rounded to (None: the verifier's ``precision``)."""
    numeric_precision: int | None = None
    """Significant digits of numeric evaluation (None: the verifier's)."""
    strict: bool | None = None
    """Variables matter (None: the verifier's ``strict``)."""
    allow_set_relation_comp: bool | None = None
    """A solved relation equals its solution set (None: the verifier's)."""
    extraction: list[str] | None = None
    """math-verify's extraction targets, in order (None: the verifier's)."""
    decimal_comma: bool | None = None
    """Read ``1,22`` as ``1.22`` where unambiguous (None: the verifier's)."""


@dataclass
class MathVerifierConfig(VerifierConfig):
    """The ``math`` verifier: worker pool bounds and math-verify's comparison options (see
    ``docs/verifiers.md``), with per-``data_source`` overrides in ``sources``."""

    name: str = "math"
    timeout_s: float = 5.0
    """The hard per-response limit (seconds)."""
    workers: int = 2
    """Worker processes (<= 0: min(2, CPU count))."""
    max_memory_mb: int = 4096
    """Each worker's address-space cap (0: none)."""
    precision: int = 6
    """Decimal places floats are rounded to before comparing (math-verify's ``float_rounding``)."""
    numeric_precision: int = 15
    """Significant digits of math-verify's numeric evaluation."""
    strict: bool = True
    """Variables matter (``y+1`` != ``x+1``); false: variables are matched by position."""
    allow_set_relation_comp: bool = True
    """A solved relation in one variable equals its solution set (``x<3`` = ``(-\\infty,3)``)."""
    extraction: list[str] = field(default_factory=lambda: ["latex", "expr"])
    """math-verify's extraction targets, in order: ``latex``, ``expr``, ``string`` (A-D)."""
    decimal_comma: bool = True
    """Read a whole-answer ``1,22`` as ``1.22`` where it cannot be a thousands separator."""
    sources: dict[str, MathSourceOptions] = field(default_factory=dict)
    """Option overrides per row ``data_source`` (``+verifier.sources.aime.precision=0``)."""


_OPTION_KEYS = tuple(f.name for f in fields(MathSourceOptions))


def _cfg_get(cfg: Any, key: str, default: Any) -> Any:
    if cfg is None:
        return default
    if isinstance(cfg, dict):
        return cfg.get(key, default)
    try:
        value = getattr(cfg, key)
    except Exception:
        return default
    return default if value is None else value


def _as_mapping(value: Any, what: str) -> dict[str, Any]:
    """A plain dict of a config node (dict, OmegaConf node or dataclass)."""
    if value is None:
        return {}
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in fields(value)}
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(value, DictConfig):
            value = OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency of or1
        pass
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} must be a mapping, got {value!r}")
    return dict(value)


def _merge_options(base: MathOptions, overrides: Mapping[str, Any], what: str) -> MathOptions:
    unknown = sorted(set(overrides) - set(_OPTION_KEYS))
    if unknown:
        raise ValueError(f"{what}: unknown key(s) {unknown} (known: {list(_OPTION_KEYS)})")
    d = base.to_dict()
    d.update({k: v for k, v in overrides.items() if v is not None})
    if isinstance(d.get("extraction"), str):
        d["extraction"] = [d["extraction"]]
    d["extraction"] = tuple(d["extraction"])
    return MathOptions(**d)


def math_options(cfg: Any) -> tuple[MathOptions, dict[str, MathOptions]]:
    """The default comparison options of a verifier config and those of each data source in
    ``cfg.sources`` (a ValueError names a bad key or value)."""
    defaults = {k: _cfg_get(cfg, k, None) for k in _OPTION_KEYS}
    if defaults.get("extraction") is not None:
        defaults["extraction"] = list(defaults["extraction"])
    base = _merge_options(MathOptions(), defaults, "verifier")
    sources = _as_mapping(_cfg_get(cfg, "sources", None), "verifier.sources")
    per_source = {
        str(name): _merge_options(
            base, _as_mapping(node, f"verifier.sources.{name}"), f"verifier.sources.{name}"
        )
        for name, node in sources.items()
    }
    return base, per_source


class MathVerifier(RewardVerifier):
    """Binary math reward: the final ``\\boxed{}`` answer(s) after ``</think>`` vs
    ``reward_model.ground_truth`` (a string, a number or a list of acceptable answers), by
    math-verify's forward comparison, with options per ``data_source``."""

    def __init__(self, cfg: Any = None, ctx: Any = None):
        self.timeout_s = float(_cfg_get(cfg, "timeout_s", 5.0))
        if self.timeout_s <= 0:
            raise ValueError(f"verifier.timeout_s must be > 0, got {self.timeout_s}")
        workers = int(_cfg_get(cfg, "workers", 2))
        if workers <= 0:
            workers = min(2, os.cpu_count() or 1)
        mem_mb = int(_cfg_get(cfg, "max_memory_mb", 4096))
        self.options, self.source_options = math_options(cfg)
        self._pool = WorkerPool(
            _VERIFY_PY,
            size=workers,
            timeout_s=self.timeout_s,
            max_memory_mb=mem_mb,
            name="math verifier",
        )
        self._finalizer = weakref.finalize(self, self._pool.close)

    def options_for(self, row: Any) -> MathOptions:
        """The comparison options of a row: its ``data_source``'s, else the defaults."""
        source = row.get("data_source") if isinstance(row, Mapping) else None
        if isinstance(source, str) and source in self.source_options:
            return self.source_options[source]
        return self.options

    def _prepare(self, response: str, row: Any) -> Score | dict[str, Any]:
        """A Score decided here (error, fast paths) or the worker's request."""
        gt = None
        rm = row.get("reward_model") if isinstance(row, Mapping) else None
        if isinstance(rm, Mapping):
            gt = rm.get("ground_truth")
        if gt is None:
            return Score(0.0, "error", "row has no reward_model.ground_truth")
        golds = gold_answers(gt)
        if not golds:
            return Score(0.0, "error", f"unusable ground truth {repr(gt)[:80]}")
        opts = self.options_for(row)
        region = answer_region(response)
        found, answers = final_answers(region)
        answers = [a for a in answers or [] if a.strip()]
        if found and answers:
            quick = quick_verdict(answers, golds, opts)
            if quick is not None:
                return Score(*quick)
        return {"r": region, "g": golds, "t": self._pool.soft_timeout_s, "o": opts.to_dict()}

    def score(self, response: str, row: dict[str, Any]) -> Score:
        return self.score_many([response], [row])[0]

    def answer_key(self, response: str, row: dict[str, Any]) -> str | None:
        """The final boxed answer(s) after ``</think>``, textually normalised (maj@K votes)."""
        _, answers = final_answers(answer_region(response))
        key = ",".join(normalize(a) for a in answers or [] if a.strip())
        return key or None

    def score_many(self, responses: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[Score]:
        responses, rows = list(responses), list(rows)
        if len(responses) != len(rows):
            raise ValueError(f"{len(responses)} responses but {len(rows)} rows")
        results: list[Score | None] = [None] * len(responses)
        tasks: list[tuple[int, dict[str, Any]]] = []
        for i, (response, row) in enumerate(zip(responses, rows, strict=True)):
            prepared = self._prepare(response, row)
            if isinstance(prepared, Score):
                results[i] = prepared
            else:
                tasks.append((i, prepared))
        if tasks:
            replies = self._pool.run([request for _, request in tasks])
            for (i, _), reply in zip(tasks, replies, strict=True):
                if isinstance(reply, WorkerFailure):
                    results[i] = Score(0.0, reply.status, reply.reason)
                else:
                    score, status, reason = reply
                    results[i] = Score(float(score), str(status), str(reason))
        return [r if r is not None else Score(0.0, "error", "not scored") for r in results]

    def warmup(self, timeout: float | None = None) -> bool:
        """Start the workers now (they otherwise start on first use); True once all are ready."""
        return self._pool.start(timeout)

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> MathVerifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
