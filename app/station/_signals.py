"""SIGINT / SIGTERM as a request to stop cleanly, for the headless run.

The handler only records the signal; the main loop sees it within ~0.1 s and stops the station
(source closed, queue judged, results written or journaled, summary printed). A GenTL producer
can install its own SIGINT handler when a camera opens (Ctrl-C then no longer reaches Python),
so :meth:`SignalStopper.install` is called again once the source is open. A second signal while
stopping is logged and ignored rather than killing the process mid-write.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class SignalStopper:
    """Context manager: while inside, SIGINT/SIGTERM set ``signum`` instead of raising."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        else:
            log.warning("%s again: still stopping cleanly", signal.Signals(signum).name)

    def install(self) -> None:
        """(Re)install the handlers; only possible from the main thread (else a no-op)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in SIGNALS:
            previous = signal.signal(sig, self._handle)
            self._previous.setdefault(sig, previous)

    def __enter__(self) -> SignalStopper:
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()
