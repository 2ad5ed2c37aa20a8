"""The frame on screen (live / review) and the Run screen's banner, without Qt."""

from __future__ import annotations

import numpy as np
import pytest

from app.station.frame import Frame
from app.station.inspection import FrameResult, Inspection, Rules
from app.station.view_state import LineBanner, ViewState


def _result(frame_id: int, verdict: str = "PASS", reasons: tuple[str, ...] = ()) -> FrameResult:
    image = np.zeros((4, 4), np.uint8)
    insp = Inspection(
        frame_id=frame_id, source="test", timestamp=0.0, verdict=verdict,  # type: ignore[arg-type]
        reasons=reasons, defects=(), rules=Rules(), model_id="m",
    )  # fmt: skip
    return FrameResult(Frame(image, frame_id, 0.0, "test"), np.zeros((4, 4), np.float32), insp)


def test_review_is_not_replaced_by_live_results_until_show_live() -> None:
    view = ViewState()
    seen: list[tuple[str, int | None]] = []
    view.subscribe(lambda v: seen.append((v.mode, v.current and v.current.frame.frame_id)))
    assert view.offer_live(_result(1)) and view.live
    archived = _result(99, "NG")
    view.review(archived, "archived")
    assert not view.offer_live(_result(2))  # the line runs on; the view stays on the review
    assert view.current is archived and view.why == "archived" and view.mode == "review"
    view.show_live(_result(3))
    assert view.live and view.why is None and view.current.frame.frame_id == 3
    assert seen == [("live", 1), ("review", 99), ("live", 3)]


def test_pause_freezes_the_frame_on_screen_and_bad_reasons_are_refused() -> None:
    view = ViewState()
    view.pause()  # nothing on screen: nothing to review
    assert view.live
    view.offer_live(_result(5))
    view.pause()
    assert view.why == "paused" and view.current.frame.frame_id == 5
    with pytest.raises(ValueError, match="review reason"):
        view.review(_result(6), "live")  # type: ignore[arg-type]


def test_a_broken_subscriber_does_not_stop_the_others() -> None:
    view = ViewState()
    got: list[int] = []
    view.subscribe(lambda v: 1 / 0)
    unsubscribe = view.subscribe(lambda v: got.append(1))
    view.offer_live(_result(1))
    unsubscribe()
    view.offer_live(_result(2))
    assert got == [1]


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_banner_is_never_stale_when_stopped_or_faulted() -> None:
    banner = LineBanner(2.0, clock=Clock())
    assert banner.banner().kind == "STOPPED"
    banner.set_line("running")
    assert banner.banner().kind == "WAITING"
    banner.offer(_result(1, "PASS").inspection)
    assert banner.banner().kind == "PASS"
    banner.set_line("stopped")
    b = banner.banner()
    assert b.kind == "STOPPED" and "NOT INSPECTING" in b.title
    banner.set_line("running")
    assert banner.banner().kind == "WAITING"  # the previous run's PASS is not shown again
    banner.set_line("fault", "12 model faults in a row (NaN output)")
    b = banner.banner()
    assert b.kind == "FAULT" and "NaN" in b.reasons[0]


def test_ng_is_held_for_hold_s_or_until_acknowledged() -> None:
    clock = Clock()
    banner = LineBanner(2.0, clock=clock)
    banner.set_line("running")
    banner.offer(_result(1, "NG", ("1 defect > max 0",)).inspection)
    banner.offer(_result(2, "PASS").inspection)
    b = banner.banner()
    assert (b.kind, b.frame_id, b.held) == ("NG", 1, True)
    assert b.reasons == ("1 defect > max 0",)
    clock.t += 1.9
    assert banner.banner().kind == "NG"
    clock.t += 0.2
    assert banner.banner().kind == "PASS"  # 2 s are over
    banner.offer(_result(3, "ERROR", ("unreadable: a.png",)).inspection)
    banner.offer(_result(4, "PASS").inspection)
    assert banner.banner().kind == "ERROR" and banner.holding()
    assert banner.acknowledge()
    assert banner.banner().kind == "PASS" and not banner.acknowledge()
