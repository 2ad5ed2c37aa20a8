"""The output hub: feeds every result and state change to the plant outputs, and lets PLCs drive.

``OutputHub.from_recipe(recipe, settings, session)`` builds the outputs the recipe's
``[outputs.*]`` sections ask for (None when there are none); ``start()`` subscribes to the
session and opens them; ``close()`` undoes both. The hub is the outputs' ``StationControl``:
recipe selection, start / stop, triggered jobs (:mod:`app.station.outputs.jobs`), counters.

Everything here runs on the session's worker threads or a controller's thread and never blocks
the line: outputs queue what they are given (see :class:`~app.station.outputs.base.Output`).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.station.outputs.base import Output, OutputStatus
from app.station.outputs.jobs import JOB_TIMEOUT_S, JobRunner
from app.station.recipe import Recipe, RecipeError, load_recipe

if TYPE_CHECKING:
    from app.station.session import InspectionSession
    from app.station.settings import Settings

log = logging.getLogger(__name__)

OUTPUT_NAMES = ("opcua", "modbus", "mqtt")


class _BrokenOutput:
    """An output that could not be built: shown as "error" with the reason, does nothing."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self._reason = reason

    def start(self, control: Any) -> None:
        pass

    def publish(self, record: dict[str, Any]) -> None:
        pass

    def state_changed(self, state: str, fault: str | None) -> None:
        pass

    def status(self) -> OutputStatus:
        return OutputStatus(self.name, "error", self._reason)

    def close(self) -> None:
        pass


class OutputHub:
    """The session's plant outputs and the control surface they share.

    Parameters
    ----------
    session
        The inspection session (results, state, single steps).
    outputs
        The outputs to feed.
    job_deadline_s
        Default deadline of a triggered job (None = none).
    job_timeout_s
        A job with no result after this long is answered ERROR.
    """

    def __init__(
        self,
        session: InspectionSession,
        outputs: Iterable[Output],
        *,
        job_deadline_s: float | None = None,
        job_timeout_s: float = JOB_TIMEOUT_S,
    ) -> None:
        self.session = session
        self.outputs: list[Output] = list(outputs)
        self.jobs = JobRunner(
            session,
            publish=self._publish,
            on_alarm=self._alarm,
            deadline_s=job_deadline_s,
            timeout_s=job_timeout_s,
        )
        self._lock = threading.Lock()
        self._seq = 0
        self._unsubscribe: Callable[[], None] | None = None
        self.control = HubControl(session, self.jobs)

    @classmethod
    def from_recipe(
        cls, recipe: Recipe, settings: Settings, session: InspectionSession
    ) -> OutputHub | None:
        """The hub for ``recipe``'s ``[outputs.*]`` sections; None when it has none."""
        config = recipe.outputs or {}
        default_deadline = config.get("job_deadline_ms")
        outputs: list[Output] = []
        for name in OUTPUT_NAMES:
            section = config.get(name)
            if not isinstance(section, dict):
                continue
            section = dict(section)
            if default_deadline is not None:
                section.setdefault("job_deadline_ms", default_deadline)
            outputs.append(_create(name, section, settings, recipe))
        if not outputs:
            return None
        deadline = float(default_deadline) / 1000.0 if default_deadline else None
        return cls(session, outputs, job_deadline_s=deadline)

    # -- life --------------------------------------------------------------------------------

    def start(self) -> None:
        """Subscribe to the session and open every output (one that fails shows "error")."""
        if self._unsubscribe is None:
            self._unsubscribe = self.session.subscribe(self._on_event)
        state, fault = self.control.state()
        for output in self.outputs:
            if hasattr(output, "on_command"):
                output.on_command = functools.partial(self._command, output.name)
            try:
                output.start(self.control)
                output.state_changed(state, fault)
                status = output.status()
                if status.state == "error":
                    self._alarm(f"output {output.name}: {status.detail}")
            except Exception as exc:  # noqa: BLE001 - one output's failure must not stop the rest
                log.exception("output %s failed to start", output.name)
                self._alarm(f"output {output.name} failed to start: {exc}")

    def close(self) -> None:
        """Unsubscribe and close the outputs (idempotent)."""
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()
        for output in self.outputs:
            try:
                output.close()
            except Exception:  # noqa: BLE001 - close the others
                log.exception("output %s failed to close", output.name)

    def statuses(self) -> list[OutputStatus]:
        """Each output's status (the GUI's Integration page)."""
        out = []
        for output in self.outputs:
            try:
                out.append(output.status())
            except Exception as exc:  # noqa: BLE001 - show the failure, not crash the page
                out.append(OutputStatus(output.name, "error", f"status failed: {exc}"))
        return out

    def get(self, name: str) -> Output | None:
        return next((o for o in self.outputs if o.name == name), None)

    # -- session events ----------------------------------------------------------------------

    def _on_event(self, event: str, payload: Any) -> None:
        if event == "result":
            from app.station.records import result_record

            fields = self.jobs.claim(payload)
            record = result_record(payload)
            record.setdefault("timestamp", payload.inspection.timestamp)  # acquisition, epoch s
            if fields:
                record.update(fields)
            self._publish(record)
        elif event in ("state", "fault"):
            state, fault = self.control.state()
            if event == "state" and isinstance(payload, bool):
                # Said just before the pipeline runs (and as it ends): trust the event.
                state = "running" if payload else ("fault" if fault else "stopped")
            for output in self.outputs:
                try:
                    output.state_changed(state, fault)
                except Exception:  # noqa: BLE001
                    log.exception("output %s: state_changed failed", output.name)

    def _publish(self, record: dict[str, Any]) -> None:
        with self._lock:
            self._seq += 1
            record["result_id"] = self._seq
            for output in self.outputs:
                try:
                    output.publish(dict(record))  # each its own copy: outputs may add fields
                except Exception:  # noqa: BLE001 - a broken output must not stop the line
                    log.exception("output %s: publish failed", output.name)
        self.jobs.complete(record)

    def _command(self, output: str, user: str | None, command: str, detail: dict[str, Any]) -> None:
        """A PLC's command that changes the station: into the event log and the audit trail."""
        who = f" by {user}" if user else ""
        log_event = getattr(self.session, "log_event", None)
        if log_event is not None:
            log_event("info", f"{output}: {command}{who} {detail or ''}".rstrip())
        audit = getattr(self.session, "audit_record", None)
        if audit is not None:
            try:
                audit("remote.command", role="plc", user=user, target=f"{output}:{command}",
                      detail=detail)  # fmt: skip
            except Exception:  # noqa: BLE001 - a failing audit must not refuse the command
                log.exception("audit of %s:%s failed", output, command)

    def _alarm(self, message: str) -> None:
        log.warning("outputs: %s", message)
        log_event = getattr(self.session, "log_event", None)
        if log_event is not None:
            log_event("alarm", f"outputs: {message}")
        for output in self.outputs:
            alarm = getattr(output, "alarm", None)
            if alarm is not None:
                try:
                    alarm(message)
                except Exception:  # noqa: BLE001
                    log.exception("output %s: alarm failed", output.name)


class HubControl:
    """The hub's :class:`~app.station.outputs.base.StationControl` over the session."""

    def __init__(self, session: InspectionSession, jobs: JobRunner) -> None:
        self.session = session
        self._jobs = jobs
        path = session.recipe_path or session.recipe.path
        self._recipe_dir = path.parent if path is not None else None
        self._selected = path.stem if path is not None else session.recipe.name

    def recipes(self) -> list[str]:
        """Recipe files (stems) in the folder of the session's recipe, sorted."""
        if self._recipe_dir is None or not self._recipe_dir.is_dir():
            return [self._selected]
        return sorted(p.stem for p in self._recipe_dir.glob("*.toml"))

    def selected_recipe(self) -> str:
        return self._selected

    def recipe_index(self) -> int:
        """Index of the selected recipe in :meth:`recipes` (0 when it is not listed)."""
        names = self.recipes()
        return names.index(self._selected) if self._selected in names else 0

    def select_recipe(self, name: str) -> None:
        """Use recipe ``name`` (a file in the recipe folder): model, rules and source.

        Raises
        ------
        ValueError
            Unknown name or an invalid recipe file.
        RuntimeError
            The line is running: a recipe changes between parts, not during a run.
        """
        if name not in self.recipes() or self._recipe_dir is None:
            raise ValueError(f"unknown recipe {name!r} (known: {', '.join(self.recipes())})")
        if self.session.running:
            raise RuntimeError("stop the line before selecting a recipe")
        try:
            recipe = load_recipe(self._recipe_dir / f"{name}.toml")
        except RecipeError as exc:
            raise ValueError(str(exc)) from None
        _apply_recipe(self.session, recipe)
        self._selected = name
        log_event = getattr(self.session, "log_event", None)
        if log_event is not None:
            log_event("recipe", f"recipe {name!r} selected by a controller")

    def start(self) -> None:
        """Start the line (continuous inspection)."""
        self.session.start()

    def stop(self) -> None:
        self.session.stop()

    def run_job(self, part_id: str | None, deadline_s: float | None = None) -> dict[str, Any]:
        return self._jobs.run(part_id, deadline_s)

    def counters(self) -> dict[str, int | float]:
        st = self.session.stats()
        judged, passed = int(st.judged), int(st.passed)
        return {
            "judged": judged,
            "pass": passed,
            "ng": int(st.ng),
            "error": int(getattr(st, "errors", 0)),
            "yield": passed / judged if judged else 0.0,
        }

    def state(self) -> tuple[str, str | None]:
        state = getattr(self.session, "state", None)
        if not isinstance(state, str):
            state = "running" if self.session.running else "stopped"
        return state, getattr(self.session, "fault", None)


def _module(name: str) -> Any:
    # Spelled out (not importlib) so PyInstaller sees them; imported only when used.
    if name == "opcua":
        from app.station.outputs import opcua

        return opcua
    if name == "modbus":
        from app.station.outputs import modbus

        return modbus
    from app.station.outputs import mqtt

    return mqtt


def _create(name: str, config: dict[str, Any], settings: Settings, recipe: Recipe) -> Output:
    try:
        return _module(name).create_output(config, settings=settings, recipe=recipe)
    except (ImportError, AttributeError, ValueError, OSError) as exc:
        log.error("output %s cannot be used: %s", name, exc)
        return _BrokenOutput(name, f"cannot be used: {exc}")


def _apply_recipe(session: InspectionSession, recipe: Recipe) -> None:
    use_recipe = getattr(session, "use_recipe", None)
    if use_recipe is not None:
        use_recipe(recipe)
        return
    # Until the session can switch recipes itself: the parts that judge (model, rules, source).
    if Path(recipe.model).resolve() != session.model_path:
        session.load_model(recipe.model)
    session.set_rules(recipe.rules)
    if recipe.source.spec and recipe.source.spec != session.source_spec:
        session.open_source(recipe.source.spec)
