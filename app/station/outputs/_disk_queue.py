"""A bounded FIFO of messages on disk (SQLite), so that a station restart loses none of them.

One row per message with an increasing sequence number (``AUTOINCREMENT``: never reused, even
after the table empties, so consumers may use it to drop duplicates). When the queue holds
``maxlen`` messages the oldest is deleted to make room and counted in ``dropped``, which is kept
in the file too. Thread-safe: the producer (the pipeline) and the sender thread share it.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path

__all__ = ["DiskQueue"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    topic   TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters VALUES ('dropped', 0);
"""


class DiskQueue:
    """FIFO of ``(seq, topic, payload)`` in ``path``, at most ``maxlen`` long.

    Raises
    ------
    sqlite3.Error, OSError
        The file cannot be opened or created (the caller turns this into a status).
    """

    def __init__(self, path: str | os.PathLike[str], maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError(f"maxlen must be >= 1, not {maxlen}")
        self.path = Path(path)
        self.maxlen = int(maxlen)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=5.0
        )
        self._conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL: a committed message survives a crash of the station; a power cut may lose the
        # last few (fsync per message would cost more than a 30 fps line can give).
        self._conn.execute("PRAGMA synchronous = NORMAL")
        self._conn.executescript(_SCHEMA)
        self._len = int(self._conn.execute("SELECT COUNT(*) FROM queue").fetchone()[0])
        self._dropped = int(
            self._conn.execute("SELECT value FROM counters WHERE name = 'dropped'").fetchone()[0]
        )

    def push(self, topic: str, payload: bytes) -> int:
        """Append a message; returns how many old messages were dropped to make room."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                over = self._len + 1 - self.maxlen
                if over > 0:
                    conn.execute(
                        "DELETE FROM queue WHERE seq IN "
                        "(SELECT seq FROM queue ORDER BY seq LIMIT ?)",
                        (over,),
                    )
                    conn.execute(
                        "UPDATE counters SET value = value + ? WHERE name = 'dropped'", (over,)
                    )
                conn.execute("INSERT INTO queue (topic, payload) VALUES (?, ?)", (topic, payload))
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            dropped = max(over, 0)
            self._len += 1 - dropped
            self._dropped += dropped
            return dropped

    def peek(self) -> tuple[int, str, bytes] | None:
        """The oldest message, left in place, or None when empty."""
        with self._lock:
            row = self._conn.execute(
                "SELECT seq, topic, payload FROM queue ORDER BY seq LIMIT 1"
            ).fetchone()
        return (int(row[0]), str(row[1]), bytes(row[2])) if row else None

    def remove(self, seq: int) -> None:
        """Forget message ``seq`` (delivered). A message already dropped is ignored."""
        with self._lock:
            n = self._conn.execute("DELETE FROM queue WHERE seq = ?", (seq,)).rowcount
            self._len -= max(n, 0)

    def __len__(self) -> int:
        return self._len

    @property
    def dropped(self) -> int:
        """Messages dropped because the queue was full, over the file's whole life."""
        return self._dropped

    def close(self) -> None:
        with self._lock:
            self._conn.close()
