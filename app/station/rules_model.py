"""The single owner of the live rules: what the engineer wants now, handed to the session lazily.

Moving a slider calls ``RulesModel.set``. The new rules are the model's at once (``rules``; the
frame on screen is re-judged with them by whoever shows it, one judge of a kept map). Handing them
to the session (``session.set_rules`` re-judges every kept result: tens of frames, up to a second
on large ones) runs on one worker thread, and the last request wins: a request made while one
hand-over runs replaces any request still waiting, so a slider drag never queues more than one.

Listeners get ``(event, payload)``:

- ``"changed"`` (Rules) on the caller's thread, as soon as the wanted rules change;
- ``"applied"`` (Rules) on the worker thread, when the session judges with the wanted rules;
- ``"error"`` (str) on the worker thread, when a hand-over failed.

Rules set on the session by someone else (a PLC switching recipes) are adopted when the session
reports them (its ``"rejudged"`` / ``"event"`` events), with ``"changed"`` on that thread.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, Literal, Protocol

from app.station.inspection import FrameResult, Rules, Zone
from app.station.recipe import Recipe

log = logging.getLogger(__name__)

RulesEvent = Literal["changed", "applied", "error"]
RulesListener = Callable[[RulesEvent, Any], None]


class RulesTarget(Protocol):
    """What the model needs of the session (``InspectionSession`` has all of it)."""

    @property
    def rules(self) -> Rules: ...

    @property
    def recipe(self) -> Recipe: ...

    @property
    def dirty(self) -> bool: ...

    def set_rules(self, rules: Rules) -> FrameResult | None: ...

    def rejudge(self, result: FrameResult, rules: Rules) -> FrameResult: ...

    def save_recipe(self) -> Recipe: ...

    def revert_recipe(self) -> Recipe: ...


class RulesModel:
    """The rules wanted now; ``session.set_rules`` follows them on a worker, latest wins.

    ``synchronous=True`` hands over on the caller's thread (tests, headless tools).
    """

    def __init__(self, session: RulesTarget, *, synchronous: bool = False) -> None:
        self._session = session
        self._synchronous = synchronous
        self._rules = session.rules
        self._cond = threading.Condition()
        self._waiting: Rules | None = None  # the one request not yet handed over
        self._running = False
        self._listeners: list[RulesListener] = []
        self._thread: threading.Thread | None = None
        # the session's events tell when someone else (a PLC's recipe switch) set its rules
        subscribe = getattr(session, "subscribe", None)
        self._unsubscribe: Callable[[], None] | None = (
            subscribe(self._on_session_event) if callable(subscribe) else None
        )

    # --- state --------------------------------------------------------------------------------
    @property
    def rules(self) -> Rules:
        """The rules wanted now (the session follows them; see ``idle``)."""
        return self._rules

    @property
    def recipe(self) -> Recipe:
        return self._session.recipe

    @property
    def dirty(self) -> bool:
        """True when the wanted rules (or the model) differ from the recipe as saved."""
        return self._rules != self._session.recipe.rules or self._session.dirty

    def idle(self) -> bool:
        """True when no hand-over is running or waiting and the session has the wanted rules."""
        with self._cond:
            busy = self._running or self._waiting is not None
        return not busy and self._session.rules == self._rules

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no hand-over is running or waiting; False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: not self._running and self._waiting is None, timeout=timeout
            )

    # --- listeners ----------------------------------------------------------------------------
    def subscribe(self, listener: RulesListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _emit(self, event: RulesEvent, payload: Any) -> None:
        for listener in list(self._listeners):
            try:
                listener(event, payload)
            except Exception:  # noqa: BLE001 - one bad listener must not stop the hand-over
                log.exception("rules listener failed on %s", event)

    # --- edits --------------------------------------------------------------------------------
    def set(self, rules: Rules) -> None:
        """Want ``rules`` from now on; the session gets them off this thread (latest wins)."""
        with self._cond:
            if rules == self._rules:
                return
            self._rules = rules
            self._waiting = rules  # replaces any request still waiting
            start = not self._running  # else the running drain picks it up when it ends
            self._running = True
        self._emit("changed", rules)
        if start:
            self._start_drain()

    def update(self, **changes: Any) -> Rules:
        """``set`` the wanted rules with some fields replaced; returns the new rules."""
        rules = replace(self._rules, **changes)
        self.set(rules)
        return rules

    def set_zones(self, zones: tuple[Zone, ...]) -> None:
        self.update(zones=tuple(zones))

    def rejudge(self, result: FrameResult) -> FrameResult:
        """``result`` judged by the wanted rules (itself when it already is): no inference."""
        if result.inspection.rules == self._rules or result.prob is None:
            return result
        return self._session.rejudge(result, self._rules)

    # --- recipe -------------------------------------------------------------------------------
    def save(self, timeout: float | None = 30.0) -> Recipe:
        """Write the wanted rules into the recipe (blocking: call it off the GUI thread).

        Raises
        ------
        TimeoutError
            A hand-over still ran after ``timeout`` s; nothing was written.
        RecipeError
            The session has no recipe file, or it could not be written.
        """
        self._flush(timeout)
        return self._session.save_recipe()

    def revert(self, timeout: float | None = 30.0) -> Recipe:
        """Back to the recipe's rules (and model); blocking, may reload the model."""
        self._flush(timeout)
        with self._own():
            recipe = self._session.revert_recipe()
        rules = self._session.rules
        if rules != self._rules:
            self._rules = rules
            self._emit("changed", rules)
        self._emit("applied", rules)
        return recipe

    def _flush(self, timeout: float | None) -> None:
        if not self.wait(timeout):
            raise TimeoutError("the rules are still being applied; try again")
        if self._session.rules != self._rules:  # a failed hand-over: try once more, here
            with self._own():
                self._session.set_rules(self._rules)

    @contextlib.contextmanager
    def _own(self) -> Iterator[None]:
        """Mark a session call as ours, so its events are not taken for an outside change."""
        with self._cond:
            self._running = True
        try:
            yield
        finally:
            with self._cond:
                self._running = False
                self._cond.notify_all()

    # --- hand-over ----------------------------------------------------------------------------
    def _start_drain(self) -> None:
        if self._synchronous:
            self._drain()
        else:
            self._thread = threading.Thread(target=self._drain, name="rules-handover", daemon=True)
            self._thread.start()

    def _on_session_event(self, event: str, _payload: Any) -> None:
        """Rules set on the session by someone else (a PLC switching recipes): adopt them."""
        if event not in ("rejudged", "event"):
            return
        rules = self._session.rules
        with self._cond:
            if self._running or self._waiting is not None or rules == self._rules:
                return  # our own hand-over, or nothing new
            self._rules = rules
        self._emit("changed", rules)
        self._emit("applied", rules)

    def _drain(self) -> None:
        last: Rules | None = None
        while True:
            with self._cond:
                rules, self._waiting = self._waiting, None
                if rules is None:
                    self._running = False
                    self._cond.notify_all()
                    break
            try:
                self._session.set_rules(rules)
                last = rules
            except Exception as exc:  # noqa: BLE001 - reported to the GUI, never lost
                log.exception("rules not applied")
                last = None
                self._emit("error", f"Rules not applied: {exc}")
        if last is not None and last == self._rules:
            self._emit("applied", last)

    def close(self, timeout: float = 5.0) -> None:
        """Wait for a running hand-over to end (so the session is not closed under it)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self.wait(timeout)
