"""The source protocol: something that yields frames until closed."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from app.station.frame import Frame


class SourceError(RuntimeError):
    """A source cannot be opened or has failed for good (message says which and why)."""


@dataclass
class SourceStats:
    """Counters a source keeps; read by the pipeline's stats and the UI."""

    delivered: int = 0
    skipped: int = 0  # unreadable files, incomplete buffers ...
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)  # the last few messages, newest last


@runtime_checkable
class Source(Protocol):
    """Opened on construction or by ``open()``; ``frames()`` yields until exhausted or ``close()``.

    ``frames()`` is called from the acquisition thread; ``close()`` may be called from any thread
    and must make ``frames()`` return promptly (fetch with a timeout, never block forever).
    ``triggered`` is True when every frame is a part that needs a verdict (never drop).
    """

    name: str
    stats: SourceStats
    triggered: bool

    def frames(self) -> Iterator[Frame]: ...

    def close(self) -> None: ...
