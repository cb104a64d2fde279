"""Built-in plugin: the data-preparation stages of ``or1-data`` (hook point ``data_stage``).

``normalise`` (public schemas -> the OR1 row schema), ``dedup`` (exact and MinHash near
duplicates), ``decontaminate`` (n-gram overlap with evaluation sets), ``validate_code``
(reference solutions through the sandboxed code verifier), ``judge`` (an LLM flags bad
problems; off by default) and ``difficulty`` (the offline pass-rate band shared with
``or1-filter``). Importing this package is cheap; stages build engines only when they run.
"""

from __future__ import annotations

from or1.hookspecs import Register, hookimpl

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
    """Offer the built-in data stages."""
    register("data_stage", "normalise", Normalise, NormaliseConfig)
    register("data_stage", "dedup", Dedup, DedupConfig)
    register("data_stage", "decontaminate", Decontaminate, DecontaminateConfig)
    register("data_stage", "validate_code", ValidateCode, ValidateCodeConfig)
    register("data_stage", "judge", Judge, JudgeConfig)
    register("data_stage", "difficulty", Difficulty, DifficultyConfig)
