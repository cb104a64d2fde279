"""The ``wandb`` logger: Weights & Biases run with config, metrics, sample tables, final model.

Never blocks or stops training: with ``mode=auto`` it logs online only when an API key is
configured and the server answers within ``connect_timeout_s``, otherwise offline (``wandb
sync <run_dir>/wandb/offline-run-*`` uploads it later); an online start that fails falls back
to offline; anything that fails later is reported once and the logger is dropped by the
trainer. Everything wandb writes (run files, cache, artifacts staging) lands under
``<run_dir>/wandb/``, never in the home folder.
"""

from __future__ import annotations

import logging
import math
import netrc
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from or1.core.config import LoggerConfig
from or1.core.errors import ConfigError
from or1.core.hookspecs import Register, hookimpl
from or1.core.interfaces import Logger

log = logging.getLogger("or1.wandb")

MODES = ("auto", "online", "offline", "disabled")
SAMPLE_COLUMNS = (
    "step",
    "group",
    "prompt",
    "response",
    "ground_truth",
    "reward",
    "status",
    "advantage",
    "truncated",
    "kept",
    "response_length",
)


@dataclass
class WandbConfig(LoggerConfig):
    name: str = "wandb"
    project: str = "or1"
    """The wandb project."""
    entity: str | None = None
    """The wandb entity (team or user; None: your default)."""
    run_name: str | None = None  # None: the run folder's name
    group: str | None = None
    """The wandb group (e.g. one per sweep)."""
    tags: list[str] = field(default_factory=list)
    """wandb tags of the run."""
    mode: str = "auto"  # auto | online | offline | disabled
    connect_timeout_s: float = 3.0  # auto: how long the server may take to accept a connection
    init_timeout_s: float = 30.0  # wandb.init's own limit
    log_model: bool = True  # the exported final model as a wandb artifact
    max_sample_rows: int = 512  # rows per sample table


def api_key_available() -> bool:
    """Whether wandb would find credentials: ``WANDB_API_KEY`` or a netrc entry for the host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(base_url()).hostname or "api.wandb.ai"
    try:
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def base_url() -> str:
    return os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")


def server_reachable(url: str, timeout_s: float) -> str | None:
    """None when a TCP connection to the server opens within ``timeout_s``, else why not."""
    parsed = urlparse(url)
    host = parsed.hostname or ""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as exc:
        return f"{host}:{port} unreachable ({exc.strerror or exc})"


def choose_mode(mode: str, connect_timeout_s: float) -> tuple[str, str | None]:
    """The mode to start in and, when it is not what was asked for, why."""
    if mode not in MODES:
        raise ConfigError(f"logger.wandb.mode={mode} is not one of {', '.join(MODES)}")
    env = os.environ.get("WANDB_MODE")
    if mode == "auto" and env in ("offline", "disabled", "dryrun"):
        return ("offline" if env == "dryrun" else env), None
    if mode != "auto":
        return mode, None
    if not api_key_available():
        return "offline", "no API key (WANDB_API_KEY or `wandb login`)"
    problem = server_reachable(base_url(), connect_timeout_s)
    return ("offline", problem) if problem else ("online", None)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


class WandbLogger(Logger):
    """Metrics via ``run.log(..., step=step)``, samples as a ``wandb.Table`` under ``samples``,
    the run config as wandb config, the final model as an artifact of type ``model``."""

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        if cfg.mode not in MODES:
            raise ConfigError(f"logger.wandb.mode={cfg.mode} is not one of {', '.join(MODES)}")

    def __init__(self, cfg: Any, ctx: Any = None) -> None:
        self.check_config(cfg)
        self.cfg = cfg
        self.run: Any = None
        self.mode = "disabled"

    def start(
        self, run_dir: Path, config: dict[str, Any], total_steps: int, start_step: int
    ) -> None:
        root = Path(run_dir) / "wandb"
        root.mkdir(parents=True, exist_ok=True)
        for var, sub in (
            ("WANDB_CACHE_DIR", "cache"),
            ("WANDB_CONFIG_DIR", "config"),
            ("WANDB_DATA_DIR", "data"),
            ("WANDB_ARTIFACT_DIR", "artifacts"),
        ):
            os.environ.setdefault(var, str(root / sub))
        os.environ.setdefault("WANDB_SILENT", "true")
        mode, why = choose_mode(self.cfg.mode, self.cfg.connect_timeout_s)
        if mode == "disabled":
            return
        if why:
            log.warning(
                "wandb: %s; logging offline to %s (upload later with `wandb sync`)", why, root
            )
        id_file = root / "or1_run_id"
        run_id = id_file.read_text().strip() if start_step > 0 and id_file.is_file() else None
        try:
            self.run = self._init(root.parent, mode, config, run_id)
        except Exception as exc:
            if mode != "online":
                raise
            log.warning("wandb: online start failed (%s); logging offline to %s", _short(exc), root)
            self.run = self._init(root.parent, "offline", config, run_id)
            mode = "offline"
        self.mode = mode
        id_file.write_text(self.run.id)
        log.info("wandb: %s run %s in %s", mode, self.run.id, self.run.dir)

    def _init(self, run_dir: Path, mode: str, config: dict[str, Any], run_id: str | None) -> Any:
        import wandb

        settings = wandb.Settings(
            init_timeout=float(self.cfg.init_timeout_s),
            console="off",
            silent=True,
            x_disable_stats=True,
            save_code=False,
        )
        return wandb.init(
            project=self.cfg.project,
            entity=self.cfg.entity,
            name=self.cfg.run_name or run_dir.name,
            group=self.cfg.group,
            tags=list(self.cfg.tags) or None,
            config=config,
            dir=str(run_dir),
            mode=mode,
            id=run_id,
            resume="allow" if run_id else None,
            settings=settings,
            reinit="create_new",
        )

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        if self.run is not None:
            self.run.log(
                {k: v for k, v in metrics.items() if _number(v) and k != "step"}, step=step
            )

    def log_samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        if self.run is None or not samples:
            return
        import wandb

        rows = [[r.get(c) for c in SAMPLE_COLUMNS] for r in samples[: self.cfg.max_sample_rows]]
        rows = [
            [v if v is None or isinstance(v, int | float | str | bool) else str(v) for v in row]
            for row in rows
        ]
        self.run.log({"samples": wandb.Table(columns=list(SAMPLE_COLUMNS), data=rows)}, step=step)

    def log_message(self, message: str) -> None:
        return None  # messages are in train.log; wandb has no event stream for them

    def log_artifact(self, name: str, path: Path, kind: str) -> None:
        if self.run is None or (kind == "model" and not self.cfg.log_model):
            return
        import wandb

        art = wandb.Artifact(name, type=kind)
        path = Path(path)
        art.add_dir(str(path)) if path.is_dir() else art.add_file(str(path))
        self.run.log_artifact(art)

    def close(self) -> None:
        if self.run is not None:
            run, self.run = self.run, None
            run.finish()
            if self.mode == "offline":
                log.info(
                    "wandb: offline run in %s; upload it with `wandb sync %s`",
                    run.dir,
                    Path(run.dir).parent,
                )


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


@hookimpl
def or1_register(register: Register) -> None:
    register("logger", "wandb", WandbLogger, WandbConfig)
