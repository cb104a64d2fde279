"""The plain sources: your own dataset files (``data=files``) and model folder (``model=hf``).

Both only name what must be given; the core reads ``data.path`` and ``model.path``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from or1.core.config import DataConfig, ModelConfig
from or1.core.errors import ConfigError
from or1.core.hookspecs import hookimpl


@dataclass
class FilesDataConfig(DataConfig):
    name: str = "files"


@dataclass
class HFModelConfig(ModelConfig):
    name: str = "hf"


def require_data_path(cfg: Any, cache_dir: Path) -> tuple[list[Path], list[Path]]:
    raise ConfigError("data=files needs data.path=FILE (parquet or JSONL in the OR1 row schema)")


def require_model_path(cfg: Any, cache_dir: Path) -> Path:
    raise ConfigError("model=hf needs model.path=DIR (a local Hugging Face model folder)")


@hookimpl
def or1_register(register: Any) -> None:
    register("data", "files", require_data_path, FilesDataConfig)
    register("model", "hf", require_model_path, HFModelConfig)
