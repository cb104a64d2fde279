"""In-sandbox driver for function-style tests: it runs INSIDE the sandbox, in the same process
as the model's code, and reports plain data. Standard library only; never imported by or1.

Protocol: argv ``FD_OUT``. One JSON job on stdin (read before any model code runs):
``{"nonce", "prefix", "solution", "entry", "tests": [...]}``. ``prefix`` is trusted test code
(run in the tests' namespace and before the solution), optionally preceded by the solution's
import prefix and :data:`HEADER_END`: that part runs only before the solution, and its names
are neither the tests' nor the solution's own (a call test never resolves to one of them).
For every test it writes ``{"n": nonce, "s": i}`` when test ``i`` starts and
``{"n": nonce, "i": i, ...}`` when it ends to ``FD_OUT`` (one JSON document per line). A test record carries either ``value`` (the data
the call / expression produced, encoded by :func:`to_data`) or ``ok`` (for ``bool``/``exec``
tests: whether the expression was exactly true / the code raised nothing), or ``error``. An
``exec`` test runs ``src``, then calls ``check(candidate)`` (``call``) or runs ``run`` (a pytest
function's call); ``modules`` names ``import solution`` aliases.

Verdicts on values are not taken here: the harness outside the sandbox compares them with
expected answers it never sends in. Only ``bool``/``exec`` tests (asserts that cannot be
split into "expression == literal") are decided in this process; their results carry the
per-run nonce.
"""

import _ast  # the C module: ``ast`` itself costs milliseconds to import
import _operator
import builtins
import json
import os
import sys

_type = type
_len = len
_isinstance = isinstance
_repr = repr
_sorted = sorted
_dumps = json.dumps
_write = os.write
_PLAIN = (int, float, str, bool, _type(None))
_MAX_ITEMS = 1_000_000
_FunctionType = _type(lambda: None)
_Namespace = _type(sys.implementation)  # types.SimpleNamespace
HEADER_END = "\n# --- or1: end of the solution's import prefix ---\n"


class NotData(Exception):
    pass


def _encode(value, trusted, depth, seen, budget):
    budget[0] -= 1
    if budget[0] < 0:
        raise NotData("the returned value is too large")
    if depth > 200:
        raise NotData("the returned value is nested too deeply")
    t = _type(value)
    if t in _PLAIN:
        return value
    if t is list or t is tuple:
        return [_encode(v, trusted, depth + 1, seen, budget) for v in value]
    if t is dict:
        items = [
            (
                _encode(k, trusted, depth + 1, seen, budget),
                _encode(v, trusted, depth + 1, seen, budget),
            )
            for k, v in value.items()
        ]
        if all(_type(k) is str for k, _ in items):
            return {k: v for k, v in items}
        return {"__dict__": [[k, v] for k, v in items]}
    if t is set or t is frozenset:
        enc = [_encode(v, trusted, depth + 1, seen, budget) for v in value]
        return {"__set__": _sorted(enc, key=lambda x: _dumps(x, sort_keys=True))}
    if t in trusted:  # an instance of a class the trusted prefix defined (ListNode, TreeNode)
        if id(value) in seen:
            return {"__ref__": t.__name__}
        seen.add(id(value))
        attrs = object.__getattribute__(value, "__dict__")
        if _type(attrs) is not dict:
            raise NotData(f"a {t.__name__} object without plain attributes")
        return {
            "__object__": t.__name__,
            "attrs": _encode(dict(attrs), trusted, depth + 1, seen, budget),
        }
    raise NotData(f"the code returned a {t.__name__} object, not data")


def to_data(value, trusted=()):
    """Plain-data encoding of a value (JSON-able), or ``NotData``. Only exact built-in types
    (and instances of classes the trusted prefix defined) pass: an object with a custom
    ``__eq__`` is not data."""
    return _encode(value, trusted, 0, set(), [_MAX_ITEMS])


def bound_names(src):
    """Names the code binds at module level (definitions, assignments, imports), read from
    its syntax tree without running it; empty when it does not parse."""
    try:
        tree = compile(src, "solution.py", "exec", _ast.PyCF_ONLY_AST)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set()
    names = set()
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if _isinstance(node, (_ast.FunctionDef, _ast.AsyncFunctionDef, _ast.ClassDef)):
            names.add(node.name)
            continue
        if _isinstance(node, (_ast.Import, _ast.ImportFrom)):
            for a in node.names:
                if a.name != "*":
                    names.add(a.asname or a.name.split(".")[0])
            continue
        if _isinstance(node, _ast.Name):
            if _isinstance(node.ctx, _ast.Store):
                names.add(node.id)
            continue
        if _isinstance(node, (_ast.Lambda, _ast.comprehension)):
            continue  # their own scope
        for name in node._fields:
            value = getattr(node, name, None)
            for child in value if _isinstance(value, list) else (value,):
                if _isinstance(child, (_ast.stmt, _ast.expr, _ast.excepthandler, _ast.withitem)):
                    todo.append(child)
    return names


_COMPARE = {
    "==": _operator.eq,
    "!=": _operator.ne,
    "<": _operator.lt,
    "<=": _operator.le,
    ">": _operator.gt,
    ">=": _operator.ge,
    "in": lambda a, b: _operator.contains(b, a),
    "not in": lambda a, b: not _operator.contains(b, a),
}
# Built-in views compared by their contents (``d.keys() == {"a"}``): C types, no custom __eq__.
_VIEWS = (_type({}.keys()), _type({}.values()), _type({}.items()), range)


def _comparable(value, trusted):
    """Whether a test may compare ``value``: plain data (or a trusted class's instance), or a
    built-in view of such data; an instance of a class the solution defined is the solution's
    to compare (see :func:`compare`)."""
    try:
        to_data(value, trusted)
        return True
    except NotData:
        pass
    if _type(value) in _VIEWS:
        try:
            to_data(list(value), trusted)
            return True
        except NotData:
            return False
    return False


def _solutions_object(value, trusted):
    t = _type(value)
    return t not in trusted and getattr(t, "__module__", None) == "solution"


def compare(values, ops, trusted=()):
    """A comparison chain of test code (``a == b``, ``x in ys``, ``lo < v <= hi``) whose
    operands are all data: a custom ``__eq__`` / ``__lt__`` of the solution's (an object equal
    to everything) never decides a test. The one exception: two objects of classes the
    solution itself defined (a problem that asks for ``__eq__``) compare as they say."""
    result = True
    for k, op in enumerate(ops):
        a, b = values[k], values[k + 1]
        if not (_comparable(a, trusted) and _comparable(b, trusted)):
            if not (_solutions_object(a, trusted) and _solutions_object(b, trusted)):
                bad = b if _comparable(a, trusted) else a
                raise NotData(f"a test compared a {_type(bad).__name__} object, not data")
        result = _COMPARE[op](a, b)
        if _type(result) is not bool:
            result = bool(result) if _comparable(result, trusted) else False
        if not result:
            return False
    return result


def truth(value, trusted=()):
    """An assert's condition that is not a comparison: data only (no ``__bool__`` of the
    solution's)."""
    if _type(value) is bool:
        return value
    if not _comparable(value, trusted):
        raise NotData(f"a test asserted a {_type(value).__name__} object, not data")
    return bool(value)


def _defined_by_tests(value):
    return (
        _isinstance(value, (type, _FunctionType))
        and getattr(value, "__module__", None) == "or1_tests"
    )


def main():
    fd_out = int(sys.argv[1])
    raw = sys.stdin.buffer.read()
    job = json.loads(raw)
    del raw
    nonce = job.pop("nonce")
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    sys.stdin = open(os.devnull)  # noqa: SIM115 - lives as long as the process

    def emit(record):
        record["n"] = nonce
        try:
            line = _dumps(record, allow_nan=True)
        except (TypeError, ValueError) as e:  # e.g. an int too long to print
            line = _dumps({"n": nonce, "i": record.get("i"), "error": f"unencodable result: {e}"})
        data = (line + "\n").encode()
        while data:
            data = data[_write(fd_out, data) :]

    pristine = dict(builtins.__dict__)
    trusted_ns = {"__name__": "or1_tests", "__builtins__": pristine}
    header, sep, prefix = (job.get("prefix") or "").partition(HEADER_END)
    if not sep:
        header, prefix = "", header
    trusted_types = ()
    try:
        exec(compile(prefix, "<prefix>", "exec"), trusted_ns)
        trusted_types = tuple(
            v for v in trusted_ns.values() if _isinstance(v, type) and v.__module__ == "or1_tests"
        )
    except BaseException as e:  # noqa: BLE001 - reported, the tests then fail
        for t in job["tests"]:
            emit({"i": t["i"], "error": f"test prefix failed: {_type(e).__name__}: {e}"})
        return

    solution = job["solution"]
    written = bound_names(solution)
    ns = {"__name__": "solution", "__builtins__": builtins}
    setup_error = None
    header_names = set()
    before = {}
    try:
        exec(compile(header, "<imports>", "exec"), ns)
        header_names = set(ns)
        exec(compile(prefix, "<prefix>", "exec"), ns)
        before = dict(ns)
        exec(compile(solution, "solution.py", "exec"), ns)
    except BaseException as e:  # noqa: BLE001 - SystemExit included: exiting is not passing
        setup_error = f"the code failed to load: {_type(e).__name__}: {e}"
    # The solution's own names: what it bound or rebound, not what a prefix left there.
    missing = object()
    own = {k: v for k, v in ns.items() if k in written or before.get(k, missing) is not v}
    hidden = {k for k in header_names if k not in own and k not in trusted_ns}
    # Classes and functions the trusted prefix defined win over the solution's of the same
    # name (its ListNode is the tests' ListNode); imported names stay the solution's.
    for k, v in trusted_ns.items():
        if _defined_by_tests(v):
            ns[k] = v

    def checked(value):
        to_data(value, trusted_types)
        return value

    def resolve(name):
        sol = own.get("Solution")
        if _isinstance(sol, type) and hasattr(sol, name):
            return getattr(sol(), name)
        if name in own:
            return own[name]
        raise NameError(f"the code defines no function '{name}' (nor Solution.{name})")

    candidate = None
    entry = job.get("entry")
    for t in job["tests"]:
        i = t["i"]
        emit({"s": i})
        if setup_error is not None:
            emit({"i": i, "error": setup_error})
            continue
        try:
            kind = t["kind"]
            if kind == "call":
                fn = resolve(t["fn"])
                value = fn(*t.get("args", []), **t.get("kwargs", {}))
                emit({"i": i, "value": to_data(value, trusted_types)})
                continue
            if candidate is None and entry:
                real = eval(compile(entry, "<entry>", "eval"), ns)

                def candidate(*a, _real=real, **k):
                    return checked(_real(*a, **k))

            # The tests see the solution's names, but never one that shadows a built-in (a
            # global ``abs`` returning 0 would pass ``assert abs(f(x) - y) < 1e-9``).
            env = {k: v for k, v in ns.items() if k not in hidden and k not in pristine}
            env.update(trusted_ns)
            env["__builtins__"] = pristine
            env["candidate"] = candidate
            env["__or1_data__"] = checked
            env["__or1_compare__"] = lambda values, ops: compare(values, ops, trusted_types)
            env["__or1_truth__"] = lambda value: truth(value, trusted_types)
            for alias in t.get("modules", ()):  # ``import solution`` in a test file
                env[alias] = _Namespace(**{k: v for k, v in own.items() if _isinstance(k, str)})
            if kind == "expr":
                value = eval(compile(t["src"], "<test>", "eval"), env)
                emit({"i": i, "value": to_data(value, trusted_types)})
            elif kind == "bool":
                value = eval(compile(t["src"], "<test>", "eval"), env)
                if _type(value) is not bool:
                    to_data(value, trusted_types)
                    value = bool(value)
                emit({"i": i, "ok": value is True})
            elif kind == "exec":
                exec(compile(t["src"], "<test>", "exec"), env)
                if t.get("call"):
                    env[t["call"]](candidate)
                if t.get("run"):
                    exec(compile(t["run"], "<test>", "exec"), env)
                emit({"i": i, "ok": True})
            else:
                emit({"i": i, "error": f"unknown test kind {kind!r}"})
        except AssertionError:
            emit({"i": i, "ok": False, "error": "assertion failed"})
        except NotData as e:
            emit({"i": i, "error": str(e)})
        except BaseException as e:  # noqa: BLE001 - SystemExit included
            msg = f"{_type(e).__name__}: {e}"
            emit({"i": i, "error": msg[:300]})
    emit({"done": True})


if __name__ == "__main__":
    main()
