"""Rules and the audit trail, for :class:`~app.station.session.InspectionSession`.

A mixin (the session module stays readable). The rules in force are the session's ``_rules``;
:meth:`set_rules` re-judges the kept results from their maps (ERROR results stay ERROR: they
have no map) and records the change in the audit trail. :meth:`audit_record` is the one door to
the trail: it never raises (the line must not stop because the audit database is busy; the trail
itself queues and retries), and it stamps every entry with the current ``actor``.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from app.station._recipe_schema import rules_to_dict
from app.station.inspection import FrameResult, Rules
from app.station.inspector import judge

if TYPE_CHECKING:
    from app.station._session_parts import KeptResults
    from app.station.audit import AuditLog
    from app.station.recipe import Recipe
    from engines.card import ModelCard

log = logging.getLogger("app.station.session")


class RulesAuditMixin:
    """``rules``, ``rejudge``, ``set_rules``; ``actor`` and ``audit_record``."""

    _lock: threading.RLock
    _rules: Rules
    _kept: KeptResults
    _recipe: Recipe
    audit: AuditLog | None
    # (role, user): "operator" at the station, "engineer"/"technician" once unlocked, "plc"
    # for a controller's command, "system" for the headless run.
    actor: tuple[str, str | None] = ("operator", None)

    if TYPE_CHECKING:  # provided by the session

        def _emit(self, event: Any, payload: Any) -> None: ...
        @property
        def model_card(self) -> ModelCard: ...

    def audit_record(self, action: str, **fields: Any) -> None:
        """Append to the audit trail as the current actor (``role=``/``user=`` override it)."""
        audit = getattr(self, "audit", None)
        if audit is None:
            return
        role = fields.pop("role", self.actor[0])
        user = fields.pop("user", self.actor[1])
        try:
            audit.record(role, action, user=user, **fields)
        except Exception:  # noqa: BLE001 - an audit failure is logged, never stops the line
            log.exception("audit record %s failed", action)

    @property
    def rules(self) -> Rules:
        return self._rules

    def rejudge(self, result: FrameResult, rules: Rules) -> FrameResult:
        """``result`` judged again under ``rules`` from its kept probability map (no inference).

        A result without a map (ERROR: unreadable, model fault) stays as it is.
        """
        if result.prob is None:
            return result
        old = result.inspection
        inspection = judge(
            result.prob, rules, pixel_size_mm=self._recipe.pixel_size_mm, frame_id=old.frame_id,
            source=old.source, timestamp=old.timestamp, model_id=old.model_id,
            timings_ms=old.timings_ms, class_prob=result.extra.get("class_prob"),
            class_names=self.model_card.class_names,
        )  # fmt: skip
        return replace(result, inspection=inspection)

    def set_rules(self, rules: Rules) -> FrameResult | None:
        """Judge the next frames with ``rules`` and re-judge the kept ones now.

        Returns the re-judged latest result (also emitted as ``"rejudged"``), or None when no
        frame has been judged yet. Counters and stored rows keep their original verdicts.
        """
        with self._lock:
            old, self._rules = self._rules, rules
            kept = self._kept.snapshot()
        if old != rules:
            self._audit_rules(old, rules)
        latest = self._kept.replace({id(r): self.rejudge(r, rules) for r in kept})
        if latest is not None:
            self._emit("rejudged", latest)
        return latest

    def _audit_rules(self, old: Rules, new: Rules) -> None:
        from app.station import audit as a

        before, after = rules_to_dict(old), rules_to_dict(new)
        if old.zones != new.zones:
            self.audit_record(
                a.ZONES_CHANGE, target="zones", old=before.get("zones"), new=after.get("zones")
            )
        changed = sorted(
            k for k in set(before) | set(after) if k != "zones" and before.get(k) != after.get(k)
        )
        if changed:
            self.audit_record(
                a.RULES_CHANGE,
                target=",".join(changed),
                old={k: before.get(k) for k in changed},
                new={k: after.get(k) for k in changed},
            )
