"""Dataset files in the OR1 row schema: reading, validation, prompt tokenisation, sampling.

A row is ``{"data_source", "prompt": [{"role", "content"}, ...], "ability",
"reward_model": {"ground_truth": ...}, "extra_info": {...}}`` (verl / Skywork-OR1 parquet).
Files are parquet (``.parquet``) or JSON lines (``.jsonl`` / ``.json``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from or1.core.errors import ConfigError, DataError
from or1.core.interfaces import Stateful
from or1.core.types import Prompt

log = logging.getLogger("or1.data")


def as_path_list(value: Any) -> list[Path]:
    """``None`` -> [], a string -> [it], a list of strings -> them, as paths."""
    if value is None:
        return []
    if isinstance(value, (str, Path)):
        return [Path(value)]
    return [Path(v) for v in value]


def held_out_sets(cfg: Any, files: list[Path] | None = None) -> dict[str, Path]:
    """The held-out sets by name, for metric keys (``val/<name>/avg@K``) and reports:
    ``eval.datasets``, else ``data.val_path``, else the data source's held-out files (``files``).
    Files given by path are named by their stem (``aime24``); a data source's own files by the
    source (``tiny_arith``, not the ``val`` of ``val.parquet``). Two sets of one name are an
    error naming both files."""
    given = as_path_list(list(cfg.eval.datasets)) or as_path_list(cfg.data.val_path)
    if given:
        named = [(f.stem, f) for f in given]
    else:
        source = str(cfg.data.name)
        files = list(files or [])
        named = [(source if len(files) == 1 else f"{source}_{f.stem}", f) for f in files]
    out: dict[str, Path] = {}
    for name, f in named:
        if name in out:
            raise ConfigError(
                f"eval.datasets: two files share the name '{name}' ({out[name]}, {f})"
            )
        out[name] = f
    return out


def _plain(value: Any) -> Any:
    """numpy arrays / scalars from parquet readers -> plain Python."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def read_rows(path: Path) -> list[dict[str, Any]]:
    """All rows of one file, as plain dicts. Raises DataError naming the file (and line)."""
    if not path.exists():
        raise DataError(f"dataset file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            return [_plain(r) for r in pq.read_table(path).to_pylist()]
        except Exception as exc:
            raise DataError(f"{path}: not a readable parquet file ({exc})") from None
    if suffix in (".jsonl", ".json"):
        rows = []
        try:
            lines = path.read_bytes().decode("utf-8").split("\n")
        except UnicodeDecodeError as exc:
            line_no = path.read_bytes()[: exc.start].count(b"\n") + 1
            raise DataError(f"{path}: line {line_no}: not UTF-8 text") from None
        for lineno, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}: line {lineno}: invalid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}: line {lineno}: a row must be a JSON object")
            rows.append(row)
        return rows
    raise DataError(f"{path}: unsupported dataset format '{suffix}' (use .parquet or .jsonl)")


def ground_truth(row: dict[str, Any]) -> Any:
    """The row's ``reward_model.ground_truth`` (None when absent)."""
    rm = row.get("reward_model")
    return rm.get("ground_truth") if isinstance(rm, dict) else None


def validate_row(row: dict[str, Any], where: str) -> None:
    """Raise DataError("<file>: row <i>: ...") unless the row has what training needs."""
    prompt = row.get("prompt")
    if prompt is None:
        raise DataError(f"{where}: missing column 'prompt'")
    if isinstance(prompt, str):
        if not prompt.strip():
            raise DataError(f"{where}: empty 'prompt'")
    elif not (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(m, dict) and "role" in m and "content" in m for m in prompt)
    ):
        raise DataError(
            f"{where}: 'prompt' must be a string or a list of {{role, content}} messages"
        )
    if not isinstance(row.get("ability"), str):
        raise DataError(f"{where}: missing column 'ability'")
    gt = ground_truth(row)
    if gt is None or (isinstance(gt, str) and not gt.strip()):
        raise DataError(f"{where}: missing 'reward_model.ground_truth'")


def messages(row: dict[str, Any]) -> list[dict[str, str]]:
    prompt = row["prompt"]
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt


def read_dataset(
    files: Sequence[Path], max_rows: int | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Read and validate every row of ``files``; returns ``(uid, row)`` pairs with
    ``uid = "<file stem>:<row index>"``. An invalid row is an error naming file and index."""
    if not files:
        raise DataError("no dataset file given (set data.path)")
    out: list[tuple[str, dict[str, Any]]] = []
    for path in files:
        rows = read_rows(path)
        if not rows:
            raise DataError(f"{path}: no rows")
        for i, row in enumerate(rows[:max_rows] if max_rows is not None else rows):
            validate_row(row, f"{path}: row {i}")
            out.append((f"{path.stem}:{i}", row))
    return out


def tokenize_prompts(
    rows: Sequence[tuple[str, dict[str, Any]]], tokenizer: Any, max_prompt_length: int
) -> list[Prompt]:
    """Apply the tokenizer's chat template (with the generation prompt) to every row.

    Prompts longer than ``max_prompt_length`` tokens are dropped with a logged count, as the
    recipe does; if none is left that is an error.
    """
    texts = [
        tokenizer.apply_chat_template(messages(r), tokenize=False, add_generation_prompt=True)
        for _, r in rows
    ]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    prompts = [
        Prompt(uid=uid, row=row, prompt_ids=list(p_ids))
        for (uid, row), p_ids in zip(rows, ids, strict=True)
        if len(p_ids) <= max_prompt_length
    ]
    if len(prompts) < len(rows):
        log.warning(
            "dropped %d prompts longer than %d tokens", len(rows) - len(prompts), max_prompt_length
        )
    if not prompts:
        raise DataError(f"no prompt fits data.max_prompt_length={max_prompt_length}")
    return prompts


class PromptSampler(Stateful):
    """Draws prompts in epochs of a seeded permutation; its state is the cursor.

    Epoch ``e`` uses ``numpy.random.default_rng([seed, e]).permutation``, so the order depends
    only on the seed and the cursor, and a resumed run draws the same prompts.
    """

    def __init__(self, prompts: Sequence[Prompt], seed: int, shuffle: bool = True) -> None:
        self.prompts = list(prompts)
        self.seed = seed
        self.shuffle = shuffle
        self.epoch = 0
        self.position = 0
        self._order = self._permutation()

    def _permutation(self) -> np.ndarray:
        n = len(self.prompts)
        if not self.shuffle:
            return np.arange(n)
        return np.random.default_rng([self.seed, self.epoch]).permutation(n)

    def next(self, k: int) -> list[Prompt]:
        out: list[Prompt] = []
        while len(out) < k:
            if self.position >= len(self._order):
                self.epoch += 1
                self.position = 0
                self._order = self._permutation()
            take = min(k - len(out), len(self._order) - self.position)
            out += [self.prompts[i] for i in self._order[self.position : self.position + take]]
            self.position += take
        return out

    def restart(self) -> None:
        """Start a new epoch now (a stage may ask for a fresh data order)."""
        self.epoch += 1
        self.position = 0
        self._order = self._permutation()

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._order = self._permutation()
