"""Which models the configured engines can run, checked from the model folder's config.json
before any engine is built (each engine's ``check_model`` says what it supports).

The supported-models table of the README lists what each built-in engine accepts; this module
holds what the checks share: the architecture and head dimension of a config, the check of the
reference engines (any causal LM that ``transformers`` implements), and the call of every
configured engine's check.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from or1.errors import ConfigError


def architecture_name(hf_config: Any) -> str:
    """The model class named in config.json (``architectures[0]``), else its ``model_type``."""
    archs = list(getattr(hf_config, "architectures", None) or [])
    return str(archs[0] if archs else getattr(hf_config, "model_type", "?"))


def head_dim(hf_config: Any) -> int:
    """The attention head dimension: ``head_dim`` where the config sets it (Qwen3's is not
    ``hidden_size / num_attention_heads``), else ``hidden_size // num_attention_heads``."""
    explicit = getattr(hf_config, "head_dim", None)
    if explicit:
        return int(explicit)
    heads = int(getattr(hf_config, "num_attention_heads", 0) or 0)
    return int(hf_config.hidden_size) // heads if heads else 0


def check_transformers_causal_lm(hf_config: Any, model_path: Path, engine: str) -> None:
    """The reference engines' limit: ``AutoModelForCausalLM`` must know the config's
    ``model_type`` (one ConfigError naming the folder, the architecture and ``engine``)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_type = getattr(hf_config, "model_type", None)
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise ConfigError(
            f"model.path={model_path}: architecture {architecture_name(hf_config)} (model_type "
            f"'{model_type}') is not a causal language model that transformers implements, "
            f"which {engine} needs"
        )


def check_model_support(
    cfg: Any,
    registry: Any,
    model_path: Path,
    groups: Iterable[str] = ("rollout", "learner"),
) -> None:
    """Read ``model_path``'s config.json once and call ``check_model`` of the component
    configured for each of ``groups`` (those without one accept every model). A folder
    without a readable config.json is left to :func:`or1.run.resolve_model`, which names
    what is wrong with it, so this may also run before the model is resolved."""
    from transformers import AutoConfig

    if not (Path(model_path) / "config.json").is_file():
        return
    try:
        hf_config = AutoConfig.from_pretrained(model_path)
    except Exception:  # resolve_model reports an unusable config.json in one line
        return
    for group in groups:
        factory = registry.get(group, cfg[group].name).factory
        check = getattr(factory, "check_model", None)
        if check is not None:
            check(cfg[group], hf_config, Path(model_path))
