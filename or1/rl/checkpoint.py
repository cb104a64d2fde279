"""Atomic, verifiable checkpoints: ``<run>/checkpoints/step_<N>/``.

A checkpoint folder holds the learner's state (model and optimiser): ``learner.pt``, or a
``learner/`` folder of per-rank shards for a learner with sharded checkpoints; ``state.pt``
(trainer cursor, RNG states, every other component's state) and, written last,
``manifest.json`` with the SHA-256 of each file. It is built under a temporary name and
renamed into place, so a folder named ``step_<N>`` is complete; a folder whose manifest is
missing or whose checksums do not match is skipped (with a warning) when resuming. The
temporary folders of a writer killed mid-save are removed by the next save.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("or1.checkpoint")

MANIFEST = "manifest.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")
_PARTIAL_DIR = re.compile(r"^\.step_\d+\.(?:tmp|old)-(\d+)$")


def sha256_file(path: Path) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(root: Path, step: int, parts: dict[str, Any], keep: int = 0) -> Path:
    """Write ``parts`` (name -> picklable object, one ``<name>.pt`` each) as checkpoint
    ``step`` under ``root`` atomically; then keep only the newest ``keep`` (0: all)."""
    return commit(root, step, begin(root, step), parts, keep)


def begin(root: Path, step: int) -> Path:
    """The temporary folder of checkpoint ``step`` (``root/.step_<N>.tmp-<pid>``), made
    empty. Other writers (a sharded learner's ranks) may add files under it before
    :func:`commit`."""
    root.mkdir(parents=True, exist_ok=True)
    remove_orphans(root)
    tmp = root / f".step_{step}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    return tmp


def commit(root: Path, step: int, tmp: Path, parts: dict[str, Any], keep: int = 0) -> Path:
    """Write ``parts`` into ``tmp`` (one ``<name>.pt`` each), then ``manifest.json`` with the
    SHA-256 of every file under ``tmp`` (sub-folders included), and rename it into place as
    ``root/step_<N>``; then keep only the newest ``keep`` checkpoints (0: all)."""
    final = root / f"step_{step}"
    for name, obj in parts.items():
        path = tmp / f"{name}.pt"
        with path.open("wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
    files = {
        str(f.relative_to(tmp)): sha256_file(f)
        for f in sorted(tmp.rglob("*"))
        if f.is_file() and f.name != MANIFEST
    }
    manifest = {"format": 1, "step": step, "files": files}
    with (tmp / MANIFEST).open("w") as fh:
        json.dump(manifest, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    if final.exists():  # re-saving a step (after a resume): swap the old one out first
        old = root / f".step_{step}.old-{os.getpid()}"
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync_dir(root)
    if keep > 0:
        for old_step in list_steps(root)[:-keep]:
            shutil.rmtree(root / f"step_{old_step}", ignore_errors=True)
    return final


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_orphans(root: Path) -> None:
    """Remove the half-written ``.step_<N>.tmp-<pid>`` (and swapped-out ``.old-<pid>``)
    folders under the existing folder ``root`` of writers that no longer run (killed
    mid-save); a live writer's are kept, complete ``step_<N>`` folders never touched."""
    for p in root.iterdir():
        m = _PARTIAL_DIR.match(p.name)
        if m and p.is_dir() and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            log.info("removing %s: the unfinished checkpoint of a run that was killed", p)
            shutil.rmtree(p, ignore_errors=True)


def list_steps(root: Path) -> list[int]:
    """Steps of the checkpoint folders under ``root`` (complete or not), ascending."""
    if not root.is_dir():
        return []
    steps = [int(m.group(1)) for p in root.iterdir() if (m := _STEP_DIR.match(p.name))]
    return sorted(steps)


def verify(path: Path) -> str | None:
    """None if the checkpoint folder is complete and intact, else what is wrong."""
    manifest = path / MANIFEST
    if not manifest.is_file():
        return "no manifest (incomplete write)"
    try:
        files = json.loads(manifest.read_text())["files"]
    except (ValueError, KeyError):
        return "unreadable manifest"
    for name, digest in files.items():
        f = path / name
        if not f.is_file():
            return f"missing {name}"
        if sha256_file(f) != digest:
            return f"checksum mismatch in {name}"
    return None


def latest(root: Path) -> Path | None:
    """The newest intact checkpoint under ``root``; damaged newer ones are skipped, warned."""
    for step in reversed(list_steps(root)):
        path = root / f"step_{step}"
        problem = verify(path)
        if problem is None:
            return path
        log.warning("skipping checkpoint %s: %s", path, problem)
    return None


def load(path: Path, name: str, mmap: bool = False) -> Any:
    """Load part ``name`` of the checkpoint at ``path``; with ``mmap`` its tensors stay in
    the file (pages are read as they are used), so several ranks reading one checkpoint each
    keep only what they copy out."""
    return torch.load(path / f"{name}.pt", map_location="cpu", weights_only=False, mmap=mmap)


def load_learner(path: Path, learner: Any) -> None:
    """Load the learner state of the checkpoint at ``path`` into ``learner``: its sharded
    ``learner/`` folder (``learner.load_sharded``, every rank its slices) or ``learner.pt``
    (``learner.load_state_dict``, memory-mapped). A sharded checkpoint and a learner without
    sharded checkpoints is a ValueError."""
    if (path / "learner").is_dir():
        if not getattr(learner, "sharded_checkpoints", False):
            raise ValueError(
                f"{path} holds a sharded learner state that {type(learner).__name__} cannot read"
            )
        learner.load_sharded(path / "learner")
    else:
        learner.load_state_dict(load(path, "learner", mmap=True))


def step_of(path: Path) -> int:
    return int(json.loads((path / MANIFEST).read_text())["step"])
