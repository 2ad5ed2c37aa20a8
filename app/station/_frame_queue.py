"""The bounded hand-off between the acquisition thread and the inference worker.

Two policies (see :mod:`app.station.pipeline`): free-run, where the newest frame replaces the
oldest and the drop is counted, and triggered, where the producer waits for room. Every frame that
enters is accounted for: taken by the worker, or counted in ``dropped``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from app.station.frame import Frame

_POLL_S = 0.05  # how often a blocked producer looks at the stop flag


@dataclass(frozen=True)
class Queued:
    """A frame in the queue, with what the latency stats need."""

    frame: Frame
    t_put: float  # perf_counter when queued: queue wait = t_taken - t_put
    acquire_ms: float  # time spent inside source.frames() for this frame


class FrameQueue:
    """A bounded hand-off between the two threads.

    ``drop_oldest=True``: ``put`` never blocks; a full queue loses its oldest frame (counted).
    ``drop_oldest=False``: ``put`` waits for room, calling ``on_full`` first.
    """

    def __init__(self, maxsize: int, *, drop_oldest: bool) -> None:
        if maxsize < 1:
            raise ValueError(f"queue size must be >= 1, not {maxsize}")
        self.maxsize = maxsize
        self.drop_oldest = drop_oldest
        self._items: deque[Queued] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._drops_pending = 0  # drops since the last get: they precede every queued frame
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: Queued, stop: threading.Event, on_full: Callable[[], None]) -> bool:
        """Queue ``item``; False when the queue is closing (the caller should stop acquiring).

        A frame in hand when the queue closes is still queued, past the bound if need be: it
        was acquired, so the draining worker judges it. Only a hard ``stop`` (the stop timed
        out) turns it into a counted drop.
        """
        if not self.drop_oldest and len(self._items) >= self.maxsize:
            on_full()  # outside the lock: the alarm callback may take its time
        with self._cond:
            if self.drop_oldest and len(self._items) >= self.maxsize and not self._closed:
                self._items.popleft()
                self.dropped += 1
                self._drops_pending += 1
            while len(self._items) >= self.maxsize and not self._closed:
                if stop.is_set():
                    self.dropped += 1  # acquired but never queued: keep the books exact
                    return False
                self._cond.wait(_POLL_S)
            if stop.is_set():
                self.dropped += 1
                return False
            self._items.append(item)
            self._cond.notify_all()
            return not self._closed

    def get_batch(self, max_n: int, timeout: float) -> tuple[list[Queued], int] | None:
        """Up to ``max_n`` waiting frames (oldest first) and the drops before them.

        Returns ``([], 0)`` on timeout and None once the queue is closed and empty.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self._closed:
                    return None
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return [], 0
                self._cond.wait(remaining)
            batch = [self._items.popleft() for _ in range(min(max_n, len(self._items)))]
            drops, self._drops_pending = self._drops_pending, 0
            self._cond.notify_all()
            return batch, drops

    def close(self) -> None:
        """No more puts; the consumer drains what is queued, then gets None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def count_dropped(self, n: int) -> None:
        """Frames taken out but never processed (the pipeline stopped) count as dropped."""
        with self._cond:
            self.dropped += n

    def discard(self) -> int:
        """Empty the queue (at stop); the discarded frames count as dropped."""
        with self._cond:
            n = len(self._items)
            self._items.clear()
            self.dropped += n
            self._cond.notify_all()
            return n
