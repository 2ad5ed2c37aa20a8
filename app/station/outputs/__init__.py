"""Plant outputs: OPC UA, Modbus TCP and MQTT sinks and controls on the inspection session."""

from __future__ import annotations

from app.station.outputs.base import JobBusy, Output, OutputState, OutputStatus, StationControl
from app.station.outputs.hub import OutputHub

__all__ = ["JobBusy", "Output", "OutputHub", "OutputState", "OutputStatus", "StationControl"]
