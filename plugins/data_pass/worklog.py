"""A pass's resumable work log: one JSON object per line, keyed by ``uid``; a line cut by a
crash is ignored (that row is redone)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class WorkLog:
    """Results per row already computed (``done``), appended to as rows finish."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, dict[str, Any]] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                    self.done[str(rec["uid"])] = rec
                except (ValueError, KeyError, TypeError):
                    continue

    def add(self, records: Iterable[dict[str, Any]]) -> None:
        records = list(records)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write("".join(json.dumps(r, default=str) + "\n" for r in records))
        for r in records:
            self.done[str(r["uid"])] = r
