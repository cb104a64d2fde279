"""Graceful stop: SIGINT / SIGTERM ask the trainer to finish the current step, write a
checkpoint and exit 0; a second SIGINT interrupts at once."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType, TracebackType

log = logging.getLogger("or1.stopping")


class GracefulStop:
    """``with GracefulStop() as stop: ... if stop.requested: ...``.

    While active, the first SIGINT or SIGTERM only sets ``requested`` (and names the signal in
    ``signal_name``); a second SIGINT raises ``KeyboardInterrupt`` as usual. Previous handlers
    come back on exit. Outside the main thread (where Python cannot install handlers) it does
    nothing and ``requested`` stays false.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested, self.signal_name = True, name
        log.warning(
            "%s received: finishing this step, then a checkpoint and exit (Ctrl-C again to abort)",
            name,
        )

    def requested_anywhere(self) -> bool:
        """Whether any rank of the launch was asked to stop (a reduction: every rank calls it
        after the same step, so all of them stop there; one process: :attr:`requested`)."""
        from or1.launch import distributed

        (anywhere,) = distributed.all_reduce([float(self.requested)], "max")
        if anywhere and not self.requested:
            self.requested, self.signal_name = True, self.signal_name or "another rank's signal"
        return bool(anywhere)

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()
