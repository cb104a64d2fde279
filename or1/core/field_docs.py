"""One-line descriptions of config keys, read from the schema dataclasses' own source.

A field is described, in this order of precedence, by

1. a string literal on the line after it (an attribute docstring)::

       lr: float = 1e-6
       \"\"\"AdamW learning rate.\"\"\"

2. a trailing comment on its line (``top_k: int = -1  # <= 0: off``), or
3. a ````name````: text segment of its class's docstring (``\"\"\"``path``: a local folder\"\"\"``).

Inherited fields take the description of the class that declares them. The config reference
(:mod:`or1.commands.config_docs`), ``or1-train --help`` and a test that every key has a description all
read it from here, so a description lives once, next to its field.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import io
import re
import textwrap
import tokenize

_NAME = r"``[A-Za-z_][A-Za-z0-9_]*``"
_KEY_SEGMENT = re.compile(rf"{_NAME}(?:\s*(?:/|,|\band\b)\s*{_NAME})*\s*(?:\([^)]*\))?\s*:(?!`)")
"""``name``: or ``a`` / ``b``, ``c`` and ``d`` (a remark): introduce a description."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


@functools.cache
def _declared(cls: type) -> dict[str, str]:
    """Descriptions of the fields ``cls`` itself declares (not inherited ones)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    tree = ast.parse(source)
    node = next((n for n in tree.body if isinstance(n, ast.ClassDef)), None)
    if node is None:
        return {}
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    out: dict[str, str] = {}
    body = node.body
    for i, stmt in enumerate(body):
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        name = stmt.target.id
        after = body[i + 1] if i + 1 < len(body) else None
        if (
            isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            out[name] = _one_line(after.value.value)
            continue
        for line in range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1):
            if comments.get(line):
                out[name] = comments[line]
                break
    for name, text in _class_doc_segments(inspect.getdoc(cls) or "").items():
        out.setdefault(name, text)
    return out


def _class_doc_segments(doc: str) -> dict[str, str]:
    """``{key: text}`` for every ````key````: text segment of a class docstring; a segment
    runs to the next such segment or to the end of its sentence group (``;`` or ``.``)."""
    text = _one_line(doc)
    matches = list(_KEY_SEGMENT.finditer(text))
    out: dict[str, str] = {}
    if not matches:
        return out
    for m, nxt in zip(matches, [*matches[1:], None], strict=True):
        end = nxt.start() if nxt else len(text)
        segment = text[m.end() : end].strip().rstrip(";,").strip()
        if segment.endswith(" and"):
            segment = segment[: -len(" and")]
        names = re.findall(r"``([A-Za-z_][A-Za-z0-9_]*)``", m.group(0))
        for name in names:
            out.setdefault(name, segment)
    return out


def field_docs(schema: type) -> dict[str, str]:
    """``{field name: one-line description}`` of a dataclass schema, inherited fields
    included; a field without any description is absent."""
    out: dict[str, str] = {}
    for cls in reversed(schema.__mro__):
        if dataclasses.is_dataclass(cls):
            out.update(_declared(cls))
    return {f.name: out[f.name] for f in dataclasses.fields(schema) if out.get(f.name)}


def undocumented(schema: type) -> list[str]:
    """The fields of ``schema`` that have no description."""
    docs = field_docs(schema)
    return [f.name for f in dataclasses.fields(schema) if f.name not in docs]
