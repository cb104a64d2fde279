"""What every or1 command shares: one-line errors, early config checks, logging."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from or1.errors import Or1Error

EXIT_USAGE = 2


def fail(message: str) -> NoReturn:
    print(f"or1: error: {message}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn``; an Or1Error becomes one line on stderr and exit status 2."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Or1Error as exc:
            fail(str(exc))

    wrapper.__name__ = getattr(fn, "__name__", "wrapper")
    wrapper.__doc__ = fn.__doc__
    return wrapper


def run_hydra_app(task: Callable[[Any], Any]) -> None:
    """Run ``task(cfg)`` as a Hydra app over or1's config (``conf/train.yaml``): plugins'
    schemas registered, overrides checked first, an Or1Error inside the task one line."""
    import hydra

    from or1.plugins import get_registry
    from or1.schemas import CONFIG_MODULE, CONFIG_NAME, store_schemas

    quiet_transformers()
    store_schemas(get_registry())
    check_overrides(CONFIG_MODULE, CONFIG_NAME, sys.argv[1:])
    hydra.main(config_path=f"pkg://{CONFIG_MODULE}", config_name=CONFIG_NAME, version_base=None)(guarded(task))()


def quiet_transformers() -> None:
    """or1 shows its own progress; Hugging Face's per-load progress bars are noise."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def describe_config_error(exc: BaseException) -> str:
    """One line from a Hydra/OmegaConf error: what failed, and why (its cause), naming the key."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    head = lines[0].rstrip(".") if lines else type(exc).__name__
    if "Available options in" in str(exc):
        i = next(i for i, ln in enumerate(lines) if ln.startswith("Available options"))
        options = [ln for ln in lines[i + 1 :] if not ln.startswith(("Config search path", "provider="))]
        options = [o for o in options if not o.endswith("_schema")]
        return f"{head} (available: {', '.join(options)})"
    if exc.__cause__ is not None:
        cause = str(exc.__cause__).strip().splitlines()
        if cause:
            return f"{head}: {cause[0].strip()}"
    return head


def check_overrides(config_module: str, config_name: str, argv: Sequence[str]) -> None:
    """Compose the config once with the command line's overrides so a typo, a wrong type or
    an unknown group option is one clear line before Hydra starts. Sweeps (``-m``) and
    Hydra's own flags are left to Hydra."""
    if any(a.startswith("-") for a in argv):
        return
    overrides = [a for a in argv if not a.startswith(("hydra.", "+hydra.", "~hydra."))]
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    try:
        with initialize_config_module(config_module=config_module, version_base=None):
            cfg = compose(config_name=config_name, overrides=overrides)
            OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    except Exception as exc:
        fail(f"config: {describe_config_error(exc)}")
    finally:
        GlobalHydra.instance().clear()
