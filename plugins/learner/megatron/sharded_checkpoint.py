"""The Megatron learner's sharded checkpoint: each tensor-parallel rank writes its own shards.

A folder of safetensors files, one per tensor-parallel rank of the saving run
(``tp<r>.safetensors``, written by data-parallel index 0: the other indices hold the same
state), and ``index.json``, written by rank 0, which says where every piece of every full
tensor lies::

    {"format": "or1-megatron-sharded-v1", "tensor_parallel_size": 2,
     "tensors": {"<param>" or "<param>::<moment>": {"shape": [...], "dim": 0 | 1 | null,
                 "pieces": [{"file": "tp0.safetensors", "name": "...", "offset": 0,
                             "length": 96}, ...]}},
     "param_groups": [...], "steps": {"<param>": <AdamW step>}, "precision": "fp32",
     "lr_updates": <optimiser steps taken: the place on the learning-rate schedule>}

Shapes are the model's true shapes (the vocabulary's TP padding rows are never written), and
a piece is a contiguous run of rows (``dim`` 0) or columns (``dim`` 1) of the full tensor, so
a strided shard (gate and up projections: ``partition_stride`` 2) is written as its pieces.
Loading at any tensor-parallel size reads, per rank, only the slices of the pieces that
overlap its own shard (safetensors reads slices without loading a file), so no rank ever
holds more than its own shards, saving or loading.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from or1.core.atomic import atomic_path

FORMAT = "or1-megatron-sharded-v1"
INDEX = "index.json"


def pieces(
    full_shape: tuple[int, ...],
    layout: tuple[int, int] | None,
    tp_rank: int,
    tp: int,
    local_rows: int | None,
    limit: int | None = None,
) -> list[tuple[int, int, int]]:
    """``(local_offset, global_offset, length)`` of each contiguous piece of rank
    ``tp_rank``'s shard along the split dimension (``layout`` = (dim, stride); None:
    replicated, one piece, written by TP rank 0 only). ``local_rows`` is the shard's size
    along that dimension; ``limit`` cuts pieces at the full tensor's true size (vocabulary
    padding)."""
    if layout is None or tp == 1:
        if tp_rank != 0:
            return []
        dim = 0 if layout is None else layout[0]
        n = full_shape[dim] if local_rows is None else local_rows
        return [(0, 0, min(n, limit) if limit is not None else n)]
    _, stride = layout
    assert local_rows is not None
    c = local_rows // stride
    out = []
    for s in range(stride):
        start = (s * tp + tp_rank) * c
        length = c if limit is None else max(0, min(c, limit - start))
        if length:
            out.append((s * c, start, length))
    return out


def save(
    folder: Path,
    tensors: list[tuple[str, torch.Tensor, tuple[int, int] | None, int | None]],
    tp_rank: int,
    tp: int,
    gather_index: Callable[[dict[str, Any]], list[dict[str, Any]]],
    write: bool,
    extra: dict[str, Any],
    is_main: bool,
) -> None:
    """Write this rank's ``tensors`` (``(key, local shard, layout, true size along the split
    dim or None)``) when ``write`` (data-parallel index 0), and, on the main rank, the index
    of every rank's pieces (``gather_index`` is an all-gather of small dicts). Collective."""
    folder.mkdir(parents=True, exist_ok=True)
    file = f"tp{tp_rank}.safetensors"
    local: dict[str, torch.Tensor] = {}
    index: dict[str, Any] = {}
    if write:
        for key, t, layout, limit in tensors:
            dim = None if layout is None else layout[0]
            full = list(t.shape)
            if layout is not None:
                full[layout[0]] = limit if limit is not None else t.shape[layout[0]] * tp
            elif limit is not None:
                full[0] = limit
            split = 0 if dim is None else dim
            entry = {"shape": full, "dim": dim, "pieces": []}
            for j, (lo, go, n) in enumerate(
                pieces(tuple(full), layout, tp_rank, tp, t.shape[split], limit)
            ):
                name = f"{key}#{j}"
                local[name] = t.detach().narrow(split, lo, n).contiguous().cpu()
                entry["pieces"].append({"file": file, "name": name, "offset": go, "length": n})
            index[key] = entry
        from safetensors.torch import save_file

        with atomic_path(folder / file) as tmp:
            save_file(local, str(tmp))
    del local
    parts = gather_index(index if write else {})
    if not is_main:
        return
    merged: dict[str, Any] = {}
    for part in parts:
        for key, entry in part.items():
            if key in merged:
                merged[key]["pieces"] += entry["pieces"]
            else:
                merged[key] = entry
    doc = {"format": FORMAT, "tensor_parallel_size": tp, "tensors": merged, **extra}
    (folder / INDEX).write_text(json.dumps(doc))


def read_index(folder: Path) -> dict[str, Any]:
    doc = json.loads((folder / INDEX).read_text())
    if doc.get("format") != FORMAT:
        raise ValueError(f"{folder}: not an {FORMAT} checkpoint")
    return doc


class Reader:
    """Fills local shards from a saved checkpoint, reading only overlapping slices."""

    def __init__(self, folder: Path) -> None:
        from safetensors import safe_open

        self.folder = folder
        self.doc = read_index(folder)
        self._open = {}
        self._handles: list[Any] = []
        for f in sorted({p["file"] for e in self.doc["tensors"].values() for p in e["pieces"]}):
            handle = safe_open(str(folder / f), framework="pt")
            self._handles.append(handle)
            self._open[f] = handle

    def keys(self) -> set[str]:
        return set(self.doc["tensors"])

    def fill(
        self, key: str, out: torch.Tensor, layout: tuple[int, int] | None, tp_rank: int, tp: int
    ) -> None:
        """Copy the saved values of this rank's shard of ``key`` into ``out`` (its local shard
        at this run's TP; rows past the true size, i.e. vocabulary padding, become 0)."""
        entry = self.doc["tensors"][key]
        dim = entry["dim"] if entry["dim"] is not None else 0
        if layout is not None and tp > 1:
            dim = layout[0]
        out.zero_()
        local_n = out.shape[dim]
        if layout is None or tp == 1:  # the whole tensor, up to its true size
            wanted = [(0, 0, min(local_n, entry["shape"][dim]))]
        else:  # this rank's pieces (rows past the true size stay 0: vocabulary padding)
            wanted = pieces(tuple(entry["shape"]), layout, tp_rank, tp, local_n)
        for lo, go, n in wanted:
            for p in entry["pieces"]:
                a, b = max(go, p["offset"]), min(go + n, p["offset"] + p["length"])
                if a >= b:
                    continue
                src = self._open[p["file"]].get_slice(p["name"])
                index = [slice(None)] * out.dim()
                index[dim] = slice(a - p["offset"], b - p["offset"])
                out.narrow(dim, lo + a - go, b - a).copy_(src[tuple(index)])
