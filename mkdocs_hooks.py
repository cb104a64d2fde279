"""mkdocs build hooks (``hooks:`` in mkdocs.yml): a nav that tolerates pages coming and going.

Nav entries whose file does not exist under ``docs/`` are dropped (with a note) instead of
failing the strict build, and Markdown pages that exist but are not in the nav are appended
under "More", so every page is reachable.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("mkdocs.plugins.or1")


def _prune(items: list[Any], docs: Path, listed: set[str]) -> list[Any]:
    out: list[Any] = []
    for item in items:
        if isinstance(item, dict):
            ((title, value),) = item.items()
            if isinstance(value, list):
                kept = _prune(value, docs, listed)
                if kept:
                    out.append({title: kept})
                continue
            target = value
        else:
            title, target = None, item
        if isinstance(target, str) and "://" not in target and not (docs / target).is_file():
            log.info("nav: %s is not in docs/ (yet); left out of the nav", target)
            continue
        if isinstance(target, str):
            listed.add(target)
        out.append(item)
    return out


def on_config(config: Any, **kwargs: Any) -> Any:
    docs = Path(config["docs_dir"])
    nav = config.get("nav")
    if not nav:
        return config
    listed: set[str] = set()
    nav = _prune(list(nav), docs, listed)
    extra = sorted(
        str(p.relative_to(docs))
        for p in docs.rglob("*.md")
        if str(p.relative_to(docs)) not in listed
    )
    if extra:
        nav.append({"More": extra})
    config["nav"] = nav
    return config
