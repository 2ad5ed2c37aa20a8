"""Which judged frame is on screen, and whether it is the live line or a frame under review.

The one owner of "the frame on screen" (Qt-free, so it is tested without a display). The window
feeds it; panels that follow the frame on screen (the label panel, the zone editor) subscribe to
it instead of reaching into the window.

- ``LIVE``: the view follows the newest result of the running line (or, with nothing running,
  the last one judged — the window then says STOPPED, never "live").
- ``REVIEW``: a frame chosen by someone — ``paused`` (the view was frozen on the frame on
  screen), ``stepped`` (a single step while stopped), ``archived`` (reopened from the history or
  the NG filmstrip). A result under review never replaces the live banner.

All calls come from one thread (the GUI thread); subscribers are called synchronously, in the
order they subscribed, after the state has changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from app.station.inspection import FrameResult, Inspection

__all__ = ["Banner", "BannerKind", "LineBanner", "Mode", "ReviewReason", "ViewState"]

log = logging.getLogger(__name__)

Mode = Literal["live", "review"]
ReviewReason = Literal["paused", "stepped", "archived"]
REVIEW_REASONS: tuple[ReviewReason, ...] = ("paused", "stepped", "archived")

ViewCallback = Callable[["ViewState"], None]


class ViewState:
    """The frame on screen and the view mode; see the module docstring."""

    def __init__(self) -> None:
        self._current: FrameResult | None = None
        self._mode: Mode = "live"
        self._why: ReviewReason | None = None
        self._subscribers: list[ViewCallback] = []

    # -- reading -------------------------------------------------------------------------------

    @property
    def current(self) -> FrameResult | None:
        """The result on screen (None before the first frame)."""
        return self._current

    @property
    def mode(self) -> Mode:
        return self._mode

    @property
    def live(self) -> bool:
        return self._mode == "live"

    @property
    def why(self) -> ReviewReason | None:
        """Why the view is in review (None while live)."""
        return self._why

    # -- changing ------------------------------------------------------------------------------

    def subscribe(self, callback: ViewCallback) -> Callable[[], None]:
        """Call ``callback(view_state)`` after every change; returns the unsubscribe function."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def show_live(self, latest: FrameResult | None = None) -> None:
        """Follow the line again; ``latest`` (the newest judged result, if any) goes on screen."""
        self._mode, self._why = "live", None
        if latest is not None:
            self._current = latest
        self._notify()

    def offer_live(self, result: FrameResult) -> bool:
        """A new result from the line: shown only while live. True when it went on screen."""
        if self._mode != "live":
            return False
        self._current = result
        self._notify()
        return True

    def review(self, result: FrameResult, why: ReviewReason) -> None:
        """Put ``result`` on screen for review; the live line keeps running underneath."""
        if why not in REVIEW_REASONS:
            raise ValueError(f"review reason {why!r} is not one of {REVIEW_REASONS}")
        self._mode, self._why, self._current = "review", why, result
        self._notify()

    def pause(self) -> None:
        """Freeze the view on the frame on screen (review, ``paused``); no-op with no frame."""
        if self._current is not None and self._mode == "live":
            self.review(self._current, "paused")

    def replace_current(self, result: FrameResult) -> None:
        """The same frame judged again (moved slider): same mode, new verdict on screen."""
        self._current = result
        self._notify()

    def _notify(self) -> None:
        for callback in list(self._subscribers):
            try:
                callback(self)
            except Exception:  # noqa: BLE001 - one broken view must not stop the others
                log.exception("view-state subscriber %r failed", callback)


# -- the Run screen's banner -------------------------------------------------------------------

BannerKind = Literal["PASS", "NG", "ERROR", "STOPPED", "FAULT", "WAITING"]
HELD: frozenset[str] = frozenset({"NG", "ERROR"})  # verdicts an operator must not miss


@dataclass(frozen=True)
class Banner:
    """What the big banner says: ``title`` in the colour of ``kind``, with its reasons."""

    kind: BannerKind
    title: str
    reasons: tuple[str, ...] = ()
    frame_id: int | None = None
    held: bool = False  # an NG / ERROR kept on screen although newer frames arrived


class LineBanner:
    """The live line's verdict for the Run screen: never stale, NG held until seen.

    - line faulted: FAULT with the reason; line stopped: STOPPED / NOT INSPECTING (the last
      verdict is not shown: it says nothing about the parts passing now);
    - running: the newest verdict, except that an NG or ERROR stays ``hold_s`` seconds (or until
      :meth:`acknowledge`) even when PASS frames follow; a newer NG / ERROR restarts the hold.

    Only live results are offered: a frame under review never reaches the banner.
    """

    def __init__(self, hold_s: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.hold_s = float(hold_s)
        self._clock = clock
        self._state = "stopped"
        self._reason: str | None = None
        self._latest: Inspection | None = None
        self._held: Inspection | None = None
        self._held_until = 0.0

    def set_line(self, state: str, reason: str | None = None) -> None:
        """``state`` is "running", "stopped" or "fault"; ``reason`` says why (fault, stop)."""
        if state != self._state and state == "running":
            self._latest, self._held = None, None  # the previous run's verdicts are stale now
        if state != "running":
            self._held = None
        self._state, self._reason = state, reason

    @property
    def line_state(self) -> str:
        return self._state

    def offer(self, inspection: Inspection) -> None:
        """A newly judged live frame."""
        self._latest = inspection
        if inspection.verdict in HELD:
            self._held = inspection
            self._held_until = self._clock() + self.hold_s

    def acknowledge(self) -> bool:
        """The operator has seen the held verdict; True when one was held."""
        had = self.holding()
        self._held = None
        return had

    def holding(self) -> bool:
        return self._held is not None and self._clock() < self._held_until

    def hold_left_s(self) -> float:
        return max(0.0, self._held_until - self._clock()) if self._held is not None else 0.0

    def banner(self) -> Banner:
        if self._state == "fault":
            return Banner("FAULT", "FAULT", (self._reason or "the station stopped judging",))
        if self._state != "running":
            why = (self._reason,) if self._reason else ()
            return Banner("STOPPED", "STOPPED — NOT INSPECTING", why)
        if self.holding() and self._held is not None:
            return _verdict_banner(self._held, held=self._held is not self._latest)
        if self._latest is None:
            return Banner("WAITING", "RUNNING", ("waiting for the first judged frame",))
        return _verdict_banner(self._latest, held=False)


def _verdict_banner(insp: Inspection, *, held: bool) -> Banner:
    kind: BannerKind = insp.verdict if insp.verdict in ("PASS", "NG", "ERROR") else "ERROR"
    reasons = tuple(insp.reasons) or (f"{len(insp.defects)} defect(s), within the rules",)
    return Banner(kind, kind, reasons, insp.frame_id, held)
