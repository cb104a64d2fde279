"""The ``tensorboard`` logger: scalars, sample tables and messages as TensorBoard events.

``tensorboard --logdir <run_dir>/tensorboard`` shows them; several runs' folders side by side
(``--logdir_spec a:RUN_A/tensorboard,b:RUN_B/tensorboard``) compare ablations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from or1.core.config import LoggerConfig
from or1.core.hookspecs import Register, hookimpl
from or1.core.interfaces import Logger

SAMPLE_COLUMNS = ("group", "reward", "advantage", "status", "truncated", "prompt", "response")


@dataclass
class TensorBoardConfig(LoggerConfig):
    name: str = "tensorboard"
    log_dir: str = "tensorboard"  # relative to the run folder
    max_sample_rows: int = 16  # rows of the text table per sample log
    flush_secs: int = 30
    """Seconds between TensorBoard's flushes to disk."""


def _cell(value: Any, width: int = 200) -> str:
    text = " ".join(str(value).split()).replace("|", "\\|")
    return text if len(text) <= width else text[: width - 3] + "..."


def samples_markdown(samples: list[dict[str, Any]], max_rows: int) -> str:
    """A markdown table (TensorBoard's text plugin renders it) of the first ``max_rows``."""
    head = "| " + " | ".join(SAMPLE_COLUMNS) + " |\n|" + "---|" * len(SAMPLE_COLUMNS) + "\n"
    body = "".join(
        "| " + " | ".join(_cell(r.get(c, "")) for c in SAMPLE_COLUMNS) + " |\n"
        for r in samples[:max_rows]
    )
    return head + body


class TensorBoardLogger(Logger):
    """``add_scalar`` per finite metric at its step; samples and messages as text."""

    def __init__(self, cfg: Any, ctx: Any = None) -> None:
        self.cfg = cfg
        self.writer: Any = None
        self.step = 0

    def start(
        self, run_dir: Path, config: dict[str, Any], total_steps: int, start_step: int
    ) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.step = start_step
        self.writer = SummaryWriter(
            log_dir=str(Path(run_dir) / self.cfg.log_dir),
            flush_secs=int(self.cfg.flush_secs),
            purge_step=start_step + 1
            if start_step > 0
            else None,  # a resumed run redoes later steps
        )

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        self.step = step
        for key, value in metrics.items():
            if (
                key != "step"
                and isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
            ):
                self.writer.add_scalar(key, value, step)

    def log_samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        if samples:
            self.writer.add_text(
                "samples", samples_markdown(samples, self.cfg.max_sample_rows), step
            )

    def log_message(self, message: str) -> None:
        if self.writer is not None:
            self.writer.add_text("messages", message, self.step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@hookimpl
def or1_register(register: Register) -> None:
    register("logger", "tensorboard", TensorBoardLogger, TensorBoardConfig)
