"""Code ground truth -> test cases, and the output checkers that decide them (outside the sandbox).

Every supported layout becomes a :class:`Suite` of :class:`Case`: what the sandbox runs
(``test``, which never contains an expected answer) and what the harness expects back
(``expected``). Test kinds:

* ``stdio``: run the program with ``input`` on stdin; pass when its stdout matches one of
  ``expected`` under the suite's output checker (:func:`output_matches`);
* ``call``: call ``fn`` (a function, or a method of ``Solution()``, that the solution itself
  defines) with ``args``; pass when the returned data matches one of ``expected``
  (:func:`value_matches`);
* ``expr``: evaluate an expression (the non-literal side of ``assert X == <literal>``); pass
  when its data matches the literal;
* ``bool`` / ``exec``: an assert that cannot be split that way, a whole check function or a
  pytest-style test function, decided inside the sandbox (the record's ``ok``).

Layouts (``reward_model.ground_truth``, a dict/list, or its JSON string):

* TACO / APPS ``{"inputs", "outputs", "fn_name"?}``, or that object as the JSON string of
  ``{"input_output": ...}`` (TACO's own column);
* CodeContests ``{"public_tests", "private_tests", "generated_tests"}``, each
  ``{"input": [...], "output": [...]}``;
* Codeforces ``{"official_tests": [{"input", "output"}, ...]}`` or a bare list of such tests;
* LiveCodeBench ``{"public_test_cases", "private_test_cases", "metadata": {"func_name"}}``
  (private tests may be base64 + zlib + pickle of JSON, decoded with a pickle reader that
  loads no class), or a bare test list ``[{"input", "output", "testtype", "metadata"?}]`` whose
  functional tests name their function in ``metadata.func_name``; PrimeIntellect's
  ``[{"type": "function_call" | "stdin_stdout", "fn_name"?, "input", "output"}]`` too;
* LeetCode ``{"import_prefix", "test_code" | "test", "entry_point"}`` (``check(candidate)``) and
  ``{"functional": "<check(candidate) ...>\\ncheck(Solution().f)"}``;
* ``{"assert_case": [...]}`` or a bare list of assert strings;
* a pytest-style test file (``def test_*():`` functions with asserts; ``from solution import
  ...``; ``pytest.raises``, ``pytest.approx`` and literal ``pytest.mark.parametrize`` work), as
  the ground-truth string itself or under ``{"test": ...}``;
* ``{"tests": <any layout above>}`` (a wrapper that can carry the options below).

Options of a dict ground truth: ``import_prefix`` (replaces the default import prefix of
call-based tests), ``checker`` (one of :data:`CHECKERS`) and ``tolerance`` (``float_tol``).
"""

from __future__ import annotations

import ast
import base64
import builtins
import copy
import importlib
import io
import itertools
import json
import math
import pickle
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from ._driver import NotData, to_data

CHECKERS = ("exact", "tokens", "case_insensitive", "float_tol")
DEFAULT_TOLERANCE = 1e-6

# The default import prefix of call-based tests (as LiveCodeBench's harness prepends one): the
# public names of these modules (later modules win a shared name: collections.Counter, not
# typing.Counter; builtins are never shadowed, so pow stays the built-in one) ...
PREFIX_STAR_MODULES = ("typing", "collections", "itertools", "functools", "heapq", "bisect", "math")
# ... and these modules by name.
PREFIX_MODULES = (
    "bisect",
    "collections",
    "copy",
    "datetime",
    "functools",
    "heapq",
    "itertools",
    "json",
    "math",
    "operator",
    "random",
    "re",
    "statistics",
    "string",
    "sys",
    "typing",
)


def _prefix_names() -> dict[str, str]:
    names: dict[str, str] = {}
    for module_name in PREFIX_STAR_MODULES:
        module = importlib.import_module(module_name)
        public = getattr(module, "__all__", None) or [n for n in vars(module) if n[0] != "_"]
        for name in public:
            if not hasattr(builtins, name):
                names[name] = module_name
    return names


_PREFIX_NAMES = _prefix_names()
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def default_import_prefix(code: str) -> str:
    """The import prefix for ``code``: ``from typing import *``, ``from collections import
    *``, ... and ``import math``, ... (:data:`PREFIX_STAR_MODULES`, :data:`PREFIX_MODULES`),
    limited to the names the code mentions, so that it costs no module import the code does
    not need. Each name is imported on its own and skipped when the sandbox's Python lacks it."""
    used = set(_IDENT_RE.findall(code))
    lines = [f"import {m}" for m in PREFIX_MODULES if m in used]
    for name in sorted(used & _PREFIX_NAMES.keys()):
        lines += [
            "try:",
            f"    from {_PREFIX_NAMES[name]} import {name}",
            "except ImportError:",
            "    pass",
        ]
    return "\n".join(lines) + "\n" if lines else ""


class GroundTruthError(ValueError):
    """The ground truth has no usable tests. ``field`` names the ground-truth field at fault
    (``""``: the ground truth as a whole), ``reason`` says why."""

    def __init__(self, reason: str, field: str = ""):
        self.reason = reason
        self.field = field
        super().__init__(f"{field}: {reason}" if field else reason)


@dataclass
class Case:
    """One test: what runs in the sandbox (``test``) and the acceptable answers (``expected``)."""

    test: dict[str, Any]
    expected: list[Any] = field(default_factory=list)


@dataclass
class Suite:
    """The tests of one ground truth. ``prefix`` is trusted code (the row's ``import_prefix``
    and the test file's helpers) run before the solution and the tests; ``own_prefix``: the
    row carries an ``import_prefix`` of its own (so no default one is added); ``checker`` /
    ``tolerance``: the row's own choice, or None."""

    cases: list[Case]
    prefix: str = ""
    entry: str | None = None
    schema: str = ""
    own_prefix: bool = False
    checker: str | None = None
    tolerance: float | None = None

    @property
    def call_based(self) -> bool:
        """Whether any test runs the solution in the driver (not as a stdin program)."""
        return any(c.test["kind"] != "stdio" for c in self.cases)


def _at(base: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else key


# ------------------------------------------------------------------------------ decoding


class _NoClassUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def _decode_tests(value: Any, where: str) -> Any:
    """A test list given as data, a JSON string or LiveCodeBench's base64(zlib(pickle(json)))."""
    if value is None:
        return []
    if not isinstance(value, str):
        return value
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
        raise GroundTruthError(f"undecodable test list ({type(e).__name__})", where) from None
    return json.loads(inner) if isinstance(inner, str | bytes) else inner


def _as_text(value: Any) -> str:
    if isinstance(value, list):
        return "\n".join(str(v) for v in value)
    return "" if value is None else str(value)


def _data(value: Any, where: str) -> Any:
    try:
        return to_data(value)
    except NotData as e:
        raise GroundTruthError(f"expected value is not data: {e}", where) from None


def _meta(value: Any) -> Mapping[str, Any]:
    if isinstance(value, str) and value.strip():
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, Mapping) else {}


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


_CMP_OPS = {
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.In: "in",
    ast.NotIn: "not in",
}


class _Guard(ast.NodeTransformer):
    """Test code decided inside the sandbox (``exec`` tests: pytest functions, check functions,
    test statements) compares through the driver: a comparison (but ``is`` / ``is not``)
    becomes ``__or1_compare__([operands], [ops])``, which refuses operands that are not data
    (an object whose ``__eq__`` is always true), and an assert's condition that is not a
    comparison goes through ``__or1_truth__`` (no ``__bool__`` of the solution's)."""

    def visit_Compare(self, node: ast.Compare) -> ast.AST:
        self.generic_visit(node)
        if not all(type(op) in _CMP_OPS for op in node.ops):
            return node  # ``is`` / ``is not``: identity, which no object can fake
        call = ast.Call(
            ast.Name("__or1_compare__", ast.Load()),
            [
                ast.List([node.left, *node.comparators], ast.Load()),
                ast.List([ast.Constant(_CMP_OPS[type(op)]) for op in node.ops], ast.Load()),
            ],
            [],
        )
        return ast.copy_location(call, node)

    def visit_Assert(self, node: ast.Assert) -> ast.AST:
        self.generic_visit(node)
        if not _is_guard_call(node.test):
            node.test = ast.copy_location(
                ast.Call(ast.Name("__or1_truth__", ast.Load()), [node.test], []), node.test
            )
        return node


def _is_guard_call(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "__or1_compare__"
    )


def _guarded(node: ast.AST) -> str:
    """The source of test code with its comparisons and assert conditions guarded
    (:class:`_Guard`)."""
    return ast.unparse(ast.fix_missing_locations(_Guard().visit(copy.deepcopy(node))))


def assert_case(stmt: ast.Assert, param: str | None = None, where: str = "") -> Case:
    """One assert -> an ``expr`` case (``X == literal``, decided outside) or a ``bool`` case."""
    test = stmt.test
    if isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq):
        sides = (test.left, test.comparators[0])
        for expr_side, lit_side in (sides, sides[::-1]):
            try:
                literal = ast.literal_eval(lit_side)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                continue
            return Case({"kind": "expr", "src": _src(expr_side, param)}, [_data(literal, where)])
    return Case({"kind": "bool", "src": _src(test, param)})


def _parse(src: str, where: str) -> ast.Module:
    try:
        return ast.parse(src)
    except SyntaxError as e:
        raise GroundTruthError(f"not valid Python ({e.msg}, line {e.lineno})", where) from None


def _assert_list(items: list[Any], where: str) -> list[Case]:
    cases = []
    for k, item in enumerate(items):
        at = _at(where, k)
        if not isinstance(item, str) or not item.strip():
            raise GroundTruthError("not a code string", at)
        body = _parse(item, at).body
        if len(body) == 1 and isinstance(body[0], ast.Assert):
            cases.append(assert_case(body[0], None, at))
        else:
            cases.append(Case({"kind": "exec", "src": _guarded(_parse(item, at))}))
    return cases


# ------------------------------------------------------------------------------ test scripts

# A stand-in for the few pytest names test files use; the sandbox has no pytest. Trusted code.
_PYTEST_SHIM = """
class _Or1Raises:
    def __init__(self, expected, match=None):
        self.expected, self.match, self.value = expected, match, None

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is None:
            raise AssertionError(f"DID NOT RAISE {self.expected}")
        if not issubclass(kind, self.expected):
            return False
        if self.match is not None:
            import re
            if not re.search(self.match, str(value)):
                raise AssertionError(f"{self.match!r} not found in {str(value)!r}")
        self.value = value
        return True


class _Or1Approx:
    def __init__(self, expected, rel=None, abs=None):
        self.expected = expected
        self.rel = 1e-6 if rel is None else rel
        self.abs = 1e-12 if abs is None else abs

    def _close(self, a, b):
        if type(b) in (list, tuple):
            return type(a) in (list, tuple) and len(a) == len(b) and all(
                self._close(x, y) for x, y in zip(a, b))
        if type(b) is dict:
            return type(a) is dict and a.keys() == b.keys() and all(
                self._close(a[k], b[k]) for k in b)
        if type(a) in (int, float) and type(b) in (int, float):
            return a == b or abs(a - b) <= max(self.rel * abs(b), self.abs)
        return a == b

    def __eq__(self, other):
        return self._close(other, self.expected)

    __hash__ = None


class _Or1Mark:
    def __getattr__(self, name):
        return lambda *a, **k: (lambda f: f)


class pytest:
    approx = _Or1Approx
    mark = _Or1Mark()

    @staticmethod
    def raises(expected, *args, match=None, **kwargs):
        ctx = _Or1Raises(expected, match)
        if not args:
            return ctx
        with ctx:
            args[0](*args[1:], **kwargs)
        return ctx

    @staticmethod
    def fixture(*a, **k):
        return a[0] if len(a) == 1 and callable(a[0]) and not k else (lambda f: f)

    @staticmethod
    def fail(msg=""):
        raise AssertionError(msg)
"""


def _is_pytest_mark(node: ast.expr, name: str | None = None) -> bool:
    """``pytest.mark.<name>`` (any name when None), called or not."""
    target = node.func if isinstance(node, ast.Call) else node
    return (
        isinstance(target, ast.Attribute)
        and isinstance(target.value, ast.Attribute)
        and target.value.attr == "mark"
        and isinstance(target.value.value, ast.Name)
        and target.value.value.id == "pytest"
        and (name is None or target.attr == name)
    )


def _param_sets(fn: ast.FunctionDef, where: str) -> list[str]:
    """The keyword arguments of each call of test ``fn``, as dict displays of its literal
    ``pytest.mark.parametrize`` sets (stacked ones multiply); ``["{}"]`` without any. The
    displays name no function, so nothing the solution defines can change them."""
    positional = fn.args.args
    names = [a.arg for a in positional[: len(positional) - len(fn.args.defaults)]]
    products: list[list[list[str]]] = []
    covered: list[str] = []
    for deco in fn.decorator_list:
        if not (isinstance(deco, ast.Call) and _is_pytest_mark(deco, "parametrize")):
            continue
        if len(deco.args) < 2:
            raise GroundTruthError(f"{fn.name}: parametrize without argument values", where)
        try:
            argnames = ast.literal_eval(deco.args[0])
        except ValueError:
            raise GroundTruthError(f"{fn.name}: parametrize names are not literal", where) from None
        if isinstance(argnames, str):
            argnames = [a.strip() for a in argnames.split(",") if a.strip()]
        values = deco.args[1]
        if not isinstance(values, ast.List | ast.Tuple):
            raise GroundTruthError(f"{fn.name}: parametrize values are not a literal list", where)
        sets = []
        for k, elt in enumerate(values.elts):
            if (
                isinstance(elt, ast.Call)
                and isinstance(elt.func, ast.Attribute)
                and elt.func.attr == "param"
            ):
                elt = (
                    ast.Tuple(elts=list(elt.args), ctx=ast.Load())
                    if len(argnames) > 1
                    else elt.args[0]
                )
            if len(argnames) == 1:
                parts = [elt]
            elif isinstance(elt, ast.Tuple | ast.List) and len(elt.elts) == len(argnames):
                parts = list(elt.elts)
            else:
                raise GroundTruthError(
                    f"{fn.name}: parametrize set {k} is not a literal tuple of {len(argnames)}",
                    where,
                )
            sets.append(
                [f"{n!r}: ({ast.unparse(p)})" for n, p in zip(argnames, parts, strict=True)]
            )
        products.append(sets)
        covered += argnames
    missing = [n for n in names if n not in covered]
    if missing:
        raise GroundTruthError(
            f"{fn.name} takes pytest fixtures ({', '.join(missing)}), which are not supported",
            where,
        )
    return [
        "{" + ", ".join(p for s in combo for p in s) + "}" for combo in itertools.product(*products)
    ]


def _script(src: Any, where: str, prefix: str = "", entry: Any = None) -> Suite:
    """A Python test script: ``def check(candidate)`` (called by ``check(X)`` in the script or
    given ``entry``), ``def test_*()`` functions, or top-level asserts; its imports,
    definitions and assignments are trusted helpers; ``from solution import ...`` names the
    solution's own definitions."""
    if not isinstance(src, str) or not src.strip():
        raise GroundTruthError("empty test code", where)
    module = _parse(src, where)
    helpers: list[str] = [prefix] if prefix else []
    check: ast.FunctionDef | None = None
    tests: list[ast.FunctionDef] = []
    asserts: list[ast.Assert] = []
    rest: list[ast.stmt] = []
    calls: list[str] = []
    aliases: list[str] = []
    uses_pytest = False
    for node in module.body:
        if isinstance(node, ast.FunctionDef) and node.name == "check":
            check = node
        elif isinstance(node, ast.FunctionDef) and node.name.startswith("test"):
            tests.append(node)
        elif (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Name)
            and node.value.func.id == "check"
            and len(node.value.args) == 1
        ):
            calls.append(ast.unparse(node.value.args[0]))
        elif isinstance(node, ast.Assert):
            asserts.append(node)
        elif isinstance(node, ast.ImportFrom) and node.module == "solution":
            continue  # the names come from the solution itself
        elif isinstance(node, ast.ImportFrom) and node.module == "pytest":
            uses_pytest = True
            helpers += [f"{a.asname or a.name} = pytest.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            kept = []
            for a in node.names:
                if a.name == "solution":
                    aliases.append(a.asname or a.name)
                elif a.name == "pytest":
                    uses_pytest = True
                    if a.asname:
                        helpers.append(f"{a.asname} = pytest")
                else:
                    kept.append(a)
            if kept:
                helpers.append(ast.unparse(ast.Import(names=kept)))
        elif isinstance(
            node,
            ast.ImportFrom | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Assign,
        ) or isinstance(node, ast.AnnAssign):
            helpers.append(ast.unparse(node))
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring
        elif isinstance(node, ast.If) and "__main__" in ast.unparse(node.test):
            continue  # pytest.main() and friends
        elif not isinstance(node, ast.Pass):
            rest.append(node)
    if uses_pytest:
        helpers.insert(0, _PYTEST_SHIM)
    cases: list[Case] = []
    schema = "assert_script"
    if check is not None:
        schema = "leetcode"
        if isinstance(entry, str) and entry.strip():
            entry = entry.strip()
            _parse(entry, "entry_point")
        elif calls:
            entry = calls[0]
        else:
            raise GroundTruthError("check(candidate) is never called and no entry_point", where)
        param = check.args.args[0].arg if check.args.args else None
        body = [
            s
            for s in check.body
            if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
            and not isinstance(s, ast.Pass)
        ]
        if param and body and all(isinstance(s, ast.Assert) for s in body):
            cases += [assert_case(s, param, where) for s in body]
        else:
            cases.append(Case({"kind": "exec", "src": _guarded(check), "call": "check"}))
    else:
        entry = None
    if tests:
        schema = "pytest" if check is None else schema
        for fn in tests:
            for kwargs in _param_sets(fn, where):
                plain = ast.FunctionDef(
                    name=fn.name,
                    args=fn.args,
                    body=fn.body,
                    decorator_list=[d for d in fn.decorator_list if not _is_pytest_mark(d)],
                    returns=fn.returns,
                    type_comment=None,
                    lineno=fn.lineno,
                )
                test = {"kind": "exec", "src": _guarded(plain), "run": f"{fn.name}(**{kwargs})"}
                if aliases:
                    test["modules"] = aliases
                cases.append(Case(test))
    cases += [assert_case(s, None, where) for s in asserts]
    if rest:
        code = "\n".join(_guarded(s) for s in rest)
        test = {"kind": "exec", "src": code}
        if aliases:
            test["modules"] = aliases
        cases.append(Case(test))
    if not cases:
        raise GroundTruthError("no check(candidate), test_* function or assert", where)
    return Suite(cases, "\n".join(h for h in helpers if h), entry, schema)


def _looks_like_tests(src: str) -> bool:
    try:
        module = ast.parse(src)
    except SyntaxError:
        return False
    return any(
        isinstance(n, ast.Assert)
        or (isinstance(n, ast.FunctionDef) and (n.name == "check" or n.name.startswith("test")))
        for n in module.body
    )


# ------------------------------------------------------------------------------ layouts


def _taco(gt: Mapping[str, Any], where: str) -> Suite:
    inputs, outputs = gt.get("inputs"), gt.get("outputs")
    for key, value in (("inputs", inputs), ("outputs", outputs)):
        if not isinstance(value, list):
            raise GroundTruthError(f"must be a list, not {type(value).__name__}", _at(where, key))
    if len(inputs) != len(outputs):
        raise GroundTruthError(
            f"{len(inputs)} inputs but {len(outputs)} outputs", _at(where, "outputs")
        )
    fn = gt.get("fn_name")
    cases = []
    for k, (inp, out) in enumerate(zip(inputs, outputs, strict=True)):
        if fn:
            args = inp if isinstance(inp, list) else [inp]
            cases.append(
                Case({"kind": "call", "fn": str(fn), "args": args}, _returns(out, where, k))
            )
        else:
            cases.append(Case({"kind": "stdio", "input": _as_text(inp)}, [_as_text(out)]))
    return Suite(cases, schema="taco_call" if fn else "taco_stdio")


def _returns(out: Any, where: str, k: int) -> list[Any]:
    """Acceptable return values: ``out``, and its only element when APPS-style wrapped."""
    at = _at(_at(where, "outputs"), k)
    expected = [_data(out, at)]
    if isinstance(out, list) and len(out) == 1:
        expected.append(_data(out[0], at))
    return expected


def _code_contests(gt: Mapping[str, Any], where: str) -> Suite:
    cases = []
    for key in ("public_tests", "private_tests", "generated_tests"):
        at = _at(where, key)
        block = _decode_tests(gt.get(key), at)
        if block in ([], None):
            continue
        if not isinstance(block, Mapping):
            raise GroundTruthError("must be {input: [...], output: [...]}", at)
        inputs, outputs = block.get("input") or [], block.get("output") or []
        if not isinstance(inputs, list) or not isinstance(outputs, list):
            raise GroundTruthError("input and output must be lists", at)
        if len(inputs) != len(outputs):
            raise GroundTruthError(f"{len(inputs)} inputs but {len(outputs)} outputs", at)
        for inp, out in zip(inputs, outputs, strict=True):
            cases.append(Case({"kind": "stdio", "input": _as_text(inp)}, [_as_text(out)]))
    return Suite(cases, schema="code_contests")


_CALL_TYPES = ("functional", "function_call", "call")
_STDIO_TYPES = ("stdin", "stdio", "stdin_stdout")


def _test_list(tests: list[Any], func_name: str | None, where: str, schema: str) -> Suite:
    cases = []
    for k, t in enumerate(tests):
        at = _at(where, k)
        if not isinstance(t, Mapping) or "input" not in t or "output" not in t:
            raise GroundTruthError("a test needs an input and an output", at)
        name = _meta(t.get("metadata")).get("func_name") or t.get("fn_name") or func_name
        kind = str(t.get("testtype") or t.get("type") or ("functional" if name else "stdin"))
        if kind in _CALL_TYPES:
            if not name:
                raise GroundTruthError("a functional test without metadata.func_name", at)
            inp, out = t["input"], t["output"]
            try:
                if isinstance(inp, str):  # LiveCodeBench: one JSON value per line
                    args = [json.loads(ln) for ln in inp.split("\n") if ln.strip()]
                else:
                    args = inp if isinstance(inp, list) else [inp]
                out = json.loads(out) if isinstance(out, str) else out
            except ValueError:
                raise GroundTruthError("functional input/output is not JSON", at) from None
            expected = [_data(out, at)]
            if not isinstance(t["output"], str) and isinstance(out, list) and len(out) == 1:
                expected.append(_data(out[0], at))  # PrimeIntellect wraps the return value
            cases.append(Case({"kind": "call", "fn": str(name), "args": args}, expected))
        elif kind in _STDIO_TYPES:
            cases.append(
                Case({"kind": "stdio", "input": _as_text(t["input"])}, [_as_text(t["output"])])
            )
        else:
            raise GroundTruthError(f"unknown test type '{kind}'", _at(at, "testtype"))
    return Suite(cases, schema=schema)


def _list_layout(gt: list[Any], where: str, func_name: str | None = None) -> Suite:
    if not gt:
        return Suite([], schema="test_list")
    if isinstance(gt[0], str):  # each item is then checked to be an assert string
        return Suite(_assert_list(gt, where), schema="assert_case")
    if isinstance(gt[0], Mapping):
        return _test_list(gt, func_name, where, "test_list")
    raise GroundTruthError("a list that is neither assert strings nor test objects", where)


_LCB_KEYS = ("public_test_cases", "private_test_cases", "test_cases")
_CC_KEYS = ("public_tests", "private_tests", "generated_tests")


def _dict_layout(gt: Mapping[str, Any], where: str) -> Suite:
    func_name = _meta(gt.get("metadata")).get("func_name") or gt.get("func_name")
    func_name = func_name or gt.get("fn_name") or None
    if "input_output" in gt:
        at = _at(where, "input_output")
        inner = _decode_tests(gt["input_output"], at)
        if not isinstance(inner, Mapping):
            raise GroundTruthError("must be a JSON object", at)
        if func_name and not inner.get("fn_name"):
            inner = {**inner, "fn_name": func_name}
        return _taco(inner, at)
    if "inputs" in gt or "outputs" in gt:
        return _taco(gt, where)
    if "functional" in gt:
        return _script(gt["functional"], _at(where, "functional"))
    if gt.get("test_code") or (gt.get("test") and gt.get("entry_point")):
        key = "test_code" if gt.get("test_code") else "test"
        entry = gt.get("entry_point")
        if not isinstance(entry, str) or not entry.strip():
            raise GroundTruthError("test_code without an entry_point", _at(where, "entry_point"))
        return _script(gt[key], _at(where, key), entry=entry)
    if "assert_case" in gt:
        items = gt["assert_case"]
        at = _at(where, "assert_case")
        if isinstance(items, str):
            items = _decode_tests(items, at) if items.strip().startswith("[") else [items]
        if not isinstance(items, list):
            raise GroundTruthError("must be a list of strings", at)
        return Suite(_assert_list(items, at), schema="assert_case")
    if any(k in gt for k in _LCB_KEYS):
        cases: list[Case] = []
        for key in _LCB_KEYS:
            at = _at(where, key)
            decoded = _decode_tests(gt.get(key), at)
            if not isinstance(decoded, list):
                raise GroundTruthError("is not a list", at)
            cases += _test_list(decoded, func_name, at, "livecodebench").cases
        return Suite(cases, schema="livecodebench")
    if any(k in gt for k in _CC_KEYS):
        return _code_contests(gt, where)
    if "official_tests" in gt:
        at = _at(where, "official_tests")
        decoded = _decode_tests(gt["official_tests"], at)
        if not isinstance(decoded, list):
            raise GroundTruthError("is not a list", at)
        return _test_list(decoded, func_name, at, "codeforces")
    if "tests" in gt:
        at = _at(where, "tests")
        value = gt["tests"]
        if isinstance(value, str) and _looks_like_tests(value):
            return _script(value, at)
        return _layout(_decode_tests(value, at), at, func_name)
    if isinstance(gt.get("test"), str):
        return _script(gt["test"], _at(where, "test"))
    keys = ", ".join(sorted(str(k) for k in gt)[:8])
    raise GroundTruthError(f"matches no code ground-truth schema (keys: {keys or 'none'})", where)


def _layout(gt: Any, where: str, func_name: str | None = None) -> Suite:
    if isinstance(gt, list):
        return _list_layout(gt, where, func_name)
    if isinstance(gt, Mapping):
        return _dict_layout(gt, where)
    if isinstance(gt, str) and _looks_like_tests(gt):
        return _script(gt, where)
    raise GroundTruthError(f"matches no code ground-truth schema (a {type(gt).__name__})", where)


def _options(gt: Any, suite: Suite) -> None:
    """The row's own ``import_prefix``, ``checker`` and ``tolerance`` into ``suite``."""
    if not isinstance(gt, Mapping):
        return
    prefix = gt.get("import_prefix")
    if prefix is not None and not isinstance(prefix, str):
        raise GroundTruthError("must be a string", "import_prefix")
    if prefix and prefix.strip():
        suite.prefix = prefix + ("\n" + suite.prefix if suite.prefix else "")
        suite.own_prefix = True
    checker = gt.get("checker")
    if checker is not None:
        if checker not in CHECKERS:
            raise GroundTruthError(
                f"unknown checker {checker!r} (one of {', '.join(CHECKERS)})", "checker"
            )
        suite.checker = checker
    tol = gt.get("tolerance")
    if tol is not None:
        if isinstance(tol, bool) or not isinstance(tol, int | float) or not 0 <= tol < 1:
            raise GroundTruthError(f"must be a number in [0, 1), got {tol!r}", "tolerance")
        suite.tolerance = float(tol)


def parse_ground_truth(gt: Any) -> Suite:
    """The test suite of a code row's ``reward_model.ground_truth`` (any layout above), or
    :class:`GroundTruthError` naming the field at fault. Tests are numbered in order
    (``test["i"]``)."""
    if isinstance(gt, bytes):
        gt = gt.decode("utf-8", "replace")
    if isinstance(gt, str):
        try:
            gt = json.loads(gt)
        except ValueError:
            if not _looks_like_tests(gt):
                raise GroundTruthError(
                    "a string that is neither JSON nor Python test code "
                    "(no check(candidate), test_* function or assert)"
                ) from None
    suite = _layout(gt, "")
    _options(gt, suite)
    if isinstance(gt, Mapping) and isinstance(gt.get("tests"), Mapping):
        _options(gt["tests"], suite)
    if not suite.cases:
        raise GroundTruthError("the ground truth has no tests")
    for i, case in enumerate(suite.cases):
        case.test["i"] = i
    return suite


# ------------------------------------------------------------------------------ checkers

_NUMBER_RE = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\Z")
_INT_RE = re.compile(r"([+-]?)0*(\d+)\Z")


def _decimal(tok: str) -> Decimal | None:
    if not _NUMBER_RE.match(tok):
        return None
    try:
        return Decimal(tok)
    except (InvalidOperation, ValueError):
        return None


def _same_decimal(a: str, b: str) -> bool:
    """Both plain decimal numbers of the same value (``1.0`` and ``1``, ``007`` and ``7``)."""
    x, y = _decimal(a), _decimal(b)
    if x is None or y is None:
        return False
    try:
        return x == y
    except InvalidOperation:
        return False


def _same_integer(a: str, b: str) -> bool | None:
    """Whether two integer tokens are equal (no conversion, so any length); None if either is
    not an integer."""
    ma, mb = _INT_RE.match(a), _INT_RE.match(b)
    if not ma or not mb:
        return None
    sa = "" if ma.group(2) == "0" else ma.group(1).replace("+", "")
    sb = "" if mb.group(2) == "0" else mb.group(1).replace("+", "")
    return (sa, ma.group(2)) == (sb, mb.group(2))


def _float(tok: str) -> float | None:
    if not _NUMBER_RE.match(tok):
        return None
    try:
        x = float(tok)
    except (ValueError, OverflowError):
        return None
    return x if math.isfinite(x) else None


def _token_match(checker: str, got: str, want: str, tol: float) -> bool:
    if got == want:
        return True
    if checker == "float_tol":
        same_int = _same_integer(got, want)
        if same_int is not None:
            return same_int
        x, y = _float(got), _float(want)
        if x is None or y is None:
            return False
        if _INT_RE.match(want):  # an integer answer: a decimal for it is off by at most ``tol``
            return abs(x - y) <= tol
        return abs(x - y) <= tol * max(1.0, abs(y))
    if _same_decimal(got, want):
        return True
    return checker == "case_insensitive" and got.casefold() == want.casefold()


def _exact_lines(text: str) -> list[str]:
    lines = [ln.rstrip() for ln in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def output_matches(
    checker: str, got: str, expected: str, tolerance: float = DEFAULT_TOLERANCE
) -> bool:
    """Whether a program's stdout ``got`` is accepted for ``expected`` under ``checker``:

    * ``exact``: the same lines, ignoring trailing whitespace on each line and blank lines at
      the end;
    * ``tokens``: the same whitespace-separated tokens, where two plain decimal numbers are
      equal when their values are (``1.0`` = ``1``; ``0.33333`` != ``0.333333``);
    * ``case_insensitive``: as ``tokens``, letters compared without case (``YES`` = ``yes``);
    * ``float_tol``: as ``tokens``, integers compared exactly and other numbers accepted when
      ``|got - expected| <= tolerance * max(1, |expected|)`` (absolute or relative error); a
      decimal printed for an integer answer only within the absolute ``tolerance``
      (``2.0000000001`` for ``2``, never ``1000000008.0`` for ``1000000007``).
    """
    if checker == "exact":
        return _exact_lines(got) == _exact_lines(expected)
    if checker not in CHECKERS:
        raise ValueError(f"unknown checker {checker!r}")
    gt, et = got.split(), expected.split()
    return len(gt) == len(et) and all(
        _token_match(checker, a, b, tolerance) for a, b in zip(gt, et, strict=True)
    )


def stdout_matches(got: str, expected: str) -> bool:
    """``float_tol`` with the default 1e-6 tolerance (the competition default)."""
    return output_matches("float_tol", got, expected, DEFAULT_TOLERANCE)


def data_equal(a: Any, b: Any, *, tol: float = 1e-9, fold: bool = False) -> bool:
    """Equality of a plain-data value ``a`` to the expected ``b`` (from :func:`to_data`):
    floats within ``tol`` (relative or absolute; a float for an integer ``b`` within the
    absolute ``tol`` only), numbers by value, containers element by element; with ``fold``,
    strings compared without case."""
    if isinstance(a, float) or isinstance(b, float):
        if isinstance(a, int | float) and isinstance(b, int | float):
            if isinstance(a, bool) or isinstance(b, bool):
                return False
            nan_a = isinstance(a, float) and math.isnan(a)
            nan_b = isinstance(b, float) and math.isnan(b)
            if nan_a or nan_b:  # (an int has no NaN, and may be too large for a float)
                return nan_a and nan_b
            if isinstance(b, int):  # an integer answer: a float for it is off by at most ``tol``
                try:
                    return math.isfinite(a) and abs(a - b) <= tol
                except OverflowError:
                    return False
            try:
                return math.isclose(a, b, rel_tol=tol, abs_tol=tol)
            except OverflowError:  # an int beyond any float: no float is close to it
                return False
        return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(
            data_equal(x, y, tol=tol, fold=fold) for x, y in zip(a, b, strict=True)
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(data_equal(a[k], b[k], tol=tol, fold=fold) for k in a)
    if isinstance(a, list | dict) or isinstance(b, list | dict):
        return False
    if fold and isinstance(a, str) and isinstance(b, str):
        return a.casefold() == b.casefold()
    return type(a) is type(b) and a == b


def value_matches(
    checker: str, got: Any, expected: Any, tolerance: float = DEFAULT_TOLERANCE
) -> bool:
    """Whether a returned value is accepted: :func:`data_equal` (floats within 1e-9), with
    floats within ``tolerance`` under ``float_tol`` and strings without case under
    ``case_insensitive``."""
    if checker == "float_tol":
        return data_equal(got, expected, tol=tolerance)
    return data_equal(got, expected, fold=checker == "case_insensitive")
