"""The record of one result, as the CLI prints it and the PLC outputs send it.

One function so that a JSON line on stdout, an MQTT message, an OPC UA ResultReady event and a
Modbus register set all say the same thing about a frame.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from app.station.inspection import FrameResult

__all__ = ["result_record"]


def result_record(result: FrameResult) -> dict[str, Any]:
    """The JSON object printed for one judged frame."""
    insp = result.inspection
    record: dict[str, Any] = {
        "frame": insp.frame_id,
        "source": insp.source,
        "verdict": insp.verdict,
        "defects": [_rounded(asdict(d)) for d in insp.defects],
        "timings_ms": {k: round(float(v), 3) for k, v in insp.timings_ms.items()},
        "reasons": list(insp.reasons),
        "model": insp.model_id,
    }
    if insp.verdict == "ERROR":
        record["error"] = insp.error or "not judged"
    path = result.frame.metadata.get("path")
    if path is not None:
        record["path"] = str(path)  # a non-UTF-8 name stays lossless: json escapes it (\udcxx)
    for key in ("part_id", "late", "result_id"):
        if key in result.extra:
            record[key] = result.extra[key]
    if result.dropped_before:
        record["dropped_before"] = result.dropped_before
    return record


def _rounded(value: Any) -> Any:
    """Floats to 4 decimals (also inside bbox/centroid tuples): readable lines, no false precision."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value
