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

from or1.core.errors import ConfigError


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
    without a readable config.json is left to :func:`or1.launch.prepare.resolve_model`, which names
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


MODEL_CHECKS_GROUP = "or1.model_checks"
"""Entry points ``"<group>.<component>" = "module:function"``: a component's model check that
needs neither torch nor its engine, ``function(hf_config, model_path, on_gpu)`` raising
ConfigError; ``or1-train`` runs the ones of the chosen components in its first second."""


def gpu_visible() -> bool:
    """Whether this process would see an NVIDIA GPU, without importing torch: a driver node
    exists and ``CUDA_VISIBLE_DEVICES`` does not hide every device."""
    import os

    hidden = os.environ.get("CUDA_VISIBLE_DEVICES")
    return Path("/dev/nvidiactl").exists() and hidden not in ("", "-1")


def _choice(argv: Iterable[str], group: str, default: str) -> str:
    chosen = default
    for arg in argv:
        if arg.startswith(f"{group}=") and "," not in arg:
            chosen = arg.split("=", 1)[1]
    return chosen


def early_model_check(argv: list[str], defaults: dict[str, str]) -> None:
    """Before Hydra, torch or any plugin is imported: when the command line names a
    ``model.path`` with a readable config.json, run the ``or1.model_checks`` entry points of
    the components it chooses (``defaults``: group -> the config's default choice). Anything
    this cannot decide (a sweep, no config.json, a check that fails for another reason) is
    left to the full checks before the engines start."""
    import json
    from importlib.metadata import entry_points
    from types import SimpleNamespace

    paths = [a.split("=", 1)[1] for a in argv if a.startswith("model.path=")]
    if not paths or any(a in ("-m", "--multirun") for a in argv) or "," in paths[-1]:
        return
    folder = Path(paths[-1]).expanduser()
    try:
        config = SimpleNamespace(**json.loads((folder / "config.json").read_text()))
    except (OSError, ValueError, TypeError):
        return
    chosen = {f"{g}.{_choice(argv, g, d)}" for g, d in defaults.items()}
    on_gpu = gpu_visible()
    for ep in entry_points(group=MODEL_CHECKS_GROUP):
        if ep.name in chosen:
            try:
                check = ep.load()
            except Exception:  # noqa: BLE001 - the full check names any real problem later
                continue
            check(config, folder, on_gpu)
