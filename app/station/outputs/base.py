"""The protocol every plant output implements, and what a PLC may ask of the station.

An output (OPC UA, Modbus TCP, MQTT) is a Qt-free sink on the session's results plus, for the
controllers that can drive the line, a control surface. The hub (`app.station.outputs.hub`) owns
the outputs, feeds them the result records and state changes, and hands them a `StationControl`.

How the hub builds an output: when the recipe has ``[outputs.NAME]`` (NAME in opcua, modbus,
mqtt), it imports ``app.station.outputs.NAME`` and calls its module-level ``create_output(config, *, settings,
recipe) -> Output``. ``config`` is ``recipe.outputs[NAME]`` (the keys validated in
``app.station._recipe_schema.OUTPUT_KEYS``), with ``job_deadline_ms`` from ``[outputs]`` filled
in when the section has none. A ``create_output`` that raises ``ValueError``/``OSError`` leaves
that output in state "error" with the message; the others still run.

A result record is the CLI's JSON line (``app.station.records.result_record``) plus
``result_id`` (int, counts up from 1 for the hub's lifetime), ``timestamp`` (acquisition time,
epoch seconds) and, for a triggered job,
``part_id``, ``job_id``, ``late``, ``latency_ms`` and ``deadline_ms``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

OutputState = Literal["off", "listening", "connected", "queueing", "error"]


class JobBusy(RuntimeError):
    """A trigger arrived while a job was running: it is counted and answered busy, not queued."""


@dataclass(frozen=True)
class OutputStatus:
    """What an output shows on the Integration page: its state and its last messages."""

    name: str
    state: OutputState
    detail: str = ""
    queued: int = 0
    sent: int = 0
    dropped: int = 0
    last_messages: tuple[str, ...] = ()


class StationControl(Protocol):
    """What a PLC may ask of the station (implemented by the hub over the session)."""

    def recipes(self) -> list[str]: ...

    def selected_recipe(self) -> str: ...

    def select_recipe(self, name: str) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def run_job(self, part_id: str | None, deadline_s: float | None = None) -> dict[str, Any]:
        """Run one triggered job and return its result record (raises `JobBusy` when busy)."""
        ...

    def counters(self) -> dict[str, int | float]:
        """judged, pass, ng, error, yield (PASS share of judged, 0..1)."""
        ...

    def state(self) -> tuple[str, str | None]:
        """("stopped" | "running" | "fault", fault reason or None)."""
        ...


class Output(Protocol):
    """One plant output: started once, fed every result and state change, closed at the end."""

    name: str

    def start(self, control: StationControl) -> None:
        """Open sockets / servers (must not block for long; failures go into `status()`)."""
        ...

    def publish(self, record: dict[str, Any]) -> None:
        """One result record (the CLI JSON line's fields). Never blocks the line: queue it."""
        ...

    def state_changed(self, state: str, fault: str | None) -> None:
        """The station's state: "stopped" | "running" | "fault" (with the reason)."""
        ...

    def status(self) -> OutputStatus: ...

    def close(self) -> None: ...
