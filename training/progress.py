"""Progress for people (a terminal bar from Keras) and for the GUI (one JSON object per line).

The GUI reads stdout line by line through QProcess, so JSON lines are flushed at once and nothing
else is ever printed to stdout in JSON mode (logs go to stderr and ``train.log``).
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Literal, TextIO

ProgressMode = Literal["human", "json", "none"]


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf; the GUI's parser must never choke on a line."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _clean(value.item())
    return value


class Progress:
    def __init__(self, mode: ProgressMode = "human", stream: TextIO | None = None) -> None:
        self.mode = mode
        self.stream = stream or sys.stdout

    def emit(self, event: str, **fields: Any) -> None:
        """One event: a JSON line in ``json`` mode, a short text line for ``done``/``error``."""
        if self.mode == "json":
            line = json.dumps({"event": event, **{k: _clean(v) for k, v in fields.items()}})
            self.stream.write(line + "\n")
            self.stream.flush()
        elif self.mode == "human" and event in ("done", "error", "info"):
            text = ", ".join(f"{k}={_fmt(v)}" for k, v in fields.items())
            self.stream.write(f"[{event}] {text}\n")
            self.stream.flush()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
