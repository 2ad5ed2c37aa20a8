"""LabelSession: follows the frame on screen, edits a copy with its mask, saves labels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from app.station.frame import Frame
from app.station.inspection import FrameResult, Rules
from app.station.inspector import judge
from app.station.label_session import LabelError, LabelSession
from app.station.view_state import ViewState


def result(frame_id: int = 7, *, path: str | None = "/line/part 0007.png") -> FrameResult:
    image = np.full((40, 50), 60, np.uint8)
    prob = np.zeros((40, 50), np.float32)
    prob[10:20, 10:20] = 0.8  # the model saw this blob
    prob[30:32, 40:42] = 0.4  # and this faint one (below 0.5)
    meta = {"path": path} if path else {}
    frame = Frame(image, frame_id, 0.0, "folder:/line", meta)
    return FrameResult(frame, prob, judge(prob, Rules(), frame_id=frame_id))


@pytest.fixture
def rules() -> list[Rules]:
    return [Rules(threshold=0.5)]


def make(tmp_path: Path, rules: list[Rules], view: ViewState | None = None) -> LabelSession:
    return LabelSession(lambda: tmp_path / "dataset", lambda: rules[0], view)


def test_follows_the_view_and_starts_from_the_model_mask(
    tmp_path: Path, rules: list[Rules]
) -> None:
    view = ViewState()
    session = make(tmp_path, rules, view)
    seen: list[tuple[str, Any]] = []
    session.subscribe(lambda e, p: seen.append((e, p)))
    live = result()
    view.offer_live(live)
    assert session.candidate is live and ("candidate", live) in seen
    view.review(result(9), "archived")  # a frame opened from the history is the candidate too
    assert session.candidate.frame.frame_id == 9  # type: ignore[union-attr]

    rules[0] = Rules(threshold=0.3)  # the rules wanted now, not the ones that judged the frame
    start = session.edit(live)
    assert start[15, 15] == 255 and start[31, 41] == 255 and start[0, 0] == 0
    assert session.start_threshold == 0.3 and session.name == "part_0007"
    view.offer_live(result(10))  # live frames go on; the edited one stays
    assert session.editing is live
    session.close()
    view.offer_live(result(11))
    assert session.candidate.frame.frame_id != 11  # type: ignore[union-attr]


def test_save_writes_the_edited_mask_and_never_overwrites(
    tmp_path: Path, rules: list[Rules]
) -> None:
    session = make(tmp_path, rules)
    saved: list[Any] = []
    session.subscribe(lambda e, p: saved.append(p) if e == "saved" else None)
    live = result()
    mask = session.edit(live)
    mask[0:5, 0:5] = 255  # the missed defect
    session.set_mask(mask)
    first = session.save()
    second = session.save()
    assert first.name == "part_0007" and second.name == "part_0007_2" and saved == [first, second]
    written = cv2.imread(str(first.mask), cv2.IMREAD_GRAYSCALE)
    assert written[2, 2] == 255 and written[15, 15] == 255 and written[35, 5] == 0
    assert "2 images — 2 with a defect" in session.summary()


def test_false_alarm_and_refusals(tmp_path: Path, rules: list[Rules]) -> None:
    session = make(tmp_path, rules)
    with pytest.raises(LabelError, match="no frame on screen"):
        session.mark_false_alarm()
    with pytest.raises(LabelError, match="pause on a frame"):
        session.save()
    session.set_candidate(result(3, path=None))
    paths = session.mark_false_alarm()  # the candidate, without editing it
    assert paths.kind == "false_alarm" and paths.name == "frame000003"
    assert not cv2.imread(str(paths.mask), cv2.IMREAD_GRAYSCALE).any()

    session.edit()
    with pytest.raises(LabelError, match="mask size"):
        session.set_mask(np.zeros((5, 5), np.uint8))
    session.set_mask(np.zeros((40, 50), np.uint8))
    with pytest.raises(ValueError, match="mark a false alarm"):
        session.save()  # an empty defect mask is refused, nothing written
    session.discard()
    assert session.editing is None and session.mask is None

    unreadable = FrameResult(
        Frame(np.zeros((0, 0), np.uint8), 4, 0.0, "folder:/line", {"error": "bad PNG"}),
        None,
        judge(np.zeros((1, 1), np.float32), Rules(), frame_id=4),
    )
    with pytest.raises(LabelError, match="no image"):
        session.edit(unreadable)
