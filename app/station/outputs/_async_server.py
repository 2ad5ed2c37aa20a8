"""The scaffolding both server outputs (OPC UA, Modbus TCP) share: an asyncio server on its own
thread and event loop, fed through a queue.

The session's thread only ever schedules a put onto the server's loop, so the line never waits for
a client; the server's loop applies the items one at a time in `_apply`. A subclass supplies the
protocol: `_serve` (build and start the server), `_shutdown` (stop it), `_apply` (one queued
item) and the address it serves (`_where`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar

from app.station.outputs.base import OutputState, OutputStatus, StationControl

QUEUE_MAX = 10_000
# (user, command, detail) of a command a PLC or client sent: the audit trail
CommandHook = Callable[[str | None, str, dict[str, Any]], None]


class AsyncServerOutput(ABC):
    """An `Output` whose server runs on its own thread with its own asyncio loop."""

    name: ClassVar[str]
    label: ClassVar[str]  # how the log names the protocol ("modbus", "OPC UA")
    start_timeout_s: ClassVar[float] = 10.0
    stop_timeout_s: ClassVar[float] = 10.0
    # The subclass's module logger, so its records keep the protocol's logger name.
    _log: ClassVar[logging.Logger]

    def __init__(self, *, deadline_s: float | None = None) -> None:
        self.deadline_s = deadline_s
        self._control: StationControl | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[str, Any]] | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: str | None = None
        self.sent = 0
        self.dropped = 0
        self.busy_rejected = 0
        self.late = 0
        self._state: tuple[str, str | None] = ("stopped", None)
        self._last: deque[str] = deque(maxlen=10)
        self.on_command: CommandHook | None = None

    # -- what a subclass supplies --------------------------------------------------------------

    @abstractmethod
    def _where(self) -> str:
        """The address served, as shown in status and log lines."""

    @abstractmethod
    async def _serve(self) -> None:
        """Build and start the server on the running loop (raise when it cannot serve)."""

    @abstractmethod
    async def _shutdown(self) -> None:
        """Stop the server (a no-op when `_serve` never got as far as creating it)."""

    @abstractmethod
    async def _apply(self, kind: str, payload: Any) -> None:
        """Apply one queued item ("result", "state", or a subclass's own kinds)."""

    def _log_started(self) -> None:
        self._log.info("%s server on %s", self.label, self._where())

    def _state_detail(self) -> tuple[OutputState, str]:
        """The state and detail `status()` shows when there is no error (override to add
        client counts)."""
        if self._started.is_set():
            return "listening", self._where()
        return "off", ""

    # -- Output ------------------------------------------------------------------------------

    def start(self, control: StationControl) -> None:
        self._control = control
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-server", daemon=True)
        self._thread.start()
        if not self._started.wait(self.start_timeout_s):
            self._error = self._error or f"server did not start within {self.start_timeout_s:g} s"
        if self._error:
            self._log.error("%s %s: %s", self.label, self._where(), self._error)
        else:
            self._log_started()

    def publish(self, record: dict[str, Any]) -> None:
        self._put(("result", record))

    def state_changed(self, state: str, fault: str | None) -> None:
        self._state = (state, fault)
        self._put(("state", (state, fault)))

    def alarm(self, message: str) -> None:
        self._last.append(f"alarm: {message}")

    def status(self) -> OutputStatus:
        state: OutputState = "error"
        detail = self._error or ""
        if not self._error:
            state, detail = self._state_detail()
        queued = self._queue.qsize() if self._queue is not None else 0
        return OutputStatus(
            self.name, state, detail, queued, self.sent, self.dropped, tuple(self._last)
        )

    def close(self) -> None:
        loop = self._loop
        if loop is not None and loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            try:
                fut.result(self.stop_timeout_s)
            except Exception:  # noqa: BLE001 - closing anyway
                self._log.exception("%s server shutdown failed", self.label)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(self.stop_timeout_s)
            self._thread = None

    # -- the server's thread -------------------------------------------------------------------

    def _put(self, item: tuple[str, Any]) -> None:
        """Queue an item from any thread; a result that cannot be queued counts as dropped."""
        loop, queue = self._loop, self._queue
        if loop is None or queue is None or not loop.is_running():
            self.dropped += item[0] == "result"
            return

        def put() -> None:
            if queue.qsize() >= QUEUE_MAX:
                self.dropped += 1
                return
            queue.put_nowait(item)

        try:
            loop.call_soon_threadsafe(put)
        except RuntimeError:  # the loop closed meanwhile
            self.dropped += item[0] == "result"

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._open())
        except Exception as exc:  # noqa: BLE001 - shown on the Integration page
            self._log.exception("%s server failed to start", self.label)
            self._error = f"cannot serve on {self._where()}: {exc}"
            self._started.set()
            loop.close()
            return
        # Only now may other threads put: `_put` needs both the loop and the queue.
        self._loop = loop
        self._started.set()
        try:
            loop.run_forever()
        finally:
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    async def _open(self) -> None:
        await self._serve()
        self._queue = asyncio.Queue()
        asyncio.get_running_loop().create_task(self._consume())

    async def _consume(self) -> None:
        assert self._queue is not None
        while True:
            kind, payload = await self._queue.get()
            try:
                await self._apply(kind, payload)
            except Exception:  # noqa: BLE001 - keep serving the next items
                self._log.exception("%s: applying %s failed", self.label, kind)
            finally:
                self._queue.task_done()
