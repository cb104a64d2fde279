"""Built-in plugin: the ``auto`` verifier, which routes each row by its ``ability``.

Mixed math + code training needs one verifier that sends math rows to the math verifier and
code rows to the code verifier. This plugin imports neither: it looks the configured
components up in or1's registry and builds them from their own schemas, lazily, the first time
a row of that ability arrives (so math-only data never needs the code sandbox).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from or1.core.config import VerifierConfig
from or1.core.errors import ConfigError
from or1.core.hookspecs import hookimpl
from or1.core.interfaces import RewardVerifier
from or1.core.types import Score

__all__ = ["AutoVerifier", "AutoVerifierConfig", "or1_register"]


def _default_routes() -> dict[str, Any]:
    return {"math": {"name": "math"}, "code": {"name": "code"}}


@dataclass
class AutoVerifierConfig(VerifierConfig):
    """``routes``: ability -> the config of the verifier for it (``name`` plus that verifier's
    own keys, e.g. ``verifier.routes.code.workers=4``); ``default``: the ability assumed for a
    row without one (empty: such a row scores ``error``)."""

    name: str = "auto"
    routes: dict[str, Any] = field(default_factory=_default_routes)
    default: str = ""


def build_component(group: str, node: Any, ctx: Any) -> Any:
    """Build a registered component from a plain config node (``{"name": ..., keys...}``),
    typed by the component's own schema: an unknown key or a wrong type is a ConfigError."""
    from or1.core.registry import get_registry

    if isinstance(node, str):
        node = {"name": node}
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)
    if not isinstance(node, Mapping) or not node.get("name"):
        raise ConfigError(f"{group} route {node!r} must be a mapping with a 'name'")
    return get_registry().build_partial(group, str(node["name"]), dict(node), ctx)


class AutoVerifier(RewardVerifier):
    """Scores each row with the verifier configured for its ``ability``."""

    def __init__(self, cfg: Any = None, ctx: Any = None):
        routes = getattr(cfg, "routes", None) if cfg is not None else None
        if routes is None and isinstance(cfg, Mapping):
            routes = cfg.get("routes")
        if isinstance(routes, DictConfig):
            routes = OmegaConf.to_container(routes, resolve=True)
        self.routes: dict[str, Any] = dict(routes) if routes else _default_routes()
        default = (
            cfg.get("default") if isinstance(cfg, Mapping) else getattr(cfg, "default", "")
        ) or ""
        self.default = str(default)
        self.ctx = ctx
        self._built: dict[str, RewardVerifier] = {}

    def verifier_for(self, ability: str) -> RewardVerifier:
        """The verifier of an ability, built on first use (a ConfigError when none is routed)."""
        if ability not in self._built:
            if ability not in self.routes:
                known = ", ".join(sorted(self.routes)) or "none"
                raise ConfigError(f"no verifier routed for ability '{ability}' (routes: {known})")
            self._built[ability] = build_component("verifier", self.routes[ability], self.ctx)
        return self._built[ability]

    def _ability(self, row: Any) -> str:
        ability = row.get("ability") if isinstance(row, Mapping) else None
        return str(ability) if isinstance(ability, str) and ability else self.default

    def score(self, response: str, row: dict[str, Any]) -> Score:
        return self.score_many([response], [row])[0]

    def score_many(self, responses: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[Score]:
        responses, rows = list(responses), list(rows)
        if len(responses) != len(rows):
            raise ValueError(f"{len(responses)} responses but {len(rows)} rows")
        out: list[Score | None] = [None] * len(rows)
        by_ability: dict[str, list[int]] = {}
        for i, row in enumerate(rows):
            ability = self._ability(row)
            if not ability:
                out[i] = Score(0.0, "error", "row has no 'ability' (and verifier.default is empty)")
            elif ability not in self.routes:
                out[i] = Score(0.0, "error", f"no verifier for ability '{ability}'")
            else:
                by_ability.setdefault(ability, []).append(i)
        for ability, idx in by_ability.items():
            scores = self.verifier_for(ability).score_many(
                [responses[i] for i in idx], [rows[i] for i in idx]
            )
            for i, s in zip(idx, scores, strict=True):
                out[i] = s
        return [s if s is not None else Score(0.0, "error", "not scored") for s in out]

    def answer_key(self, response: str, row: dict[str, Any]) -> str | None:
        ability = self._ability(row)
        if ability not in self.routes:
            return None
        key_fn = getattr(self.verifier_for(ability), "answer_key", None)
        return key_fn(response, row) if key_fn is not None else None

    def close(self) -> None:
        for v in self._built.values():
            v.close()
        self._built.clear()


@hookimpl
def or1_register(register: Any) -> None:
    register("verifier", "auto", AutoVerifier, AutoVerifierConfig)
