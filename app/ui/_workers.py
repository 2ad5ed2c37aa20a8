"""Keep superqt workers referenced until they finish.

A worker with no Python reference can be collected while its thread still runs; panels hold
their running workers here, and each one drops out by itself when it has finished.
"""

from __future__ import annotations

from typing import Any


class RunningWorkers:
    def __init__(self) -> None:
        self._running: list[Any] = []

    def start(self, worker: Any) -> Any:
        """Start ``worker`` (a superqt WorkerBase) and keep it until its ``finished``."""
        self._running.append(worker)
        worker.finished.connect(lambda w=worker: self._running.remove(w))
        worker.start()
        return worker

    def __len__(self) -> int:
        return len(self._running)
