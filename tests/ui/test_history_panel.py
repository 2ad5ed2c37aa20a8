"""History table (filters, open, CSV) and the statistics charts, on a real results store."""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PySide6.QtCore import Qt

from app.station.history_query import HistoryQuery
from app.station.inspection import FrameResult
from app.station.recipe import Recipe
from app.station.session import InspectionSession
from app.station.settings import Settings
from app.ui.bridge import SessionBridge
from app.ui.history_panel import HistoryPanel
from app.ui.stats_panel import StatsPanel

pytestmark = pytest.mark.gui


DAY = 86400.0


@pytest.fixture
def session(recipe: Recipe, settings: Settings) -> Iterator[InspectionSession]:
    s = InspectionSession(replace(recipe, archive_ng=True), settings=settings)
    yield s
    s.close()


@pytest.fixture
def bridge(session: InspectionSession) -> Iterator[SessionBridge]:
    b = SessionBridge(session)
    yield b
    b.detach()


@pytest.fixture
def history(qtbot: Any, session: InspectionSession, bridge: SessionBridge) -> HistoryPanel:
    p = HistoryPanel(HistoryQuery(lambda: session.store, session.history), bridge)
    qtbot.addWidget(p)
    p.resize(900, 500)
    return p


def _judge(session: InspectionSession, n: int) -> list[FrameResult]:
    out = [session.step() for _ in range(n)]
    assert all(r is not None for r in out)
    return out  # type: ignore[return-value]


def _old(result: FrameResult, days: float) -> FrameResult:
    """The same judged frame as if it had been inspected ``days`` ago (no longer in memory)."""
    ts = result.inspection.timestamp - days * DAY
    return replace(
        result,
        frame=replace(result.frame, timestamp=ts),
        inspection=replace(result.inspection, timestamp=ts),
    )


def _verdicts(panel: HistoryPanel) -> list[str]:
    return [r.verdict for r in panel.model.rows]


def test_rows_appear_and_filters_work(
    qtbot: Any, history: HistoryPanel, session: InspectionSession
) -> None:
    results = _judge(session, 6)
    ng = sum(r.inspection.verdict == "NG" for r in results)
    assert 0 < ng < 6
    session.store.add(_old(results[1], 3))  # three days ago
    history.refresh()
    assert history.model.rowCount() == 6  # default period: last 24 h
    assert history.table.model().rowCount() == 6

    history.verdict.setCurrentText("NG")
    assert _verdicts(history) == ["NG"] * ng
    history.verdict.setCurrentText("PASS")
    assert _verdicts(history) == ["PASS"] * (6 - ng)
    history.verdict.setCurrentText("all")
    history.period.setCurrentText("all")
    assert history.model.rowCount() == 7
    history.period.setCurrentText("last hour")
    assert history.model.rowCount() == 6

    model_id = session.model_card.model_id
    assert history.model_filter.findText(model_id) >= 0
    history.model_filter.setCurrentText(model_id)
    assert history.model.rowCount() == 6
    assert history.filters()["model_id"] == model_id
    history.limit.setValue(10)
    history.limit.setValue(3)
    assert history.model.rowCount() == 3


def test_new_results_refresh_the_visible_table(
    qtbot: Any, history: HistoryPanel, session: InspectionSession
) -> None:
    history.show()
    qtbot.waitExposed(history)
    assert history.model.rowCount() == 0
    session.start()
    qtbot.waitUntil(lambda: history.model.rowCount() >= 5, timeout=15_000)
    session.stop()


def test_double_click_opens_archived_ng_and_explains_missing_pass(
    qtbot: Any, history: HistoryPanel, session: InspectionSession
) -> None:
    results = _judge(session, 4)
    ng = next(r for r in results if r.inspection.verdict == "NG")
    ok = next(r for r in results if r.inspection.verdict == "PASS")
    session.store.add(_old(ng, 2))
    session.store.add(_old(ok, 2.5))
    history.period.setCurrentText("all")
    history.show()
    qtbot.waitExposed(history)
    rows = history.model.rows
    archived = next(
        i for i, r in enumerate(rows) if r.timestamp < time.time() - DAY and r.verdict == "NG"
    )
    with qtbot.waitSignal(history.frame_requested, timeout=10_000) as opened:
        index = history.model.index(archived, 0)
        rect = history.table.visualRect(index)
        # A real double-click: press/release, then the double-click event on the same cell.
        qtbot.mouseClick(history.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        qtbot.mouseDClick(history.table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    shown: FrameResult = opened.args[0]
    np.testing.assert_array_equal(shown.frame.image, ng.frame.image)
    assert shown.inspection.verdict == "NG"
    assert [d.area_px for d in shown.inspection.defects] == [
        d.area_px for d in ng.inspection.defects
    ]
    assert (shown.prob > 0).sum() > 0  # the archived mask comes back as the overlay

    passed = next(
        i for i, r in enumerate(rows) if r.timestamp < time.time() - DAY and r.verdict == "PASS"
    )
    history.open_row(passed)
    assert "PASS frames are not archived" in history.status.text()

    recent_ng = next(
        i for i, r in enumerate(rows) if r.timestamp > time.time() - DAY and r.verdict == "NG"
    )
    with qtbot.waitSignal(history.frame_requested, timeout=2000) as kept:
        history.open_row(recent_ng)  # still kept in memory: the full probability map
    assert "in memory" in history.status.text()
    assert kept.args[0].prob.dtype == np.float32


def test_open_asks_the_window_to_review_the_frame(qtbot: Any, make_panels: Any) -> None:
    p = make_panels(archive_ng=True)
    results = _judge(p.session, 4)
    ng = next(r for r in results if r.inspection.verdict == "NG")
    p.session.store.add(_old(ng, 2))
    panel: HistoryPanel = p["history"]
    panel.period.setCurrentText("all")
    panel.refresh()
    row = next(i for i, r in enumerate(panel.model.rows) if r.timestamp < time.time() - DAY)
    # the window's part of the contract: a requested frame goes on screen as REVIEW
    panel.frame_requested.connect(lambda result: p.view_state.review(result, "archived"))
    with qtbot.waitSignal(panel.frame_requested, timeout=10_000):
        panel.open_row(row)
    current = p.view_state.current
    assert p.view_state.mode == "review" and p.view_state.why == "archived"
    np.testing.assert_array_equal(current.frame.image, ng.frame.image)
    assert current.inspection.verdict == "NG"
    assert "for review" in panel.status.text()
    # and the label panel, following the view state, offers exactly that frame
    qtbot.waitUntil(lambda: p["label"].session.candidate is current, timeout=2000)


def test_csv_export_writes_the_filtered_rows(
    qtbot: Any, history: HistoryPanel, session: InspectionSession, tmp_path: Path
) -> None:
    results = _judge(session, 6)
    ng = sum(r.inspection.verdict == "NG" for r in results)
    history.verdict.setCurrentText("NG")
    out = tmp_path / "export" / "ng.csv"
    out.parent.mkdir()
    with qtbot.waitSignal(history.exported, timeout=10_000) as done:
        history.export_csv(out)
    assert done.args == [str(out), ng]
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == ng and {r["verdict"] for r in rows} == {"NG"}
    assert f"{ng} rows written" in history.status.text()


def test_stats_panel_draws_yield_and_pareto(
    qtbot: Any, session: InspectionSession, bridge: SessionBridge
) -> None:
    results = _judge(session, 8)
    stats = StatsPanel(lambda: session.store)
    qtbot.addWidget(stats)
    stats.show()
    qtbot.waitExposed(stats)
    stats.bucket.setCurrentText("1 hour")
    assert sum(n for _, n, _ in stats.series) == 8
    passed = sum(r.inspection.verdict == "PASS" for r in results)
    assert sum(p for _, _, p in stats.series) == passed
    heights = stats.yield_bars.opts["height"]
    assert len(heights) == len(stats.series) and 0 < max(heights) <= 100

    defects = sum(len(r.inspection.defects) for r in results)
    stats.pareto_by.setCurrentText("size")
    assert sum(n for _, n in stats.pareto) == defects > 0
    assert list(stats.pareto_bars.opts["height"]) == [n for _, n in stats.pareto]
    assert f"{defects} defects" in stats.status.text()
