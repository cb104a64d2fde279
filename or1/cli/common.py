"""What every or1 command shares: one-line errors, early config checks, logging."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from or1.core.errors import Or1Error

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


def run_hydra_app(
    task: Callable[[Any], Any],
    config_name: str | None = None,
    check: Callable[[Any], None] | None = None,
) -> None:
    """Run ``task(cfg)`` as a Hydra app over or1's config (``conf/<config_name>.yaml``,
    default ``conf/train.yaml``): plugins' schemas registered, overrides checked first (and
    ``check(cfg)`` on each composed config, before Hydra creates the run folder), an
    Or1Error inside the task one line."""
    import hydra

    from or1.core.registry import get_registry
    from or1.core.schemas import CONFIG_MODULE, CONFIG_NAME, store_schemas

    name = config_name or CONFIG_NAME
    quiet_transformers()
    store_schemas(get_registry())
    implied = implied_overrides(sys.argv[1:], None if name == CONFIG_NAME else ("model",))
    if implied:  # before Hydra parses the command line
        if not any(a.startswith(("--cfg", "--info", "-c", "-i")) for a in sys.argv[1:]):
            print(f"or1: {' '.join(implied)} (implied by the command line; {IMPLIED_NOTE})")
        args = sys.argv[1:]  # beside the command line's overrides (argparse wants them together)
        at = next((i for i, a in enumerate(args) if "=" in a and not a.startswith("-")), len(args))
        sys.argv[1:] = [*args[:at], *implied, *args[at:]]
    check_overrides(CONFIG_MODULE, name, sys.argv[1:], check)
    hydra.main(config_path=f"pkg://{CONFIG_MODULE}", config_name=name, version_base=None)(
        guarded(task)
    )()


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
        options = [
            ln for ln in lines[i + 1 :] if not ln.startswith(("Config search path", "provider="))
        ]
        options = [o for o in options if not o.endswith("_schema")]
        return f"{head} (available: {', '.join(options)})"
    if exc.__cause__ is not None:
        cause = str(exc.__cause__).strip().splitlines()
        if cause:
            return f"{head}: {cause[0].strip()}"
    return head


def config_keys(node: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a composed config (list items by index)."""
    from omegaconf import DictConfig, ListConfig

    out = []
    if isinstance(node, DictConfig):
        items = [(str(k), node._get_node(k)) for k in node.keys()]
    elif isinstance(node, ListConfig):
        items = [(str(i), node._get_node(i)) for i in range(len(node))]
    else:
        return out
    for key, child in items:
        path = f"{prefix}.{key}" if prefix else key
        out.append(path)
        if isinstance(child, (DictConfig, ListConfig)):
            out += config_keys(child, path)
    return out


def did_you_mean(exc: BaseException, compose_default: Callable[[], Any]) -> str:
    """``"; did you mean 'trainer.total_steps'?"`` for an override of a key the config lacks
    (the closest keys of the config composed without the command line), else ``""``."""
    import difflib
    import re

    m = re.search(r"Could not override '([^']+)'|Key '([^']+)' is not in struct", str(exc))
    if not m:
        return ""
    wrong = (m.group(1) or m.group(2)).lstrip("+~")
    try:
        keys = config_keys(compose_default())
    except Exception:
        return ""
    section = wrong.rsplit(".", 1)[0] if "." in wrong else ""
    near = [k for k in keys if k.rsplit(".", 1)[0] == section] if section in keys else keys
    if wrong in keys:  # the key exists, for another component of its group
        return ""
    close = difflib.get_close_matches(wrong, near, n=1, cutoff=0.6) or difflib.get_close_matches(
        wrong, keys, n=1, cutoff=0.75
    )
    return f"; did you mean '{close[0]}'?" if close else ""


IMPLIED_CHOICES: dict[str, tuple[tuple[str, str], ...]] = {
    "model.path": (("model", "hf"), ("experiment", "recipe")),
    "data.path": (("data", "files"),),
}
"""A key given on the command line -> the group choices it implies unless the command line
makes them itself: your own model folder means the ``hf`` model source and the OR1 recipe's
values (not the CPU demo's), your own data files the ``files`` data source."""

GENERIC_KEYS = {
    "model": {"path"},
    "data": {"path", "val_path", "max_prompt_length", "shuffle"},
}
"""The keys every model / data source has (the base schema's): a command line that sets any
other key of the section (``model.warmup_max_steps``) speaks of its default source and implies
no other."""


def implied_overrides(argv: Sequence[str], groups: Sequence[str] | None = None) -> list[str]:
    """The group choices (``model=hf``, ``experiment=recipe``, ``data=files``) that the
    command line's keys imply and that it does not choose itself; ``groups`` limits which
    groups may be implied (``or1-eval`` keeps its presets: only ``model``)."""
    given = {a.split("=", 1)[0].lstrip("+~") for a in argv if "=" in a and not a.startswith("-")}
    out: list[str] = []
    for key, choices in IMPLIED_CHOICES.items():
        section = key.split(".", 1)[0]
        own = {k.split(".", 1)[1] for k in given if k.startswith(section + ".")}
        if key not in given or not own <= GENERIC_KEYS.get(section, own):
            continue
        for group, choice in choices:
            if group not in given and (groups is None or group in groups):
                if f"{group}={choice}" not in out:
                    out.append(f"{group}={choice}")
    return out


IMPLIED_NOTE = "give experiment=... / model=... / data=... yourself to choose otherwise"


MULTIRUN_FLAGS = ("-m", "--multirun")
MAX_CHECKED_SWEEP_RUNS = 1000
"""A sweep with more runs than this is checked on its first run only."""


def sweep_runs(overrides: Sequence[str]) -> list[list[str]] | None:
    """The override list of every run of a sweep (``a=1,2 b=x,y``: four runs, in Hydra's basic
    sweeper order); None when the sweep syntax is one only a sweeper plugin understands."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
        batches = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    except Exception:
        return None
    return [list(run) for batch in batches for run in batch]


def check_overrides(
    config_module: str,
    config_name: str,
    argv: Sequence[str],
    check: Callable[[Any], None] | None = None,
) -> None:
    """Compose the config with the command line's overrides so a typo, a wrong type or an
    unknown group option is one clear line before Hydra starts. A sweep (``-m``) is checked
    run by run (the error names the run's overrides); other Hydra flags are left to Hydra."""
    flags = [a for a in argv if a.startswith("-")]
    if any(f not in MULTIRUN_FLAGS for f in flags):
        return
    overrides = [a for a in argv if not a.startswith(("-", "hydra.", "+hydra.", "~hydra."))]
    runs = sweep_runs(overrides) if flags else [overrides]
    if runs is None:
        return
    if len(runs) > MAX_CHECKED_SWEEP_RUNS:
        runs = runs[:1]
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    try:
        with initialize_config_module(config_module=config_module, version_base=None):
            for run in runs:
                where = f" (sweep run: {' '.join(run)})" if flags else ""
                try:
                    cfg = compose(config_name=config_name, overrides=run)
                    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
                except Exception as exc:
                    hint = did_you_mean(exc, lambda: compose(config_name=config_name))
                    fail(f"config: {describe_config_error(exc)}{hint}{where}")
                if check is not None:
                    try:
                        check(cfg)
                    except Or1Error as exc:
                        fail(f"{exc}{where}")
    finally:
        GlobalHydra.instance().clear()
