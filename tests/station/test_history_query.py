"""HistoryQuery: filters → store query, a row opened from memory or the archive, CSV."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.station.history_query import ALL_MODELS, HistoryError, HistoryQuery
from app.station.store import ResultsStore
from tests.station.test_store import make_result

NOW = 1_700_000_000.0 + 100  # make_result's timestamps are 1_700_000_000 + frame id


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ResultsStore]:
    s = ResultsStore(tmp_path / "r.sqlite3", tmp_path / "archive", retry_interval_s=0)
    yield s
    s.close()


def test_filters_select_rows_and_remember_models(store: ResultsStore) -> None:
    for i in range(6):
        store.add(make_result(i, blobs=i % 2))  # odd frames NG
    store.add(make_result(50, ts=NOW - 3 * 86400 - 50))  # three days before "now"
    q = HistoryQuery(lambda: store, clock=lambda: NOW)
    assert len(q.rows()) == 6  # default: last 24 h
    assert q.model_choices() == [ALL_MODELS, "m1"]
    q.set_filters(verdict="NG")
    assert {r.verdict for r in q.rows()} == {"NG"} and len(q.rows()) == 3
    q.set_filters(verdict="all", period="all")
    assert len(q.rows()) == 7
    q.set_filters(model="other")
    assert q.rows() == []
    q.set_filters(model="m1", limit=2)
    assert [r.frame_id for r in q.rows()] == [5, 4]  # newest first
    with pytest.raises(ValueError, match="verdict filter"):
        q.set_filters(verdict="MAYBE")
    with pytest.raises(ValueError, match="row limit"):
        q.set_filters(limit=0)


def test_open_prefers_memory_then_archive_and_explains_pass(store: ResultsStore) -> None:
    kept = [make_result(1, blobs=1), make_result(2)]
    old_ng, old_pass = make_result(3, blobs=2), make_result(4)
    for r in (*kept, old_ng, old_pass):
        store.add(r)
    q = HistoryQuery(lambda: store, lambda: kept, clock=lambda: NOW)
    rows = {r.frame_id: r for r in q.rows()}

    result, where = q.open(rows[1])
    assert result is kept[0] and "in memory" in where  # the full probability map

    result, where = q.open(rows[3])
    assert "archive" in where
    np.testing.assert_array_equal(result.frame.image, old_ng.frame.image)
    assert result.inspection.verdict == "NG" and result.prob is not None
    assert [d.area_px for d in result.inspection.defects] == [4, 4]
    assert result.frame.metadata["archived"] is True

    with pytest.raises(HistoryError, match="PASS frames are not archived"):
        q.open(rows[4])


def test_export_writes_every_matching_row(store: ResultsStore, tmp_path: Path) -> None:
    for i in range(5):
        store.add(make_result(i, blobs=i % 2))
    q = HistoryQuery(lambda: store, clock=lambda: NOW)
    q.set_filters(verdict="NG", limit=1)  # the export is not bounded by the rows shown
    path, n = q.export_csv(tmp_path / "ng.csv")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert n == len(rows) == 2 and {r["verdict"] for r in rows} == {"NG"}
