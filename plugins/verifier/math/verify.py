"""Answer extraction and comparison for the math verifier.

Pure functions, cheap to import: ``math_verify`` (and sympy) are imported on first use only, so
the trainer process can use :func:`answer_region`, :func:`final_answers`, :func:`gold_answers`
and the fast paths (:func:`quick_verdict`: textual, plain numbers and fractions) without
loading them. :func:`verify_region` is what the worker processes run; this file is also the
worker's entry point (``python -P verify.py ...``, see :func:`serve`, built on
:mod:`or1.core.pool_worker`), run by path so that a worker never imports the trainer's modules
(torch). Arguments: ``FD_IN FD_OUT PPID MEM_MB PDEATHSIG``.

The rules (each with an example in ``docs/verifiers.md``, section "Math"):

* the verdict is math-verify's *forward* comparison ``verify(gold, answer)`` with the options of
  :class:`MathOptions`; there is no reverse-direction check (``verify(answer, gold)`` accepted
  a bare ``2`` for the equation gold ``x^2+y^2=2``). The one added match is a *solved* relation
  against a set gold (``x<3`` for ``(-\\infty,3)``): the same set of numbers;
* an explicit set ``\\{...\\}`` never equals an ordered tuple or an interval (math-verify reads
  ``\\{1,3\\}`` as the pair ``(1,3)``);
* the answer of a response is the final run of boxes (``\\boxed{1}, \\boxed{2}``); several
  boxes, or a gold with several boxes, are compared as sets of answers;
* a whole-answer number with one decimal comma (``1,22``) is ``1.22`` where it cannot be a
  thousands separator (``1,000`` stays ``1000``, ``(1,22)`` stays a pair);
* a box's content is read whole: math-verify's plain-expression target counts only where it
  reads all of it (on ``4 \\lor 5``, LaTeX it cannot parse, it picked the last number, 5);
* inline math (``$...$``, ``\\(...\\)``) broken over several lines is not read by the
  unboxed fallback (math-verify's own inline rule; without this its plain-number extraction
  picked the ``1`` out of ``$1\\n+1$``).

Nothing here evaluates model text: parsing and comparison go through math-verify (latex2sympy
and sympy), bounded by the caller (a killable worker process with its own soft alarm).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from functools import lru_cache
from typing import Any

THINK_END = "</think>"

_BOX_RE = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")
_REASON_CHARS = 120

# ------------------------------------------------------------------------------ options

EXTRACTION_TARGETS = ("latex", "expr", "string")


@dataclass(frozen=True)
class MathOptions:
    """The comparison options of one data source (math-verify's own, plus or1's locale rule).

    ``precision``: decimal places floats are rounded to before comparing (math-verify's
    ``float_rounding``); ``numeric_precision``: significant digits of numeric evaluation;
    ``strict``: variables matter (``x+1`` != ``y+1``); ``allow_set_relation_comp``: a solved
    relation in one variable equals its solution set (``x<3`` = ``(-\\infty,3)``);
    ``extraction``: math-verify's extraction targets, in order (``latex``, ``expr``,
    ``string``: a choice letter A-D), for box contents and for unboxed responses;
    ``decimal_comma``: read ``1,22`` as ``1.22`` where unambiguous.
    """

    precision: int = 6
    numeric_precision: int = 15
    strict: bool = True
    allow_set_relation_comp: bool = True
    extraction: tuple[str, ...] = ("latex", "expr")
    decimal_comma: bool = True

    def __post_init__(self) -> None:
        targets = tuple(str(t) for t in self.extraction)
        object.__setattr__(self, "extraction", targets)
        bad = [t for t in targets if t not in EXTRACTION_TARGETS]
        if bad or not targets:
            raise ValueError(
                f"math extraction targets must be a non-empty list of {EXTRACTION_TARGETS}, "
                f"got {list(targets)}"
            )
        if int(self.precision) < 0 or int(self.numeric_precision) <= 0:
            raise ValueError(
                f"math precision must be >= 0 and numeric_precision > 0, got "
                f"{self.precision}, {self.numeric_precision}"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["extraction"] = list(self.extraction)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> MathOptions:
        if not d:
            return cls()
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__ and v is not None}
        if "extraction" in known:
            known["extraction"] = tuple(known["extraction"])
        return cls(**known)


DEFAULT_OPTIONS = MathOptions()

# ------------------------------------------------------------------------------ extraction


def answer_region(text: str) -> str:
    """The part of a response that is scored: what follows the first ``</think>``, or the whole
    text when there is none."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    _, sep, tail = text.partition(THINK_END)
    return tail if sep else text


def _box_at(text: str, start: int) -> tuple[str | None, int]:
    """``(argument, end)`` of the ``\\boxed`` whose name ends at ``start``: the argument is None
    when it has none (unbalanced braces, nothing after it); ``end`` is where it stops (the end
    of the text when unclosed). ``\\{``/``\\}`` (escaped braces) do not group."""
    n = len(text)
    i = start
    while i < n and text[i] in " \t":
        i += 1
    if i >= n:
        return None, n
    if text[i] != "{":
        if i == start:  # ``\boxed`` directly followed by something other than a brace
            return None, start
        j = i  # ``\boxed 5``: the argument is the next run of non-space characters
        while j < n and not text[j].isspace() and text[j] != "$":
            j += 1
        return (text[i:j] if j > i else None), j
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
                return text[i + 1 : j], j + 1
        j += 1
    return None, n


def _top_boxes(text: str) -> list[tuple[int, int, str | None]]:
    """Every outermost ``\\boxed``/``\\fbox`` of ``text``: ``(start, end, argument)``; a box
    nested in another one is part of that one's argument."""
    out: list[tuple[int, int, str | None]] = []
    for m in _BOX_RE.finditer(text):
        if out and m.start() < out[-1][1]:
            continue  # inside the previous box
        content, end = _box_at(text, m.end())
        out.append((m.start(), max(end, m.end()), content))
    return out


def _unnest(content: str) -> str:
    """``\\boxed{5}`` inside a box is ``5``."""
    s = content.strip()
    inner = _top_boxes(s)
    if len(inner) == 1 and inner[0][0] == 0 and inner[0][1] == len(s) and inner[0][2]:
        return _unnest(inner[0][2])
    return content


def _last_box(text: str) -> tuple[bool, str | None]:
    """``(found, content)`` for the last ``\\boxed``/``\\fbox`` in ``text``: ``found`` is whether
    there is one at all, ``content`` its argument (None when its braces are unbalanced)."""
    boxes = _top_boxes(text)
    if not boxes:
        return False, None
    content = boxes[-1][2]
    return True, (_unnest(content) if content is not None else None)


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``, braces matched
    with nesting; None when there is none or the last one is not closed."""
    return _last_box(text)[1]


# What may stand between two boxes of one final answer: punctuation, math delimiters,
# spacing, line breaks and the words "and" / "or" (so ``\boxed{3}. Wait: \boxed{5}`` is two
# answers, the last one wins, and ``\boxed{1}, \boxed{2} and \boxed{3}`` is one answer of three).
_BOX_SEPARATOR_RE = re.compile(
    r"(?:\s|[,;.&$]|\\[()\[\],;: !]|\\\\|\\q?quad(?![A-Za-z])|\band\b|\bor\b"
    r"|\\(?:text|textrm|mbox|mathrm)\{\s*(?:,|and|or)?\s*\})*"
)


def final_answers(text: str) -> tuple[bool, list[str] | None]:
    """``(found, answers)``: the final run of boxes of ``text`` (the last box and the boxes
    before it that only punctuation, delimiters or "and"/"or" separate from it), in order.
    ``found`` is whether there is a box at all; ``answers`` is None when the last one is not
    closed."""
    boxes = _top_boxes(text)
    if not boxes:
        return False, None
    if boxes[-1][2] is None:
        return True, None
    run = [boxes[-1]]
    for prev in reversed(boxes[:-1]):
        if prev[2] is None or not _BOX_SEPARATOR_RE.fullmatch(text, prev[1], run[0][0]):
            break
        run.insert(0, prev)
    return True, [_unnest(b[2]) for b in run if b[2] is not None]


def mask_broken_inline_math(text: str) -> str:
    """``text`` with every inline math span (``$...$``, ``\\(...\\)``) that contains a line
    break replaced by a space; display math (``$$...$$``, ``\\[...\\]``) is kept. Single ``$``
    are paired left to right, as TeX does; ``\\$`` is a literal dollar."""
    if "\n" not in text or ("$" not in text and "\\(" not in text):
        return text
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        for left, right, inline in (
            ("$$", "$$", False),
            ("\\[", "\\]", False),
            ("\\(", "\\)", True),
        ):
            if text.startswith(left, i):
                j = text.find(right, i + len(left))
                end = n if j < 0 else j + len(right)
                span = text[i:end]
                out.append(" " if inline and j >= 0 and "\n" in span else span)
                i = end
                break
        else:
            c = text[i]
            if c == "\\":
                out.append(text[i : i + 2])
                i += 2
                continue
            if c != "$":
                out.append(c)
                i += 1
                continue
            j = i + 1
            while j < n and text[j] != "$":
                j += 2 if text[j] == "\\" else 1
            if j >= n:  # an unpaired dollar: plain text
                out.append(text[i:])
                break
            span = text[i : j + 1]
            out.append(" " if "\n" in span else span)
            i = j + 1
    return "".join(out)


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
    """Outer math delimiters off; a gold that holds exactly one box is that box's content, one
    with several boxes is kept whole (see :func:`gold_parts`)."""
    s = s.strip()
    for left, right in _DELIMS:
        if len(s) > len(left) + len(right) and s.startswith(left) and s.endswith(right):
            inner = s[len(left) : -len(right)]
            if left not in inner and right not in inner:
                s = inner.strip()
                break
    boxes = _top_boxes(s)
    if len(boxes) == 1 and boxes[0][2] is not None and boxes[0][2].strip():
        s = _unnest(boxes[0][2]).strip()
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
    none (None, empty string, unsupported type). A gold with several boxes stays one answer
    (``\\boxed{1}, \\boxed{3}``: both are needed, see :func:`gold_parts`)."""
    out: list[str] = []
    for s in _flatten(ground_truth):
        if s not in out:
            out.append(s)
    return out


_THOUSANDS_RE = re.compile(r"-?[1-9]\d{0,2}(?:(?:,|\{,\})\d{3})+")
_DECIMAL_COMMA_RE = re.compile(r"(-?\d+)(?:,|\{,\})(\d+)")


def decimal_comma(s: str) -> str | None:
    """``1.22`` for ``1,22`` (or ``1{,}22``): a whole answer that is one number with one comma
    that cannot be a thousands separator (not ``d{1,3},ddd``); None for anything else
    (``1,000``, ``12,345,678``, ``(1,22)``, ``1, 22``, ``1,2,3``)."""
    t = s.strip()
    m = _DECIMAL_COMMA_RE.fullmatch(t)
    if m is None or _THOUSANDS_RE.fullmatch(t):
        return None
    return f"{m.group(1)}.{m.group(2)}"


def gold_parts(gold: str, opts: MathOptions = DEFAULT_OPTIONS) -> list[str]:
    """The answers a gold asks for all of: the contents of its boxes when it has several
    (``\\boxed{1}, \\boxed{3}`` -> ``1``, ``3``), else the gold itself; a decimal-comma number
    is rewritten (:func:`decimal_comma`) when ``opts.decimal_comma``."""
    boxes = _top_boxes(gold)
    parts = [gold]
    if len(boxes) > 1 and all(b[2] is not None and b[2].strip() for b in boxes):
        parts = [_unnest(b[2]).strip() for b in boxes if b[2] is not None]
    if opts.decimal_comma:
        parts = [decimal_comma(p) or p for p in parts]
    return parts


def _localize_answer(answer: str, gold_texts: list[str], opts: MathOptions) -> str:
    """A decimal-comma answer (``1,5``) read as a decimal where every gold part is a plain
    number (then a pair is not what is asked for); unchanged otherwise."""
    if not opts.decimal_comma or not gold_texts:
        return answer
    if all(plain_number(g) is not None for g in gold_texts):
        return decimal_comma(answer) or answer
    return answer


# ------------------------------------------------------------------------------ fast paths


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


_PLAIN_DECIMAL_RE = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)")
_PLAIN_FRACTION_RE = re.compile(r"(-?)(?:\\frac\{(-?\d+)\}\{(-?\d+)\}|(\d+)/(\d+))")
_PLAIN_MAX_CHARS = 60


def plain_number(s: str) -> tuple[Fraction, bool, int] | None:
    """``(value, is_decimal, significant_digits)`` of a plain number: an integer, a decimal
    (``-0.25``, ``.5``, ``2.``), or a fraction of integers (``\\frac{3}{4}``, ``\\dfrac{-3}{4}``,
    ``-3/4``); None for anything else (units, percent, thousands separators, ``\\frac{1}{0}``)."""
    t = normalize(s)
    if not t or len(t) > _PLAIN_MAX_CHARS:
        return None
    if _PLAIN_DECIMAL_RE.fullmatch(t):
        digits = len(t.lstrip("-").replace(".", "").lstrip("0")) or 1
        return Fraction(t if not t.endswith(".") else t[:-1] or "0"), "." in t, digits
    m = _PLAIN_FRACTION_RE.fullmatch(t)
    if m is None:
        return None
    num, den = (m.group(2), m.group(3)) if m.group(2) is not None else (m.group(4), m.group(5))
    if int(den) == 0:
        return None
    value = Fraction(int(num), int(den))
    return (-value if m.group(1) else value), False, 0


def numeric_verdict(answer: str, gold: str, precision: int = 6) -> bool | None:
    """math-verify's verdict on two plain numbers (:func:`plain_number`) where it is certain
    without sympy, else None. Integers and fractions compare exactly (as math-verify does for
    sympy Integer/Rational); when a decimal is involved, math-verify rounds both to
    ``precision`` places: equal values are equal, values more than two units of the last place
    apart differ, anything closer (or very large / long) is left to math-verify."""
    a = plain_number(answer)
    g = plain_number(gold)
    if a is None or g is None:
        return None
    (av, a_dec, a_digits), (gv, g_dec, g_digits) = a, g
    if not (a_dec or g_dec):
        return av == gv
    if max(a_digits, g_digits) > 12 or max(abs(av), abs(gv)) >= 10**9:
        return None
    if av == gv:
        return True
    if abs(av - gv) > Fraction(2, 10 ** int(precision)):
        return False
    return None


def quick_verdict(
    answers: list[str], golds: list[str], opts: MathOptions = DEFAULT_OPTIONS
) -> tuple[float, str, str] | None:
    """The verdict on a single boxed answer where the fast paths decide it for every gold
    (textual equality after :func:`normalize`, :func:`numeric_verdict`), else None (math-verify
    decides). Several answers, or a gold with several parts, always go to math-verify."""
    if len(answers) != 1:
        return None
    undecided = False
    for g in golds:
        parts = gold_parts(g, opts)
        if len(parts) != 1:
            undecided = True
            continue
        part = parts[0]
        answer = _localize_answer(answers[0], parts, opts)
        if normalize(answer) and normalize(answer) == normalize(part):
            return 1.0, "correct", f"matches '{_short(g)}'"
        verdict = numeric_verdict(answer, part, opts.precision)
        if verdict:
            return 1.0, "correct", f"'{_short(answers[0])}' equals '{_short(g)}'"
        if verdict is None:
            undecided = True
    if undecided:
        return None
    return 0.0, "wrong", f"'{_short(answers[0])}' != '{_short(' | '.join(golds))}'"


# ------------------------------------------------------------------------------ math-verify


def _short(s: str) -> str:
    s = " ".join(s.split())
    return s if len(s) <= _REASON_CHARS else s[: _REASON_CHARS - 3] + "..."


def _mv():
    import math_verify

    return math_verify


@lru_cache(maxsize=16)
def _targets(names: tuple[str, ...]) -> list[Any]:
    mv = _mv()
    make = {
        "latex": mv.LatexExtractionConfig,
        "expr": mv.ExprExtractionConfig,
        "string": mv.StringExtractionConfig,
    }
    return [make[n]() for n in names]


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


@lru_cache(maxsize=1024)
def _parse_cached(s: str, targets: tuple[str, ...]) -> tuple[Any, ...]:
    s = _unwrap_text_quantity(s).replace("\n", " ")  # a box's line breaks are spacing
    text = s if _UNESCAPED_DOLLAR.search(s) else f"${s}$"
    return tuple(_mv().parse(text, extraction_config=_targets(targets), parsing_timeout=None))


_BLANK_RE = re.compile(r"\s+|\$")


@lru_cache(maxsize=1024)
def _parse_answer_cached(s: str, targets: tuple[str, ...]) -> tuple[Any, ...]:
    if "expr" not in targets:
        return _parse_cached(s, targets)
    others = tuple(t for t in targets if t != "expr")
    parsed = _parse_cached(s, others) if others else ()
    if _first_expr(parsed) is not None:
        return parsed
    # math-verify's expression target reads plain numbers and arithmetic anywhere in a text;
    # inside a box whose LaTeX it cannot parse it picks the last number (``4 \lor 5`` -> 5),
    # so it counts only when what it read is the box's whole content.
    by_expr = _parse_cached(s, ("expr",))
    read = next((p for p in reversed(by_expr) if isinstance(p, str)), None)
    if read is not None:
        whole = _BLANK_RE.sub("", s)
        read = _BLANK_RE.sub("", read)
        if whole in (read, read + "\\%", read + "%"):  # ``10\%`` reads as 10, as math-verify does
            return by_expr
    return parsed


def _parse_math(s: str, targets: tuple[str, ...] = DEFAULT_OPTIONS.extraction) -> list[Any]:
    """Parse one bare answer (a box's content, no delimiters) with math-verify, read whole:
    the ``expr`` target only where it reads all of it (see :func:`_parse_answer_cached`).
    math-verify's own signal timeout is off (the worker bounds the whole verification)."""
    return list(_parse_answer_cached(s, tuple(targets)))


def _parse_gold(g: str, targets: tuple[str, ...] = DEFAULT_OPTIONS.extraction) -> tuple[Any, ...]:
    parsed = _parse_cached(g, tuple(targets))
    return parsed if parsed else (g,)  # unparsable gold: compare as a string


def _first_expr(parsed: Iterable[Any]) -> Any:
    return next((p for p in parsed if not isinstance(p, str)), None)


_EXPLICIT_SET_RE = re.compile(r"(?:\\\{|\\lbrace).*(?:\\\}|\\rbrace)", re.DOTALL)


def _is_explicit_set(text: str | None) -> bool:
    """``\\{1,3\\}`` (written as a set, with braces), not a bare list ``1, 3``."""
    return bool(text) and bool(_EXPLICIT_SET_RE.fullmatch(normalize(text or "")))


def _is_ordered(parsed: Iterable[Any]) -> bool:
    """An ordered tuple or an interval (``(1,3)`` parses as the open interval)."""
    from sympy import Interval, Tuple

    return isinstance(_first_expr(parsed), Interval | Tuple)


def _solved_relation_set(expr: Any) -> Any:
    """The solution set of a relation in *solved form* (a bare variable against constants:
    ``x<3``, ``2 \\le x \\le 5``, ``x=2``), else None: ``x^2-3x+2=0`` restates a problem, it
    does not answer it, so it is never turned into ``\\{1,2\\}``."""
    from sympy import Symbol
    from sympy.core.relational import Relational

    rels = list(getattr(expr, "_unsorted_args", None) or getattr(expr, "args", ()))
    if isinstance(expr, Relational):
        rels = [expr]
    if not rels or not all(isinstance(r, Relational) for r in rels):
        return None
    variables = set()
    for r in rels:
        if isinstance(r.lhs, Symbol) and not r.rhs.free_symbols:
            variables.add(r.lhs)
        elif isinstance(r.rhs, Symbol) and not r.lhs.free_symbols:
            variables.add(r.rhs)
        else:
            return None
    if len(variables) != 1:
        return None
    try:
        return expr.as_set()
    except Exception:
        return None


def _equal(
    gold: tuple[Any, ...] | list[Any],
    gold_text: str | None,
    pred: list[Any],
    pred_text: str | None,
    opts: MathOptions,
) -> bool:
    """One gold answer vs one answer: math-verify's forward ``verify(gold, pred)``, never
    reversed; an explicit set never equals an ordered tuple / interval; a solved relation
    equals its solution set where ``opts.allow_set_relation_comp``."""
    if (_is_explicit_set(gold_text) and _is_ordered(pred)) or (
        _is_explicit_set(pred_text) and _is_ordered(gold)
    ):
        return False
    mv = _mv()
    kw = {
        "float_rounding": int(opts.precision),
        "numeric_precision": int(opts.numeric_precision),
        "strict": bool(opts.strict),
        "allow_set_relation_comp": False,
        "timeout_seconds": None,
    }
    if mv.verify(list(gold), list(pred), **kw):
        return True
    if opts.allow_set_relation_comp:
        from sympy import Set

        if isinstance(_first_expr(gold), Set):
            sets = [s for s in (_solved_relation_set(p) for p in pred if not isinstance(p, str))]
            sets = [s for s in sets if s is not None]
            if sets and mv.verify(list(gold), sets, **kw):
                return True
    return False


_Item = tuple[tuple[Any, ...] | list[Any], str | None]  # (parsed, text)


def _elements(items: list[_Item]) -> list[_Item]:
    """The answers of a side compared as a set: its parts, or the elements of its one finite
    set (``\\{1,2,3\\}``, ``1, 2, 3``)."""
    if len(items) != 1:
        return items
    from sympy import FiniteSet

    expr = _first_expr(items[0][0])
    if isinstance(expr, FiniteSet):
        args = getattr(expr, "_unsorted_args", None) or expr.args
        return [([a], None) for a in args]
    return items


def _set_equal(golds: list[_Item], preds: list[_Item], opts: MathOptions) -> bool:
    """Every gold answer is among the answers and every answer among the gold answers."""
    gs, ps = _elements(golds), _elements(preds)
    matched = [[_equal(g, gt, p, pt, opts) for p, pt in ps] for g, gt in gs]
    return all(any(row) for row in matched) and all(
        any(matched[i][j] for i in range(len(gs))) for j in range(len(ps))
    )


def verify_region(
    region: str, golds: list[str], options: Mapping[str, Any] | MathOptions | None = None
) -> tuple[float, str, str]:
    """Score an answer region (already cut at ``</think>``) against gold answers (alternatives:
    any one may match); see :func:`verify_one`."""
    opts = options if isinstance(options, MathOptions) else MathOptions.from_dict(options)
    targets = opts.extraction
    found, boxed = final_answers(region)
    if found and boxed is None:
        return 0.0, "no_answer", "the last \\boxed is not closed"
    if found:
        answers = [a for a in (boxed or []) if a.strip()]
        if not answers:
            return 0.0, "no_answer", "empty \\boxed{}"
        quick = quick_verdict(answers, golds, opts)
        if quick is not None:
            return quick
        shown = ", ".join(answers)
    else:
        preds = _mv().parse(
            mask_broken_inline_math(region),
            extraction_config=_targets(targets),
            parsing_timeout=None,
        )
        if not preds:
            return 0.0, "no_answer", "no \\boxed{} and no final answer found"
        shown = next((p for p in reversed(preds) if isinstance(p, str)), "?")
        answers = []
    for g in golds:
        parts = gold_parts(g, opts)
        gold_items: list[_Item] = [(_parse_gold(p, targets), p) for p in parts]
        if found:
            pred_items: list[_Item] = []
            for a in answers:
                a = _localize_answer(a, parts, opts)
                pred_items.append((_parse_math(a, targets), a))
            if not any(p for p, _ in pred_items):
                return 0.0, "no_answer", f"could not parse '{_short(shown)}'"
        else:
            pred_items = [(preds, shown)]
        if len(gold_items) == 1 and len(pred_items) == 1:
            ok = _equal(gold_items[0][0], parts[0], pred_items[0][0], pred_items[0][1], opts)
        else:
            ok = _set_equal(gold_items, pred_items, opts)
        if ok:
            return 1.0, "correct", f"'{_short(shown)}' equals '{_short(g)}'"
    return 0.0, "wrong", f"'{_short(shown)}' != '{_short(' | '.join(golds))}'"


def verify_one(
    response: str, ground_truth: Any, options: Mapping[str, Any] | MathOptions | None = None
) -> tuple[float, str, str]:
    """Score one response against a ground truth: ``(score, status, reason)``.

    The scored text is :func:`answer_region` of the response; its answer is the final run of
    boxes (:func:`final_answers`; math-verify's own extraction of the final answer when there
    is no box); it is correct when it equals any of :func:`gold_answers` symbolically or
    numerically (math-verify's forward comparison, with the rules listed at the top of this
    module). Statuses: ``correct`` (1.0), ``wrong``, ``no_answer``, ``error`` (0.0).
    Unbounded in time: callers run it in a worker they can kill (:func:`serve`).
    """
    golds = gold_answers(ground_truth)
    if not golds:
        return 0.0, "error", f"no usable ground truth ({_short(repr(ground_truth))})"
    return verify_region(answer_region(response), golds, options)


# ------------------------------------------------------------------------------ worker


def _handle(req: dict[str, Any]) -> list[Any]:  # pragma: no cover - worker
    """``[score, status, reason]`` for one request, bounded by the worker's own alarm."""
    from or1.core.pool_worker import SoftTimeout, soft_deadline

    limit = float(req.get("t") or 0.0)
    try:
        with soft_deadline(limit):
            return list(verify_region(req["r"], req["g"], req.get("o")))
    except SoftTimeout:
        return [0.0, "timeout", f"verification took longer than {limit:g}s"]
    except MemoryError:
        return [0.0, "error", "out of memory"]
    except RecursionError:
        return [0.0, "error", "recursion too deep"]
    except Exception as e:  # math-verify normally returns False instead of raising
        return [0.0, "error", _short(f"{type(e).__name__}: {e}")]


def _load() -> None:  # pragma: no cover - worker
    """Import math-verify and warm up the parser, the set and the relation code."""
    import logging

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    _mv().verify(_parse_gold("\\frac{1}{2}"), _parse_math("0.5"), timeout_seconds=None)
    verify_region("\\boxed{(-\\infty, 3)}", ["x<3"])


def serve(argv: list[str] | None = None) -> None:  # pragma: no cover
    """The worker loop (:func:`or1.core.pool_worker.serve`): JSON requests ``{"r": region, "g":
    golds, "t": soft_timeout, "o": options}`` (``o``: :meth:`MathOptions.to_dict`, optional),
    replies ``[score, status, reason]``; ready once math-verify is loaded."""
    from or1.core.pool_worker import WorkerArgs
    from or1.core.pool_worker import serve as serve_requests

    serve_requests(_handle, WorkerArgs.parse(argv), load=_load)


if __name__ == "__main__":  # pragma: no cover
    serve()
