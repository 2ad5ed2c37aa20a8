"""Results store: round trip, queries, CSV, retention, a locked database and a failing archive."""

from __future__ import annotations

import csv
import errno
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from app.station import store as store_mod
from app.station.frame import Frame
from app.station.inspection import FrameResult, Rules, Zone
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


@pytest.fixture
def store(tmp_path: Path) -> ResultsStore:
    s = ResultsStore(tmp_path / "db" / "results.sqlite3", tmp_path / "archive", busy_timeout_ms=50)
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
        assert store.add(make_result(1, blobs=1)) is None  # no exception: queued
        assert store.add(make_result(2)) is None
        assert store.pending == 2 and store.failures == 2
        assert store.flush() == 2
        # WAL: the GUI can still read while another process holds the write lock.
        assert [r.frame_id for r in store.recent()] == [0]
    finally:
        other.execute("COMMIT")
        other.close()
    assert store.add(make_result(3)) is not None
    assert store.pending == 0
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


def test_pending_queue_is_bounded(tmp_path: Path) -> None:
    s = ResultsStore(tmp_path / "r.db", tmp_path / "a", busy_timeout_ms=10, pending_max=2)
    other = sqlite3.connect(s.db_path, isolation_level=None, timeout=0.05)
    other.execute("BEGIN EXCLUSIVE")
    for i in range(4):
        assert s.add(make_result(i)) is None
    assert (s.pending, s.lost, s.failures) == (2, 2, 4)
    other.execute("COMMIT")
    other.close()
    s.close()  # close flushes what is left
    with ResultsStore(tmp_path / "r.db", tmp_path / "a") as again:
        assert [r.frame_id for r in again.recent()] == [3, 2]


def test_archive_dir_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "archive"
    blocker.write_text("not a folder")
    with ResultsStore(tmp_path / "r.db", blocker) as s:
        rid = s.add(make_result(1, blobs=1))
        assert rid is not None and s.failures == 1
        row = s.get(rid)
        assert row.verdict == "NG" and row.image_path is None and row.mask_path is None


def test_disk_full_on_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def full(path: Path, data: bytes) -> Path:
        calls.append(path)
        if len(calls) == 2:  # the image got written, the mask hits ENOSPC
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)

    real = store_mod.atomic_write_bytes
    monkeypatch.setattr(store_mod, "atomic_write_bytes", full)
    with ResultsStore(tmp_path / "r.db", tmp_path / "a") as s:
        rid = s.add(make_result(1, blobs=1))
        assert rid is not None and s.failures == 1
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
    assert errors == [] and store.pending == 0
    assert len(store.recent(limit=None)) == 40


def test_closed_store(tmp_path: Path) -> None:
    s = ResultsStore(tmp_path / "r.db", tmp_path / "a")
    s.close()
    assert s.add(make_result(1)) is None and s.failures == 1
    s.close()  # idempotent
    with pytest.raises(StoreError):
        s.recent()


def test_unusable_db_path_raises_clear_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(StoreError, match="cannot open results database"):
        ResultsStore(tmp_path / "f" / "r.db", tmp_path / "a")


def test_database_disk_full_queues(store: ResultsStore, monkeypatch: pytest.MonkeyPatch) -> None:
    real = ResultsStore._insert

    def full(self: ResultsStore, row: object) -> int:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(ResultsStore, "_insert", full)
    assert store.add(make_result(1, blobs=1)) is None
    assert (store.pending, store.failures) == (1, 1)
    monkeypatch.setattr(ResultsStore, "_insert", real)
    assert store.flush() == 0
    assert [r.frame_id for r in store.recent()] == [1]
