"""Built-in plugin: the data-preparation passes of ``or1-data`` (hook point ``data_pass``).

``normalise`` (public schemas -> the OR1 row schema), ``dedup`` (exact and MinHash near
duplicates), ``decontaminate`` (n-gram overlap with evaluation sets), ``validate_code``
(reference solutions through the sandboxed code verifier), ``judge`` (an LLM flags bad
problems; off by default) and ``difficulty`` (the offline pass-rate band shared with
``or1-filter``). Importing this package is cheap; passes build engines only when they run.
"""

from __future__ import annotations

from or1.core.hookspecs import Register, hookimpl

from .decontaminate import Decontaminate, DecontaminateConfig
from .dedup import Dedup, DedupConfig
from .difficulty import Difficulty, DifficultyConfig
from .judge import Judge, JudgeConfig
from .normalise import Normalise, NormaliseConfig
from .validate_code import ValidateCode, ValidateCodeConfig

__all__ = [
    "Decontaminate",
    "Dedup",
    "Difficulty",
    "Judge",
    "Normalise",
    "ValidateCode",
    "or1_register",
]


@hookimpl
def or1_register(register: Register) -> None:
    """Offer the built-in data passes."""
    register("data_pass", "normalise", Normalise, NormaliseConfig)
    register("data_pass", "dedup", Dedup, DedupConfig)
    register("data_pass", "decontaminate", Decontaminate, DecontaminateConfig)
    register("data_pass", "validate_code", ValidateCode, ValidateCodeConfig)
    register("data_pass", "judge", Judge, JudgeConfig)
    register("data_pass", "difficulty", Difficulty, DifficultyConfig)
