"""The ``normalise`` pass: map common public dataset schemas into the OR1 row schema.

Schemas, detected per input file from the columns its rows have (or forced with
``data_pass.normalise.schema``):

==========  =============================================================  ==================
schema      columns read                                                   becomes
==========  =============================================================  ==================
``or1``     ``prompt`` (messages or a string), ``ability``,                the row, with the
            ``reward_model.ground_truth``, ``data_source``?, ``extra_info``?  ground truth as a
                                                                           string
``qa``      ``question`` | ``problem``, ``answer`` | ``final_answer``,     a math row
            ``ability``?
``taco``    ``question``, ``input_output`` (TACO / APPS: JSON of           a code row; the
            ``inputs``, ``outputs``, ``fn_name``?), ``solutions``?,         first solution is
            ``starter_code``?                                              the reference
``leetcode`` ``problem_description`` | ``query``, ``test`` (a              a code row
            ``check(candidate)`` function), ``entry_point``, ``prompt``
            (the import prefix)?, ``completion`` (the reference)?,
            ``starter_code``?
==========  =============================================================  ==================

Every output row has ``data_source``, ``prompt`` (chat messages), ``ability`` (``math`` |
``code``), ``reward_model`` (``style``, ``ground_truth`` as a string: JSON for code tests),
``extra_info`` (the input's, with ``index`` = the row's index in its file when it has none, plus
``reference_solution`` for code rows that have one), and
keeps ``uid`` / ``provenance`` (with ``schema`` added). A file whose columns fit no schema is an
error naming the file and its columns; a row that cannot be mapped (an empty question, no
answer, unreadable tests) is dropped into the report with the reason and the raw row, or, with
``strict: true``, is an error naming the file and row.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from or1.core.config import DataPassConfig
from or1.core.errors import ConfigError, DataError
from or1.core.interfaces import DataPass, DataPassContext
from or1.core.types import DroppedRow, PassResult

SCHEMAS: dict[str, list[tuple[str, ...]]] = {
    # schema -> required column groups (any one name of each group)
    "or1": [("prompt",), ("reward_model",)],
    "taco": [("question",), ("input_output",)],
    "leetcode": [("problem_description", "query"), ("test",), ("entry_point",)],
    "qa": [("question", "problem"), ("answer", "final_answer")],
}
"""Detection order: the first schema whose every column group is present in the file wins."""

ABILITIES = ("math", "code")
CODE_SUFFIX = (
    "\n\nWrite a Python program that solves the problem and give it in a single ```python code "
    "block at the end of your answer."
)


@dataclass
class NormaliseConfig(DataPassConfig):
    """``schema``: ``auto`` (detect per file) or one of ``or1``, ``qa``, ``taco``,
    ``leetcode`` for every file; ``math_suffix`` / ``code_suffix``: appended to the question
    of ``qa`` / ``taco`` / ``leetcode`` rows (``or1`` prompts are kept as they are);
    ``data_source``: the ``data_source`` of mapped rows that have none (None: the file stem);
    ``strict``: a row that cannot be mapped is an error instead of a reject."""

    name: str = "normalise"
    schema: str = "auto"
    math_suffix: str = ""
    code_suffix: str = CODE_SUFFIX
    data_source: str | None = None
    strict: bool = False


class Reject(Exception):
    """A row that cannot be mapped: ``reason`` (a short code) and a message."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _text(row: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = row.get(key)
        if isinstance(value, str):
            return value
    return None


def _required_text(row: dict[str, Any], keys: tuple[str, ...]) -> str:
    value = _text(row, keys)
    if value is None:
        present = [k for k in keys if k in row and row[k] is not None]
        if present:
            raise Reject("bad_column", f"column '{present[0]}' is not a string")
        raise Reject("missing_column", f"missing column '{' | '.join(keys)}'")
    if not value.strip():
        raise Reject("empty_column", f"empty '{keys[0]}'")
    return value


def _json(value: Any, column: str) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise Reject("bad_column", f"column '{column}' is not valid JSON ({exc})") from None
    return value


def ground_truth_string(value: Any) -> str:
    """A ground truth as one string: strings as they are, numbers as text, anything else
    (code tests, lists of answers) as JSON, which both verifiers read."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value)


def _extra(row: dict[str, Any]) -> dict[str, Any]:
    extra = row.get("extra_info")
    if extra is None:
        return {}
    if isinstance(extra, dict):
        return dict(extra)
    return {"extra_info": json.dumps(extra, default=str)}


def _question(question: str, starter: Any, suffix: str) -> str:
    text = question.rstrip()
    if isinstance(starter, str) and starter.strip():
        text += f"\n\nStarter code:\n```python\n{starter.rstrip()}\n```"
    return text + suffix


class Normalise(DataPass):
    """Maps rows of the known public schemas into the OR1 row schema (module docstring)."""

    raw_input = True

    def __init__(self, cfg: Any, ctx: Any = None) -> None:
        self.cfg = cfg
        if cfg.schema != "auto" and cfg.schema not in SCHEMAS:
            raise ConfigError(
                f"data_pass.normalise.schema={cfg.schema}: not one of auto, {', '.join(SCHEMAS)}"
            )

    # --------------------------------------------------------------------- detection

    @staticmethod
    def detect(columns: set[str]) -> str | None:
        """The first schema of :data:`SCHEMAS` whose column groups are all in ``columns``."""
        for name, groups in SCHEMAS.items():
            if all(any(c in columns for c in group) for group in groups):
                return name
        return None

    def _file_schema(self, path: str, rows: list[dict[str, Any]]) -> str:
        if self.cfg.schema != "auto":
            return self.cfg.schema
        columns = {k for r in rows for k, v in r.items() if v is not None} - {"uid", "provenance"}
        found = self.detect(columns)
        if found is None:
            first = sorted(k for k in rows[0] if k not in ("uid", "provenance"))
            expected = "; ".join(
                f"{name} ({', '.join(' | '.join(g) for g in groups)})"
                for name, groups in SCHEMAS.items()
            )
            raise DataError(
                f"{path}: row 0: unknown schema (columns: {', '.join(first) or 'none'}); "
                f"expected the columns of one of: {expected}"
            )
        return found

    # ------------------------------------------------------------------------ mapping

    def _source(self, row: dict[str, Any], path: str) -> str:
        ds = row.get("data_source")
        if isinstance(ds, str) and ds:
            return ds
        if self.cfg.data_source:
            return str(self.cfg.data_source)
        from pathlib import Path

        return Path(path).stem

    def map_or1(self, row: dict[str, Any]) -> dict[str, Any]:
        prompt = row.get("prompt")
        if isinstance(prompt, str):
            if not prompt.strip():
                raise Reject("empty_column", "empty 'prompt'")
            prompt = [{"role": "user", "content": prompt}]
        elif isinstance(prompt, list) and prompt:
            msgs = []
            for m in prompt:
                if not (
                    isinstance(m, dict)
                    and isinstance(m.get("role"), str)
                    and isinstance(m.get("content"), str)
                ):
                    raise Reject("bad_column", "'prompt' messages must be {role, content} strings")
                msgs.append({"role": m["role"], "content": m["content"]})
            if not any(m["role"] == "user" and m["content"].strip() for m in msgs):
                raise Reject("empty_column", "'prompt' has no non-empty user message")
            prompt = msgs
        else:
            raise Reject("bad_column", "'prompt' must be a string or a non-empty list of messages")
        ability = row.get("ability")
        if not isinstance(ability, str):
            raise Reject("missing_column", "missing column 'ability'")
        rm = row.get("reward_model")
        gt = rm.get("ground_truth") if isinstance(rm, dict) else None
        if gt is None or (isinstance(gt, str) and not gt.strip()):
            raise Reject("missing_column", "missing 'reward_model.ground_truth'")
        style = rm.get("style") if isinstance(rm.get("style"), str) else "rule"
        return {
            "prompt": prompt,
            "ability": ability.strip().lower(),
            "reward_model": {"style": style, "ground_truth": ground_truth_string(gt)},
            "extra_info": _extra(row),
        }

    def map_qa(self, row: dict[str, Any]) -> dict[str, Any]:
        question = _required_text(row, ("question", "problem"))
        answer = row.get("answer", row.get("final_answer"))
        if answer is None or (isinstance(answer, str) and not answer.strip()):
            raise Reject("missing_column", "missing column 'answer'")
        ability = row.get("ability") if isinstance(row.get("ability"), str) else "math"
        return {
            "prompt": [{"role": "user", "content": question.rstrip() + self.cfg.math_suffix}],
            "ability": ability.strip().lower(),
            "reward_model": {"style": "rule", "ground_truth": ground_truth_string(answer)},
            "extra_info": _extra(row),
        }

    def map_taco(self, row: dict[str, Any]) -> dict[str, Any]:
        question = _required_text(row, ("question",))
        if row.get("input_output") is None:
            raise Reject("missing_column", "missing column 'input_output'")
        tests = _json(row["input_output"], "input_output")
        if (
            not isinstance(tests, dict)
            or not isinstance(tests.get("inputs"), list)
            or not isinstance(tests.get("outputs"), list)
        ):
            raise Reject("bad_tests", "'input_output' must hold lists 'inputs' and 'outputs'")
        gt = {"inputs": tests["inputs"], "outputs": tests["outputs"]}
        if tests.get("fn_name"):
            gt["fn_name"] = tests["fn_name"]
        extra = _extra(row)
        solutions = (
            _json(row.get("solutions"), "solutions") if row.get("solutions") is not None else []
        )
        if isinstance(solutions, str):
            solutions = [solutions]
        first = next((s for s in solutions or [] if isinstance(s, str) and s.strip()), None)
        if first is not None:
            extra["reference_solution"] = first
        return self._code_row(question, row.get("starter_code"), gt, extra)

    def _code_row(
        self, question: str, starter: Any, gt: dict[str, Any], extra: dict[str, Any]
    ) -> dict[str, Any]:
        """An OR1 code row: the question (with the starter code and the code suffix) as
        the user turn, the tests as the ground truth."""
        return {
            "prompt": [
                {"role": "user", "content": _question(question, starter, self.cfg.code_suffix)}
            ],
            "ability": "code",
            "reward_model": {"style": "rule", "ground_truth": json.dumps(gt)},
            "extra_info": extra,
        }

    def map_leetcode(self, row: dict[str, Any]) -> dict[str, Any]:
        question = _required_text(row, ("problem_description", "query"))
        test = _required_text(row, ("test",))
        entry = _required_text(row, ("entry_point",))
        prefix = row.get("import_prefix", row.get("prompt"))
        gt = {
            "import_prefix": prefix if isinstance(prefix, str) else "",
            "test_code": test,
            "entry_point": entry,
        }
        extra = _extra(row)
        if isinstance(row.get("completion"), str) and row["completion"].strip():
            extra["reference_solution"] = row["completion"]
        return self._code_row(question, row.get("starter_code"), gt, extra)

    def map_row(self, row: dict[str, Any], schema: str, path: str) -> dict[str, Any]:
        """One raw row in ``schema`` -> an OR1 row (raises :class:`Reject`)."""
        mapped = getattr(self, f"map_{schema}")(row)
        if mapped["ability"] not in ABILITIES:
            raise Reject(
                "unknown_ability",
                f"ability '{mapped['ability']}' is not one of {', '.join(ABILITIES)}",
            )
        prov = {**(row.get("provenance") or {}), "schema": schema}
        mapped["extra_info"].setdefault("index", prov.get("row"))
        return {
            "data_source": self._source(row, path),
            **mapped,
            "uid": row["uid"],
            "provenance": prov,
        }

    def run(self, rows: list[dict[str, Any]], ctx: DataPassContext) -> PassResult:
        by_file: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            by_file[str((row.get("provenance") or {}).get("file", "?"))].append(row)
        schema_of = {
            path: self._file_schema(path, file_rows) for path, file_rows in by_file.items()
        }
        advance = ctx.progress(len(rows), "normalise")
        kept, dropped = [], []
        for row in rows:
            prov = row.get("provenance") or {}
            path = str(prov.get("file", "?"))
            try:
                kept.append(self.map_row(row, schema_of[path], path))
            except Reject as rej:
                if self.cfg.strict:
                    raise DataError(
                        f"{path}: row {prov.get('row', '?')}: {rej} (schema {schema_of[path]})"
                    ) from None
                raw = {k: v for k, v in row.items() if k not in ("uid", "provenance")}
                dropped.append(
                    DroppedRow(
                        row["uid"],
                        rej.reason,
                        {"message": str(rej), "schema": schema_of[path], "row": raw},
                    )
                )
            advance(1)
        return PassResult(kept, dropped)
