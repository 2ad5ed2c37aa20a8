"""An append-only, fsync'd journal of JSON lines: results waiting for the database.

The results store writes a row here when SQLite refuses it (locked, full, I/O error, malformed)
and replays the lines in order when the database works again, in this run or the next one. One
line per record, ``json.dumps`` with ASCII escapes, so a file name with undecodable bytes (a str
with surrogate escapes) survives the round trip.

Durability: every append reaches the operating system at once (``os.write`` on an ``O_APPEND``
descriptor), so an application crash loses nothing; ``fsync`` runs in small batches
(``sync_every`` records or ``sync_interval_s`` seconds, whichever comes first, and on
:meth:`Journal.sync` / :meth:`Journal.close`) so a power cut loses at most that batch.

A failed append (disk full) truncates the file back to where it was, so a half-written line
never sits in front of later records, and raises ``OSError``. A torn last line left by a crash
(no newline) or an undecodable line is skipped when read and counted in ``bad``.

One writer per file: the journal holds an exclusive ``flock`` on it while open, so a second
process on the same database (a GUI beside a headless run, an ``export-csv``) cannot replay or
truncate records under the first one's feet; :class:`JournalBusy` tells it to use another file.

Not thread-safe: the store calls it under its write lock.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: one station process per database assumed
    fcntl = None  # type: ignore[assignment]  # no fcntl on Windows; None is checked before use

__all__ = ["Journal", "JournalBusy", "append_rejected", "close_journals", "open_journals"]

log = logging.getLogger(__name__)
_READ_CHUNK = 1 << 20


class JournalBusy(OSError):
    """Another process holds this journal file."""


class Journal:
    """Records waiting in ``path`` (one JSON object per line).

    Parameters
    ----------
    path
        The journal file (created empty if missing, removed on close when empty). A file left by
        an earlier run is read: its records are :attr:`pending`.
    sync_every, sync_interval_s
        fsync after this many appended records, or when this long has passed since the last
        fsync (checked on append and by :meth:`sync_if_due`).
    """

    def __init__(
        self, path: str | os.PathLike[str], *, sync_every: int = 32, sync_interval_s: float = 0.5
    ) -> None:
        self.path = Path(path)
        self.sync_every = max(1, int(sync_every))
        self.sync_interval_s = float(sync_interval_s)
        self.bad = 0  # torn or undecodable lines skipped (their records are gone)
        self._fd: int | None = None
        self._read_pos = 0  # byte offset of the first record not yet consumed
        self._size = 0  # bytes in the file as we know it
        self._pending = 0
        self._unsynced = 0
        self._last_sync = time.monotonic()
        self._open()
        try:
            self._scan_existing()
        except BaseException:
            self._release()
            raise

    # -- state -------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Records appended (or found at open) and not yet consumed."""
        return self._pending

    @property
    def unsynced(self) -> int:
        """Records written to the OS but not yet fsync'd."""
        return self._unsynced

    def _scan_existing(self) -> None:
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        newlines = 0
        last = b"\n"
        with self.path.open("rb") as fh:
            while chunk := fh.read(_READ_CHUNK):
                newlines += chunk.count(b"\n")
                last = chunk[-1:]
        if last != b"\n":  # a crash in the middle of a write: that record never completed
            with self.path.open("rb") as fh:  # find the start of the torn line
                fh.seek(max(0, size - _READ_CHUNK))
                tail = fh.read()
            cut = tail.rfind(b"\n")
            size = size - len(tail) + cut + 1 if cut >= 0 else size - len(tail)
            os.ftruncate(self._fd, size)
            os.fsync(self._fd)
            self.bad += 1
            log.error("journal %s: torn last line removed (a crash while writing it)", self.path)
        self._size = size
        self._pending = newlines

    # -- writing -----------------------------------------------------------------------------

    def _open(self) -> None:
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise JournalBusy(f"{self.path} is in use by another process") from None
        self._fd = fd
        if created:  # the new name must survive a power cut too
            _fsync_dir(self.path.parent)

    def _release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # also drops the flock
            self._fd = None

    def append(self, record: dict[str, Any]) -> None:
        """Write one record (raises ``OSError`` when it could not be written, leaving the file as
        it was)."""
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode("ascii")
        self._open()
        assert self._fd is not None
        before = self._size
        try:
            view = memoryview(line)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        except OSError:
            try:
                os.ftruncate(self._fd, before)
            except OSError as exc:  # pragma: no cover - truncate frees space; rarely fails
                log.error("journal %s: cannot remove a partial line: %s", self.path, exc)
            raise
        self._size = before + len(line)
        self._pending += 1
        self._unsynced += 1
        try:
            if self._unsynced >= self.sync_every:
                self.sync()
            else:
                self.sync_if_due()
        except OSError as exc:  # the line is written (in the OS); only its durability is at risk
            log.error("journal %s: fsync failed: %s", self.path, exc)

    def sync_if_due(self) -> None:
        if self._unsynced and time.monotonic() - self._last_sync >= self.sync_interval_s:
            self.sync()

    def sync(self) -> None:
        """fsync what was appended (raises ``OSError`` on an I/O error)."""
        if self._fd is not None and self._unsynced:
            os.fsync(self._fd)
        self._unsynced = 0
        self._last_sync = time.monotonic()

    # -- reading -----------------------------------------------------------------------------

    def read(self, max_records: int) -> list[tuple[dict[str, Any] | None, int]]:
        """Up to ``max_records`` pending records in order, each with the byte offset just after
        it (pass it to :meth:`consume`). An undecodable line is returned as ``None``."""
        out: list[tuple[dict[str, Any] | None, int]] = []
        if not self._pending:
            return out
        with self.path.open("rb") as fh:
            fh.seek(self._read_pos)
            pos = self._read_pos
            while len(out) < max_records and pos < self._size:
                line = fh.readline()
                if not line.endswith(b"\n"):
                    break
                pos += len(line)
                try:
                    record = json.loads(line)
                    if not isinstance(record, dict):
                        raise ValueError("not an object")
                except ValueError:
                    record = None
                out.append((record, pos))
        return out

    def consume(self, end: int, records: int) -> None:
        """Mark ``records`` records, up to byte ``end``, as written to the database. When all are
        consumed the file is emptied (and removed on close)."""
        self._read_pos = end
        self._pending = max(0, self._pending - records)
        if self._read_pos >= self._size:
            self._truncate()

    def discard(self) -> None:
        """Empty the journal (its records are given up)."""
        self._truncate()

    def _truncate(self) -> None:
        self._open()
        assert self._fd is not None
        os.ftruncate(self._fd, 0)
        os.fsync(self._fd)
        self._read_pos = self._size = self._pending = self._unsynced = 0

    def close(self) -> None:
        """fsync and close; an empty journal file is removed. A closed journal can still
        :meth:`append` (it reopens the file)."""
        if self._fd is None:
            return
        try:
            self.sync()
            if self._size == 0:  # removed while we still hold the lock: no one else can race
                try:
                    self.path.unlink(missing_ok=True)
                except OSError as exc:
                    log.warning("journal %s: cannot remove the empty file: %s", self.path, exc)
        finally:
            self._release()


def open_journals(
    db_path: Path, *, sync_every: int = 32, sync_interval_s: float = 0.5
) -> list[Journal]:
    """The journals of database ``db_path``: leftovers of processes that ended with rows still
    journaled (oldest first), then the one to write, ``DB.journal.jsonl`` (or
    ``DB.journal-PID-N.jsonl`` while another live process holds that one). Raises ``OSError``."""
    base = f"{db_path.name}.journal"
    pattern = glob.escape(str(db_path.with_name(base))) + "-*.jsonl"
    others = sorted((Path(p) for p in glob.glob(pattern)), key=lambda p: p.stat().st_mtime)
    kw: dict[str, Any] = {"sync_every": sync_every, "sync_interval_s": sync_interval_s}
    out: list[Journal] = []
    try:
        for path in others:
            try:
                out.append(Journal(path, **kw))
            except JournalBusy:  # a live process's own journal
                continue
        own: Journal | None = None
        names = [f"{base}.jsonl", *(f"{base}-{os.getpid()}-{n}.jsonl" for n in range(100))]
        for name in names:  # the default, else one of our own while another process has it
            path = db_path.with_name(name)
            mine = [j for j in out if j.path == path]  # a leftover we just opened: keep it
            if mine:
                out.remove(mine[0])
                own = mine[0]
                break
            try:
                own = Journal(path, **kw)
                break
            except JournalBusy:
                continue
        if own is None:
            raise JournalBusy(f"{db_path}: no free journal file (100 in use)")
    except BaseException:
        for journal in out:
            journal.close()
        raise
    return [*out, own]


def close_journals(journals: list[Journal]) -> None:
    """Close each (an error is logged: the records stay in the file for the next start)."""
    for journal in journals:
        try:
            journal.close()
        except OSError as exc:
            log.error("journal %s: close failed: %s", journal.path, exc)


def append_rejected(db_path: Path, record: dict[str, Any]) -> str:
    """Keep a record the database refused in ``DB.journal.rejected.jsonl`` (for a person to
    look at; never replayed). Returns where it went, or why it could not be kept."""
    path = db_path.with_name(f"{db_path.name}.journal.rejected.jsonl")
    try:
        with path.open("a", encoding="ascii") as fh:
            fh.write(json.dumps(record) + "\n")
    except OSError as exc:
        log.error("journal %s: not written: %s", path, exc)
        return f"no file ({path.name} not writable: {exc})"
    return path.name


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened; nothing to sync there
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
