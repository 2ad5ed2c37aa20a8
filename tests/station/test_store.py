"""Results store: round trip (PASS, NG, ERROR), queries, CSV, retention, the v1 -> v2 migration,
a locked database and a failing archive.

Fault injection in depth (journal, malformed files, disk floors, other processes, non-UTF-8
names) is in test_store_faults.py."""

from __future__ import annotations

import csv
import errno
import json
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from app.station import _store_archive as archive_mod
from app.station.frame import Frame
from app.station.inspection import FrameResult, Rules, Zone, error_inspection
from app.station.inspector import judge
from app.station.store import ResultsStore, StoreError

SEAL = Zone("seal", "critical", ((0, 0), (15, 0), (15, 15), (0, 15)), min_area_px=1)
RULES = Rules(threshold=0.5, min_area_px=3, max_count=0, zones=(SEAL,))


def make_result(frame_id: int, *, blobs: int = 0, ts: float = 1_700_000_000.0) -> FrameResult:
    """A 32x48 frame; ``blobs`` 2x2 defects in a row (the first one in the 'seal' zone)."""
    image = np.full((32, 48), 40, np.uint8)
    prob = np.zeros((32, 48), np.float32)
    for k in range(blobs):
        prob[4:6, 4 + 12 * k : 6 + 12 * k] = 0.9
        image[4:6, 4 + 12 * k : 6 + 12 * k] = 200
    frame = Frame(image, frame_id, ts + frame_id, "folder:test")
    ins = judge(prob, RULES, pixel_size_mm=0.1, frame_id=frame_id, source=frame.source,
                timestamp=frame.timestamp, model_id="m1", timings_ms={"infer": 2.5})  # fmt: skip
    prob.flags.writeable = False
    return FrameResult(frame, prob, ins)


def count_rows(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM inspections").fetchone()[0])
    finally:
        conn.close()


def error_result(
    frame_id: int, *, source: str = "folder:test", path: str | None = None, readable: bool = False
) -> FrameResult:
    """An ERROR result: an unreadable file (0x0 image) or a model fault (image, no map)."""
    meta = {"path": path} if path is not None else {}
    if readable:
        frame = Frame(np.full((16, 24), 7, np.uint8), frame_id, 1_700_000_100.0, source, meta)
        reason = "model output is not finite (NaN)"
    else:
        reason = f"cannot read {path or 'frame'}: not an image"
        frame = Frame.unreadable(frame_id, 1_700_000_100.0, source, reason, meta)
    ins = error_inspection(frame, reason, rules=RULES, model_id="m1")
    return FrameResult(frame, None, ins)


@pytest.fixture
def store(tmp_path: Path) -> ResultsStore:
    s = ResultsStore(
        tmp_path / "db" / "results.sqlite3", tmp_path / "archive", busy_timeout_ms=50,
        retry_interval_s=0,
    )  # fmt: skip
    yield s
    s.close()


def test_round_trip_pass_and_ng(store: ResultsStore) -> None:
    ok_id = store.add(make_result(1), recipe_version=3)
    ng = make_result(2, blobs=2)
    ng_id = store.add(ng, recipe_version=3)
    assert (ok_id, ng_id) == (1, 2)

    row = store.get(ng_id)
    assert row is not None
    assert (row.frame_id, row.source, row.verdict, row.model_id) == (2, "folder:test", "NG", "m1")
    assert row.timestamp == pytest.approx(ng.frame.timestamp)
    assert row.reasons == ng.inspection.reasons
    assert row.reasons == ("defect of 4 px in critical zone 'seal'", "2 defects > max 0")
    assert (row.n_defects, row.total_area_px, row.recipe_version) == (2, 8, 3)
    assert (row.threshold, row.min_area_px) == (0.5, 3)
    assert row.rules["zones"][0]["name"] == "seal"
    assert row.timings_ms["infer"] == 2.5 and "judge" in row.timings_ms
    assert row.defects == ng.inspection.defects  # exact Defect round trip incl. mm2 and zone

    img, mask = store.load_archived(row)
    np.testing.assert_array_equal(img, ng.frame.image)
    assert mask.dtype == np.uint8 and int((mask == 255).sum()) == 8
    day = time.strftime("%Y-%m-%d", time.localtime(ng.frame.timestamp))
    assert row.image_path.parent == store.archive_dir / day
    assert row.image_path.is_file() and row.mask_path.is_file()

    ok = store.get(ok_id)
    assert ok.verdict == "PASS" and ok.image_path is None and store.load_archived(ok) is None
    assert store.get(999) is None


def test_archive_ng_off(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "r.db", tmp_path / "a", archive_ng=False) as s:
        rid = s.add(make_result(1, blobs=1))
        assert s.get(rid).image_path is None
    assert not (tmp_path / "a").exists()


def test_recent_filters_and_order(store: ResultsStore) -> None:
    for i in range(6):
        store.add(make_result(i, blobs=i % 2))
    rows = store.recent()
    assert [r.frame_id for r in rows] == [5, 4, 3, 2, 1, 0]
    assert [r.frame_id for r in store.recent(verdict="NG")] == [5, 3, 1]
    assert [r.frame_id for r in store.recent(limit=2)] == [5, 4]
    t0 = 1_700_000_000.0
    assert [r.frame_id for r in store.recent(since=t0 + 4)] == [5, 4]
    assert [r.frame_id for r in store.recent(until=t0 + 1)] == [0]
    assert store.recent(model_id="other") == []
    with pytest.raises(ValueError, match="verdict"):
        store.recent(verdict="ng")


def test_yield_series_and_pareto(store: ResultsStore) -> None:
    for i in range(6):  # timestamps t0 + 0..5; t0 is a multiple of 10 s; 1 and 4 NG
        store.add(make_result(i, blobs=3 if i in (1, 4) else 0))
    t0 = 1_700_000_000.0
    assert store.yield_series(5.0) == [(t0, 5, 3), (t0 + 5, 1, 1)]
    assert store.yield_series(10.0) == [(t0, 6, 4)]
    assert store.defect_pareto("zone") == [("(no zone)", 4), ("seal", 2)]
    assert store.defect_pareto("size") == [("<50 px", 6)]
    with pytest.raises(ValueError):
        store.defect_pareto("colour")  # type: ignore[arg-type]


def test_export_csv(store: ResultsStore, tmp_path: Path) -> None:
    store.add(make_result(1))
    store.add(make_result(2, blobs=1))
    out = tmp_path / "out" / "results.csv"
    out.parent.mkdir()
    assert store.export_csv(out) == 2
    rows = list(csv.DictReader(out.open(newline="")))
    assert [r["frame_id"] for r in rows] == ["2", "1"]
    assert rows[0]["verdict"] == "NG" and rows[0]["reasons"] == (
        "defect of 4 px in critical zone 'seal'; 1 defect > max 0"
    )
    assert rows[0]["image_path"].endswith("_image.png") and rows[1]["image_path"] == ""
    assert rows[1]["reasons"] == "" and rows[1]["total_area_px"] == "0"
    assert store.export_csv(out, verdict="PASS") == 1
    assert len(list(csv.DictReader(out.open(newline="")))) == 1


def test_retention_deletes_old_rows_and_files(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "r.db", tmp_path / "a", retention_rows=3) as s:
        ids = [s.add(make_result(i, blobs=1)) for i in range(5)]
        old = [p for p in (tmp_path / "a").rglob("*.png")]
        assert len(old) == 6  # 3 kept rows x (image + mask)
        assert [r.id for r in s.recent()] == ids[-1:-4:-1]
        assert all(r.image_path.is_file() for r in s.recent())
        n_defects = sqlite3.connect(tmp_path / "r.db").execute("SELECT COUNT(*) FROM defects")
        assert n_defects.fetchone()[0] == 3


def test_locked_database_queues_then_lands(store: ResultsStore) -> None:
    store.add(make_result(0))
    other = sqlite3.connect(store.db_path, isolation_level=None, timeout=0.05)
    other.execute("BEGIN EXCLUSIVE")
    try:
        assert store.add(make_result(1, blobs=1)) is None  # no exception: journaled
        assert store.add(make_result(2)) is None
        assert store.journaled == 2 and store.failures == 2 and store.stored == 1
        assert store.flush() == 2
        # WAL: the GUI can still read while another process holds the write lock.
        assert [r.frame_id for r in store.recent()] == [0]
    finally:
        other.execute("COMMIT")
        other.close()
    assert store.add(make_result(3)) is not None
    assert (store.journaled, store.stored, store.lost) == (0, 4, 0)
    assert [r.frame_id for r in store.recent()] == [3, 2, 1, 0]
    assert [r.id for r in store.recent()] == [4, 3, 2, 1]  # acquisition order kept
    assert store.recent(verdict="NG")[0].image_path.is_file()  # archived while locked


def test_flush_after_lock_released(store: ResultsStore) -> None:
    other = sqlite3.connect(store.db_path, isolation_level=None, timeout=0.05)
    other.execute("BEGIN EXCLUSIVE")
    assert store.add(make_result(1)) is None
    other.execute("ROLLBACK")
    other.close()
    assert store.flush() == 0
    assert [r.frame_id for r in store.recent()] == [1]


def test_close_while_locked_keeps_the_journal(tmp_path: Path) -> None:
    s = ResultsStore(tmp_path / "r.db", tmp_path / "a", busy_timeout_ms=10)
    other = sqlite3.connect(s.db_path, isolation_level=None, timeout=0.05)
    other.execute("BEGIN EXCLUSIVE")
    for i in range(4):
        assert s.add(make_result(i)) is None
    assert (s.journaled, s.lost, s.failures, s.stored) == (4, 0, 4, 0)
    s.close()  # the last try fails too: the rows stay in the journal file
    assert (tmp_path / "r.db.journal.jsonl").is_file()
    other.execute("COMMIT")
    other.close()
    with ResultsStore(tmp_path / "r.db", tmp_path / "a") as again:
        assert (again.stored, again.journaled) == (4, 0)
        assert [r.frame_id for r in again.recent()] == [3, 2, 1, 0]
    assert not (tmp_path / "r.db.journal.jsonl").exists()


def test_archive_dir_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "archive"
    blocker.write_text("not a folder")
    with ResultsStore(tmp_path / "r.db", blocker) as s:
        rid = s.add(make_result(1, blobs=1))
        assert rid is not None and s.failures == 1 and s.archive_failures == 1
        row = s.get(rid)
        assert row.verdict == "NG" and row.image_path is None and row.mask_path is None


def test_disk_full_on_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def full(path: Path, data: bytes) -> Path:
        calls.append(path)
        if len(calls) == 2:  # the image got written, the mask hits ENOSPC
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)

    real = archive_mod.atomic_write_bytes
    monkeypatch.setattr(archive_mod, "atomic_write_bytes", full)
    with ResultsStore(tmp_path / "r.db", tmp_path / "a") as s:
        rid = s.add(make_result(1, blobs=1))
        assert rid is not None and s.failures == 1 and s.archive_failures == 1
        assert s.get(rid).image_path is None
    assert list((tmp_path / "a").rglob("*.png")) == []  # no orphan image without its mask


def test_concurrent_writer_and_reader(store: ResultsStore) -> None:
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for i in range(40):
                store.add(make_result(i, blobs=i % 3))
        except BaseException as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    t = threading.Thread(target=writer)
    t.start()
    while t.is_alive():
        store.recent(limit=10)
    t.join()
    assert errors == [] and store.journaled == 0 and store.stored == 40
    assert len(store.recent(limit=None)) == 40


def test_closed_store(tmp_path: Path) -> None:
    s = ResultsStore(tmp_path / "r.db", tmp_path / "a")
    s.close()
    assert s.add(make_result(1)) is None  # too late for this store: journaled for the next one
    assert (s.journaled, s.lost) == (1, 0)
    s.close()  # idempotent
    with pytest.raises(StoreError):
        s.recent()
    with ResultsStore(tmp_path / "r.db", tmp_path / "a") as again:
        assert [r.frame_id for r in again.recent()] == [1]


def test_unusable_db_path_raises_clear_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(StoreError, match="cannot open results database"):
        ResultsStore(tmp_path / "f" / "r.db", tmp_path / "a")


def test_database_disk_full_journals(store: ResultsStore, monkeypatch: pytest.MonkeyPatch) -> None:
    real = ResultsStore._insert_rows

    def full(self: ResultsStore, rows: object) -> list[int]:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(ResultsStore, "_insert_rows", full)
    assert store.add(make_result(1, blobs=1)) is None
    assert (store.journaled, store.failures) == (1, 1)
    monkeypatch.setattr(ResultsStore, "_insert_rows", real)
    assert store.flush() == 0
    assert [r.frame_id for r in store.recent()] == [1]


def test_error_rows_round_trip(tmp_path: Path) -> None:
    with ResultsStore(tmp_path / "results.db", tmp_path / "archive") as s:
        unreadable = s.add(error_result(1, path="/data/line1/broken.png"))
        fault = s.add(error_result(2, readable=True))
        s.add(make_result(3))
        s.add(make_result(4, blobs=1))
        row = s.get(unreadable)
        assert (row.verdict, row.path, row.n_defects) == ("ERROR", "/data/line1/broken.png", 0)
        assert row.error == "cannot read /data/line1/broken.png: not an image"
        assert row.reasons == (row.error,)
        assert row.image_path is None and s.load_archived(row) is None  # nothing to archive
        row = s.get(fault)
        assert row.error == "model output is not finite (NaN)" and row.path is None
        assert row.image_path.is_file() and row.mask_path is None  # image only
        image, mask = s.load_archived(row)
        assert image.shape == (16, 24) and not mask.any()
        assert [r.frame_id for r in s.recent(verdict="ERROR")] == [2, 1]
        assert s.verdict_counts() == {"PASS": 1, "NG": 1, "ERROR": 2}
        assert s.yield_series(1e10) == [(0.0, 4, 1)]  # an ERROR is never a pass
        out = tmp_path / "x.csv"
        assert s.export_csv(out, verdict="ERROR") == 2
        rows = list(csv.DictReader(out.open(newline="", encoding="utf-8")))
        assert rows[1]["verdict"] == "ERROR" and rows[1]["path"] == "/data/line1/broken.png"
        assert rows[1]["error"].startswith("cannot read") and rows[0]["mask_path"] == ""
    assert count_rows(tmp_path / "results.db") == 4


V1_SCHEMA = """
CREATE TABLE inspections (
    id INTEGER PRIMARY KEY AUTOINCREMENT, frame_id INTEGER NOT NULL, source TEXT NOT NULL,
    timestamp REAL NOT NULL, verdict TEXT NOT NULL CHECK (verdict IN ('PASS', 'NG')),
    reasons TEXT NOT NULL, n_defects INTEGER NOT NULL, total_area_px INTEGER NOT NULL,
    model_id TEXT NOT NULL, recipe_version INTEGER NOT NULL, threshold REAL NOT NULL,
    min_area_px INTEGER NOT NULL, rules TEXT NOT NULL, timings TEXT NOT NULL, image_path TEXT,
    mask_path TEXT);
CREATE TABLE defects (
    id INTEGER PRIMARY KEY, inspection_id INTEGER NOT NULL REFERENCES inspections(id)
    ON DELETE CASCADE, area_px INTEGER NOT NULL, area_mm2 REAL, bbox TEXT NOT NULL,
    centroid TEXT NOT NULL, max_prob REAL NOT NULL, mean_prob REAL NOT NULL, zone TEXT);
CREATE INDEX inspections_timestamp ON inspections(timestamp);
CREATE INDEX inspections_verdict ON inspections(verdict);
CREATE INDEX inspections_model ON inspections(model_id);
CREATE INDEX defects_inspection ON defects(inspection_id);
PRAGMA user_version = 1;
"""


def test_migration_v1_to_v2_keeps_rows(tmp_path: Path) -> None:
    db = tmp_path / "results.db"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.executescript(V1_SCHEMA)
    for i in range(5):
        conn.execute(
            "INSERT INTO inspections (frame_id, source, timestamp, verdict, reasons, n_defects, "
            "total_area_px, model_id, recipe_version, threshold, min_area_px, rules, timings, "
            "image_path, mask_path) VALUES (?, 'folder:old', ?, ?, ?, ?, 4, 'm0', 2, 0.5, 3, "
            "'{}', '{\"infer\": 1.0}', ?, NULL)",
            (i, 1_600_000_000.0 + i, "NG" if i % 2 else "PASS",
             json.dumps(["x"] if i % 2 else []), i % 2, "d/i.png" if i % 2 else None),
        )  # fmt: skip
    conn.execute(
        "INSERT INTO defects (inspection_id, area_px, area_mm2, bbox, centroid, max_prob, "
        "mean_prob, zone) VALUES (4, 4, NULL, '[1, 2, 2, 2]', '[2.0, 3.0]', 0.9, 0.8, 'seal')"
    )
    conn.execute("DELETE FROM inspections WHERE id <= 2")  # retention took the oldest two
    conn.close()
    with ResultsStore(db, tmp_path / "archive") as s:
        rows = s.recent()
        assert [(r.id, r.frame_id, r.verdict) for r in rows] == [
            (5, 4, "PASS"), (4, 3, "NG"), (3, 2, "PASS"),
        ]  # fmt: skip
        assert rows[1].defects[0].zone == "seal" and rows[1].reasons == ("x",)
        assert rows[1].image_path == tmp_path / "archive" / "d/i.png"
        assert (rows[0].error, rows[0].path) == (None, None)
        assert s.add(error_result(9)) == 6  # ERROR allowed now; ids continue
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == 3  # v1 -> v2 -> v3 (classes)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT COUNT(*) FROM inspections").fetchone()[0] == 4
    conn.close()
