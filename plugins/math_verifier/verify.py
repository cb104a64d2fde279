"""Answer extraction and comparison for the math verifier.

Pure functions, cheap to import: ``math_verify`` (and sympy) are imported on first use only, so
the trainer process can use :func:`answer_region`, :func:`last_boxed` and :func:`gold_answers`
(and the string fast path) without loading them. :func:`verify_one` is what the worker processes
run; this file is also the worker's entry point (``python -P verify.py ...``, see
:func:`serve`), run by path so that a worker never imports the trainer's modules (torch).
Arguments: ``FD_IN FD_OUT PPID MEM_MB PDEATHSIG``.

Nothing here evaluates model text: parsing and comparison go through math-verify (latex2sympy
and sympy), bounded by the caller (a killable worker process with its own soft alarm).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

THINK_END = "</think>"

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")
_REASON_CHARS = 120

# ------------------------------------------------------------------------------ extraction


def answer_region(text: str) -> str:
    """The part of a response that is scored: what follows the first ``</think>``, or the whole
    text when there is none."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    _, sep, tail = text.partition(THINK_END)
    return tail if sep else text


def _box_at(text: str, start: int) -> str | None:
    """The argument of the ``\\boxed`` whose name ends at ``start``, or None when it has none
    (unbalanced braces, nothing after it). ``\\{``/``\\}`` (escaped braces) do not group."""
    n = len(text)
    i = start
    while i < n and text[i] in " \t":
        i += 1
    if i >= n:
        return None
    if text[i] != "{":
        if i == start:  # ``\boxed`` directly followed by something other than a brace
            return None
        j = i  # ``\boxed 5``: the argument is the next run of non-space characters
        while j < n and not text[j].isspace() and text[j] != "$":
            j += 1
        return text[i:j] if j > i else None
    depth = 0
    j = i
    while j < n:
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
        j += 1
    return None


def _last_box(text: str) -> tuple[bool, str | None]:
    """``(found, content)`` for the last ``\\boxed``/``\\fbox`` in ``text``: ``found`` is whether
    there is one at all, ``content`` its argument (None when its braces are unbalanced)."""
    last = None
    for last in _BOX_RE.finditer(text):  # noqa: B007 - we want the last match
        pass
    if last is None:
        return False, None
    return True, _box_at(text, last.end())


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, braces matched
    with nesting; None when there is none or the last one is not closed."""
    return _last_box(text)[1]


# ------------------------------------------------------------------------------ ground truth


def _number_text(x: float | int) -> str:
    if isinstance(x, int):
        return str(x)
    if x != x or x in (float("inf"), float("-inf")):
        return "\\infty" if x > 0 else ("-\\infty" if x < 0 else "nan")
    if float(x).is_integer():
        return str(int(x))
    try:
        return format(Decimal(repr(float(x))), "f")  # no exponent notation: 1e-05 -> 0.00001
    except (InvalidOperation, ValueError):
        return repr(x)


_DELIMS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))


def _strip_gold(s: str) -> str:
    s = s.strip()
    for left, right in _DELIMS:
        if len(s) > len(left) + len(right) and s.startswith(left) and s.endswith(right):
            inner = s[len(left) : -len(right)]
            if left not in inner and right not in inner:
                s = inner.strip()
                break
    if _BOX_RE.match(s):
        box = last_boxed(s)
        if box is not None and box.strip():
            s = box.strip()
    return s


def _flatten(value: Any) -> Iterable[str]:
    if value is None:
        return
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):  # numpy array / scalar
        value = value.tolist()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        s = value.strip()
        if s.startswith("[") and s.endswith("]") and '"' in s:
            # A JSON-encoded list of answers (``'["68"]'``); only lists of strings, so that an
            # interval like ``[1,2]`` stays one answer.
            try:
                decoded = json.loads(s)
            except ValueError:
                decoded = None
            if isinstance(decoded, list) and decoded and all(isinstance(d, str) for d in decoded):
                yield from _flatten(decoded)
                return
        s = _strip_gold(s)
        if s:
            yield s
        return
    if isinstance(value, bool):
        yield str(value)
        return
    if isinstance(value, int | float):
        yield _number_text(value)
        return
    if isinstance(value, list | tuple | set | frozenset):
        for v in value:
            yield from _flatten(v)
        return
    # Anything else (a dict, an object): no usable answer.


def gold_answers(ground_truth: Any) -> list[str]:
    """The acceptable answers of a row's ``reward_model.ground_truth`` as LaTeX strings, without
    math delimiters: a string (``68``, ``\\frac{1}{2}``, ``$x$``, ``\\boxed{3}``, or a
    JSON-encoded list of strings), a number, or a list/tuple/array of those. Empty when there is
    none (None, empty string, unsupported type)."""
    out: list[str] = []
    for s in _flatten(ground_truth):
        if s not in out:
            out.append(s)
    return out


# ------------------------------------------------------------------------------ fast path


def _unwrap_dollars(s: str) -> str:
    while len(s) >= 2 and s[0] == "$" and s[-1] == "$" and not s.endswith("\\$"):
        s = s[1:-1].strip()
    return s


_SPACING_RE = re.compile(r"\\[,!;: ]|\\(?:left|right)(?![A-Za-z])|\s+")
_FRAC_RE = re.compile(r"\\[dt]frac(?![A-Za-z])")


def normalize(s: str) -> str:
    """A conservative textual normal form, for the exact-match fast path only: outer ``$``,
    spacing commands, ``\\left``/``\\right`` and whitespace removed, ``\\dfrac``/``\\tfrac`` ->
    ``\\frac``, a trailing period dropped. Equal normal forms mean the same answer."""
    s = _unwrap_dollars(s.strip())
    s = _FRAC_RE.sub(r"\\frac", s)
    s = _SPACING_RE.sub("", s)
    return s.rstrip(".")


def fast_match(answer: str | None, golds: Iterable[str]) -> str | None:
    """The gold answer that ``answer`` equals textually (after :func:`normalize`), or None."""
    if answer is None:
        return None
    a = normalize(answer)
    if not a:
        return None
    for g in golds:
        if normalize(g) == a:
            return g
    return None


# ------------------------------------------------------------------------------ math-verify


def _short(s: str) -> str:
    s = " ".join(s.split())
    return s if len(s) <= _REASON_CHARS else s[: _REASON_CHARS - 3] + "..."


def _mv():
    import math_verify

    return math_verify


def _configs():
    mv = _mv()
    return [mv.LatexExtractionConfig(), mv.ExprExtractionConfig()]


_TEXT_QUANTITY_RE = re.compile(
    r"\\(?:text|textrm|mathrm|mbox)\{\s*(-?[\d.,]+)\s*([A-Za-z][A-Za-z .]*)?\}\Z"
)


def _unwrap_text_quantity(s: str) -> str:
    """``\\text{5 cm}`` -> ``5\\text{ cm}``: a number with its unit inside one ``\\text``,
    which math-verify reads as a word, becomes a number followed by a unit it strips."""
    m = _TEXT_QUANTITY_RE.match(s.strip())
    if not m:
        return s
    return m.group(1) + (f"\\text{{ {m.group(2).strip()}}}" if m.group(2) else "")


def _parse_math(s: str) -> list[Any]:
    """Parse one bare answer (no delimiters) with math-verify; math-verify's own signal timeout
    is off (the worker bounds the whole verification)."""
    s = _unwrap_text_quantity(s)
    text = s if _UNESCAPED_DOLLAR.search(s) else f"${s}$"
    return _mv().parse(text, extraction_config=_configs(), parsing_timeout=None)


@lru_cache(maxsize=2048)
def _parse_gold(g: str) -> tuple[Any, ...]:
    parsed = _parse_math(g)
    return tuple(parsed) if parsed else (g,)  # unparsable gold: compare as a string


def verify_region(region: str, golds: list[str]) -> tuple[float, str, str]:
    """Score an answer region (already cut at ``</think>``) against gold answers; see
    :func:`verify_one`."""
    found, box = _last_box(region)
    if found and box is None:
        return 0.0, "no_answer", "the last \\boxed is not closed"
    if box is not None:
        if not box.strip():
            return 0.0, "no_answer", "empty \\boxed{}"
        hit = fast_match(box, golds)
        if hit is not None:
            return 1.0, "correct", f"matches '{_short(hit)}'"
        preds = _parse_math(box)
        shown = box
    else:
        preds = _mv().parse(region, extraction_config=_configs(), parsing_timeout=None)
        if not preds:
            return 0.0, "no_answer", "no \\boxed{} and no final answer found"
        shown = next((p for p in reversed(preds) if isinstance(p, str)), "?")
    if not preds:
        return 0.0, "no_answer", f"could not parse '{_short(box or '')}'"
    verify = _mv().verify
    for g in golds:
        gold = list(_parse_gold(g))
        # Both directions: math-verify is asymmetric for relations (``x < 3`` is accepted for
        # a gold ``(-\infty, 3)`` but not the other way round); equivalence is symmetric.
        if verify(gold, preds, timeout_seconds=None) or verify(preds, gold, timeout_seconds=None):
            return 1.0, "correct", f"'{_short(shown)}' equals '{_short(g)}'"
    return 0.0, "wrong", f"'{_short(shown)}' != '{_short(' | '.join(golds))}'"


def verify_one(response: str, ground_truth: Any) -> tuple[float, str, str]:
    """Score one response against a ground truth: ``(score, status, reason)``.

    The scored text is :func:`answer_region` of the response; its answer is the last
    ``\\boxed{}`` (math-verify's own extraction of the final answer when there is no box); it is
    correct when it equals any of :func:`gold_answers` symbolically or numerically
    (math-verify). Statuses: ``correct`` (1.0), ``wrong``, ``no_answer``, ``error`` (0.0).
    Unbounded in time: callers run it in a worker they can kill (:func:`serve`).
    """
    golds = gold_answers(ground_truth)
    if not golds:
        return 0.0, "error", f"no usable ground truth ({_short(repr(ground_truth))})"
    return verify_region(answer_region(response), golds)


# ------------------------------------------------------------------------------ worker


class _Deadline(BaseException):
    """Raised by the worker's alarm; a BaseException so that math-verify's ``except Exception``
    does not swallow it."""


_ARMED = False


def _on_alarm(signum, frame):  # pragma: no cover - runs in the worker
    if _ARMED:
        raise _Deadline()


def _die_with_parent(ppid: int, pdeathsig: bool) -> None:  # pragma: no cover - worker
    """Exit when the trainer does: ``PR_SET_PDEATHSIG`` (only when the spawning thread is the
    trainer's main thread: the signal follows the *thread* that forked) and a watchdog thread
    that notices re-parenting (it cannot run while sympy holds the GIL in C code; the pipe's end
    of input and the alarm cover the rest)."""
    import os
    import signal
    import threading
    import time

    if pdeathsig:
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except Exception:
            pass
    if os.getppid() != ppid:
        os._exit(0)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != ppid:
                os._exit(0)

    threading.Thread(target=watch, name="or1-parent-watch", daemon=True).start()


def _handle(req: dict[str, Any]) -> tuple[float, str, str]:  # pragma: no cover - worker
    import signal

    global _ARMED
    limit = float(req.get("t") or 0.0)
    try:
        try:
            if limit > 0:
                _ARMED = True
                signal.setitimer(signal.ITIMER_REAL, limit)
            return verify_region(req["r"], req["g"])
        finally:
            _ARMED = False
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _Deadline:
        return 0.0, "timeout", f"verification took longer than {limit:g}s"
    except MemoryError:
        return 0.0, "error", "out of memory"
    except RecursionError:
        return 0.0, "error", "recursion too deep"
    except Exception as e:  # math-verify normally returns False instead of raising
        return 0.0, "error", _short(f"{type(e).__name__}: {e}")


def serve(  # pragma: no cover
    fd_in: int, fd_out: int, ppid: int, mem_mb: int = 0, pdeathsig: bool = False
) -> None:
    """The worker loop: read JSON requests ``{"r": region, "g": golds, "t": soft_timeout}`` from
    ``fd_in``, answer ``[score, status, reason]`` on ``fd_out`` (``multiprocessing`` framing),
    exit at end of input. Sends ``{"ready": true}`` once math-verify is loaded."""
    import logging
    import signal
    from multiprocessing.connection import Connection

    _die_with_parent(ppid, pdeathsig)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the trainer's to handle
    if mem_mb > 0:
        import resource

        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        soft = mem_mb * 2**20
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        try:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        except (ValueError, OSError):
            pass
    rx = Connection(fd_in, writable=False)
    tx = Connection(fd_out, readable=False)
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    mv = _mv()
    mv.verify(_parse_gold("\\frac{1}{2}"), _parse_math("0.5"), timeout_seconds=None)  # warm up
    signal.signal(signal.SIGALRM, _on_alarm)
    tx.send_bytes(b'{"ready": true}')
    while True:
        try:
            req = json.loads(rx.recv_bytes())
        except (EOFError, OSError):
            return
        try:
            tx.send_bytes(json.dumps(list(_handle(req))).encode())
        except OSError:  # the trainer is gone
            return


if __name__ == "__main__":  # pragma: no cover
    import sys

    fd_in, fd_out, ppid, mem_mb, pdeathsig = (int(a) for a in sys.argv[1:6])
    serve(fd_in, fd_out, ppid, mem_mb, bool(pdeathsig))
