"""Code ground truth -> test cases, and the comparisons that decide them (outside the sandbox).

Every supported schema becomes a list of :class:`Case`: what the sandbox runs (``test``, which
never contains an expected answer) and what the harness expects back (``expected``):

* ``stdio``: run the program with ``input`` on stdin; pass when its stdout matches one of
  ``expected`` (:func:`stdout_matches`: line by line ignoring surrounding whitespace, else
  token by token with a 1e-6 tolerance on non-integer numbers);
* ``call``: call ``fn`` (a function, or a method of ``Solution()``) with ``args``; pass when the
  returned data equals one of ``expected`` (:func:`data_equal`);
* ``expr``: evaluate an expression (the non-literal side of ``assert X == <literal>``); pass
  when its data equals the literal;
* ``bool`` / ``exec``: an assert that cannot be split that way, or a whole check function,
  decided inside the sandbox (the record's ``ok``).

Schemas: TACO/APPS ``{"inputs", "outputs", "fn_name"?}``; LeetCode ``{"import_prefix",
"test_code", "entry_point"}`` (``check(candidate)``); ``{"assert_case": [...]}`` or a bare list
of assert strings; LiveCodeBench ``{"public_test_cases", "private_test_cases", "metadata":
{"func_name"}}`` or a bare list of ``{"input", "output", "testtype"}`` (private tests may be
base64 + zlib + pickle of JSON, decoded with a pickle reader that loads no class). A JSON string
of any of these is decoded first.
"""

from __future__ import annotations

import ast
import base64
import io
import json
import math
import pickle
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._driver import NotData, to_data


class GroundTruthError(ValueError):
    """The ground truth has no usable tests; the message says why."""


@dataclass
class Case:
    test: dict[str, Any]
    expected: list[Any] = field(default_factory=list)


@dataclass
class Suite:
    cases: list[Case]
    prefix: str = ""
    entry: str | None = None
    schema: str = ""


# ------------------------------------------------------------------------------ decoding


class _NoClassUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _decode_tests(value: Any) -> Any:
    """A test list given as a list, a JSON string or LiveCodeBench's base64(zlib(pickle(json)))."""
    if value is None or isinstance(value, list):
        return value or []
    if isinstance(value, str):
        s = value.strip()
        if not s:
            return []
        try:
            return json.loads(s)
        except ValueError:
            pass
        try:
            raw = zlib.decompress(base64.b64decode(s))
            inner = _NoClassUnpickler(io.BytesIO(raw)).load()
        except Exception as e:
            raise GroundTruthError(f"undecodable test list ({type(e).__name__})") from None
        return json.loads(inner) if isinstance(inner, str | bytes) else inner
    raise GroundTruthError(f"test list of type {type(value).__name__}")


def _as_text(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    return "" if value is None else str(value)


def _data(value: Any) -> Any:
    try:
        return to_data(value)
    except NotData as e:
        raise GroundTruthError(f"expected value is not data: {e}") from None


# ------------------------------------------------------------------------------ asserts


class _Wrap(ast.NodeTransformer):
    """Wrap every call's result in ``__or1_data__`` (data check) except a call whose result is
    only a receiver (``Solution().f(...)``); rename the check function's parameter."""

    def __init__(self, param: str | None):
        self.param = param

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if self.param and node.id == self.param:
            return ast.copy_location(ast.Name("candidate", node.ctx), node)
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        receiver = isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Call)
        if receiver:
            inner = node.func.value
            inner.args = [self.visit(a) for a in inner.args]
            inner.keywords = [self.visit(k) for k in inner.keywords]
            node.func.value = inner
            node.args = [self.visit(a) for a in node.args]
            node.keywords = [self.visit(k) for k in node.keywords]
        else:
            self.generic_visit(node)
        wrapped = ast.Call(ast.Name("__or1_data__", ast.Load()), [node], [])
        return ast.copy_location(wrapped, node)


def _src(node: ast.expr, param: str | None) -> str:
    tree = ast.fix_missing_locations(_Wrap(param).visit(ast.Expression(body=node)))
    return ast.unparse(tree.body)


def assert_case(stmt: ast.Assert, param: str | None = None) -> Case:
    """One assert -> an ``expr`` case (``X == literal``, decided outside) or a ``bool`` case."""
    test = stmt.test
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
        sides = (test.left, test.comparators[0])
        for expr_side, lit_side in (sides, sides[::-1]):
            try:
                literal = ast.literal_eval(lit_side)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                continue
            return Case({"kind": "expr", "src": _src(expr_side, param)}, [_data(literal)])
    return Case({"kind": "bool", "src": _src(test, param)})


def _parse(src: str, what: str) -> ast.Module:
    try:
        return ast.parse(src)
    except SyntaxError as e:
        raise GroundTruthError(f"{what} is not valid Python ({e.msg}, line {e.lineno})") from None


def _assert_list(items: list[Any]) -> list[Case]:
    cases = []
    for k, item in enumerate(items):
        if not isinstance(item, str) or not item.strip():
            raise GroundTruthError(f"assert_case[{k}] is not a code string")
        body = _parse(item, f"assert_case[{k}]").body
        if len(body) == 1 and isinstance(body[0], ast.Assert):
            cases.append(assert_case(body[0]))
        else:
            cases.append(Case({"kind": "exec", "src": item}))
    return cases


def _leetcode(gt: Mapping[str, Any]) -> Suite:
    test_code = gt.get("test_code") or gt.get("test")
    entry = gt.get("entry_point")
    prefix = str(gt.get("import_prefix") or "")
    if not isinstance(test_code, str) or not test_code.strip():
        raise GroundTruthError("empty test_code")
    if not isinstance(entry, str) or not entry.strip():
        raise GroundTruthError("test_code without an entry_point")
    entry = entry.strip()
    _parse(entry, "entry_point")
    module = _parse(test_code, "test_code")
    check = None
    helpers = []
    for node in module.body:
        if isinstance(node, ast.FunctionDef) and node.name == "check":
            check = node
        elif isinstance(
            node, ast.Import | ast.ImportFrom | ast.FunctionDef | ast.ClassDef | ast.Assign
        ):
            helpers.append(ast.unparse(node))
    if check is None:
        raise GroundTruthError("test_code defines no check(candidate) function")
    param = check.args.args[0].arg if check.args.args else None
    body = [
        s
        for s in check.body
        if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
        and not isinstance(s, ast.Pass)
    ]
    full_prefix = "\n".join(p for p in [prefix, *helpers] if p)
    if param and body and all(isinstance(s, ast.Assert) for s in body):
        cases = [assert_case(s, param) for s in body]
    else:
        cases = [Case({"kind": "exec", "src": ast.unparse(check), "call": "check"})]
    return Suite(cases, full_prefix, entry, "leetcode")


def _taco(gt: Mapping[str, Any]) -> Suite:
    inputs, outputs = gt.get("inputs"), gt.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list):
        raise GroundTruthError("'inputs' and 'outputs' must be lists")
    if len(inputs) != len(outputs):
        raise GroundTruthError(f"{len(inputs)} inputs but {len(outputs)} outputs")
    fn = gt.get("fn_name")
    cases = []
    for inp, out in zip(inputs, outputs, strict=True):
        if fn:
            args = inp if isinstance(inp, list) else [inp]
            expected = [_data(out)]
            if isinstance(out, list) and len(out) == 1:  # APPS wraps return values in a list
                expected.append(_data(out[0]))
            cases.append(Case({"kind": "call", "fn": str(fn), "args": args}, expected))
        else:
            cases.append(Case({"kind": "stdio", "input": _as_text(inp)}, [_as_text(out)]))
    return Suite(cases, "", None, "taco_call" if fn else "taco_stdio")


def _lcb_tests(tests: list[Any], func_name: str | None) -> list[Case]:
    cases = []
    for k, t in enumerate(tests):
        if not isinstance(t, Mapping) or "input" not in t or "output" not in t:
            raise GroundTruthError(f"test {k} has no input/output")
        kind = str(t.get("testtype") or ("functional" if func_name else "stdin"))
        if kind == "functional":
            if not func_name:
                raise GroundTruthError(f"test {k} is functional but no func_name is given")
            try:
                lines = [ln for ln in str(t["input"]).split("\n") if ln.strip()]
                args = [json.loads(ln) for ln in lines]
                expected = json.loads(str(t["output"]))
            except ValueError:
                raise GroundTruthError(f"test {k}: functional input/output is not JSON") from None
            cases.append(Case({"kind": "call", "fn": func_name, "args": args}, [_data(expected)]))
        elif kind in ("stdin", "stdio"):
            cases.append(
                Case({"kind": "stdio", "input": _as_text(t["input"])}, [_as_text(t["output"])])
            )
        else:
            raise GroundTruthError(f"test {k}: unknown testtype '{kind}'")
    return cases


def _func_name(gt: Mapping[str, Any]) -> str | None:
    meta = gt.get("metadata")
    if isinstance(meta, str) and meta.strip():
        try:
            meta = json.loads(meta)
        except ValueError:
            meta = None
    name = meta.get("func_name") if isinstance(meta, Mapping) else None
    return name or gt.get("func_name") or gt.get("fn_name") or None


def parse_ground_truth(gt: Any) -> Suite:
    """The test suite of a code row's ``reward_model.ground_truth`` (any schema above), or
    :class:`GroundTruthError`. Tests are numbered in order (``test["i"]``)."""
    if isinstance(gt, bytes):
        gt = gt.decode("utf-8", "replace")
    if isinstance(gt, str):
        try:
            gt = json.loads(gt)
        except ValueError:
            raise GroundTruthError("ground truth is a string but not JSON") from None
    if isinstance(gt, list):
        if gt and isinstance(gt[0], str):
            suite = Suite(_assert_list(gt), schema="assert_case")
        else:
            suite = Suite(_lcb_tests(gt, None), schema="livecodebench")
    elif isinstance(gt, Mapping):
        if "inputs" in gt and "outputs" in gt:
            suite = _taco(gt)
        elif gt.get("test_code") or (gt.get("test") and gt.get("entry_point")):
            suite = _leetcode(gt)
        elif "assert_case" in gt:
            items = gt["assert_case"]
            if isinstance(items, str):
                items = json.loads(items) if items.strip().startswith("[") else [items]
            if not isinstance(items, list):
                raise GroundTruthError("assert_case must be a list of strings")
            suite = Suite(
                _assert_list(items), str(gt.get("import_prefix") or ""), None, "assert_case"
            )
        elif any(k in gt for k in ("public_test_cases", "private_test_cases", "test_cases")):
            tests = []
            for key in ("public_test_cases", "private_test_cases", "test_cases"):
                decoded = _decode_tests(gt.get(key))
                if not isinstance(decoded, list):
                    raise GroundTruthError(f"{key} is not a list")
                tests.extend(decoded)
            suite = Suite(_lcb_tests(tests, _func_name(gt)), schema="livecodebench")
        else:
            raise GroundTruthError(f"unknown code ground-truth schema (keys: {sorted(gt)[:8]})")
    else:
        raise GroundTruthError(f"ground truth of type {type(gt).__name__}")
    if not suite.cases:
        raise GroundTruthError("the ground truth has no tests")
    for i, case in enumerate(suite.cases):
        case.test["i"] = i
    return suite


# ------------------------------------------------------------------------------ comparison


def _num(tok: str) -> float | None:
    try:
        x = float(tok)
    except ValueError:
        return None
    return x if math.isfinite(x) else None


_INT_RE = re.compile(r"[+-]?\d+\Z")


def _token_equal(a: str, b: str) -> bool:
    if a == b:
        return True
    if _INT_RE.match(a) and _INT_RE.match(b):
        return int(a) == int(b)
    x, y = _num(a), _num(b)
    return x is not None and y is not None and math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-6)


def stdout_matches(got: str, expected: str) -> bool:
    """Competition-style output check: equal line by line after stripping each line and
    dropping blank lines at the ends; else equal token by token where integers compare exactly
    and other numbers within 1e-6 (absolute or relative)."""
    gl = [ln.strip() for ln in got.strip().splitlines()]
    el = [ln.strip() for ln in expected.strip().splitlines()]
    if gl == el:
        return True
    gt, et = got.split(), expected.split()
    return len(gt) == len(et) and all(_token_equal(a, b) for a, b in zip(gt, et, strict=True))


def data_equal(a: Any, b: Any) -> bool:
    """Equality of two plain-data values (from :func:`to_data`): floats within 1e-9 (relative or
    absolute), numbers by value, containers element by element."""
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, int | float) and isinstance(b, int | float):
            if math.isnan(a) or math.isnan(b):
                return math.isnan(a) and math.isnan(b)
            return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
        return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(data_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(data_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | dict) or isinstance(b, list | dict):
        return False
    return type(a) is type(b) and a == b
