"""In-sandbox driver for function-style tests: it runs INSIDE the sandbox, in the same process
as the model's code, and reports plain data. Standard library only; never imported by or1.

Protocol: argv ``FD_OUT``. One JSON job on stdin (read before any model code runs):
``{"nonce", "prefix", "solution", "entry", "tests": [...]}``. For every test it writes
``{"n": nonce, "s": i}`` when test ``i`` starts and ``{"n": nonce, "i": i, ...}`` when it ends
to ``FD_OUT`` (one JSON document per line). A test record carries either ``value`` (the data
the call / expression produced, encoded by :func:`to_data`) or ``ok`` (for ``bool``/``exec``
tests: whether the expression was exactly true / the code raised nothing), or ``error``.

Verdicts on values are not taken here: the harness outside the sandbox compares them with
expected answers it never sends in. Only ``bool``/``exec`` tests (asserts that cannot be
split into "expression == literal") are decided in this process; their results carry the
per-run nonce.
"""

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
    prefix = job.get("prefix") or ""
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

    ns = {"__name__": "solution", "__builtins__": builtins}
    setup_error = None
    try:
        exec(compile(prefix, "<prefix>", "exec"), ns)
        exec(compile(job["solution"], "solution.py", "exec"), ns)
    except BaseException as e:  # noqa: BLE001 - SystemExit included: exiting is not passing
        setup_error = f"the code failed to load: {_type(e).__name__}: {e}"
    # Trusted helpers win over the solution's names of the same name.
    for k, v in trusted_ns.items():
        if k != "__builtins__":
            ns[k] = v

    def checked(value):
        to_data(value, trusted_types)
        return value

    def resolve(name):
        sol = ns.get("Solution")
        if _isinstance(sol, type) and hasattr(sol, name):
            return getattr(sol(), name)
        if name in ns:
            return ns[name]
        raise NameError(f"no function '{name}' (nor Solution.{name}) defined")

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

            env = dict(ns)
            env.update(trusted_ns)
            env["__builtins__"] = pristine
            env["candidate"] = candidate
            env["__or1_data__"] = checked
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
