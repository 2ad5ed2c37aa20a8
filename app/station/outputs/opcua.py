"""OPC UA server modelled on OPC 40100-1 (OPC UA for Machine Vision), in the station's namespace.

An asyncua server on its own thread with its own event loop; results reach it through a queue,
so the line never waits for a client. The node map is in docs/integration.md. In short, under
``Objects/VisionSystem`` (namespace ``urn:inspection-station:machine-vision``):

- ``State`` (Halted / Operational / Error, the 40100 top-level states) and ``Fault``;
- ``SelectedRecipe``, ``Recipes``; methods ``SelectRecipe(Name)``, ``Start()``, ``Stop()``,
  ``RunJob(PartId) -> (ResultId, Verdict)`` (40100's StartSingleJob, answered synchronously);
- ``LastResult/…`` (ResultId, PartId, JobId, Verdict, DefectCount, TotalAreaPx, ClassCounts,
  ModelId, CreationTime, AcquisitionTime, Late, LatencyMs, Error) and a ``ResultReadyEventType``
  event with the same fields, emitted by ``VisionSystem`` for every result;
- ``Counters/…`` Judged, Pass, NG, Error, Yield, BusyTriggers, LateResults.

Security: anonymous sessions may read, browse and subscribe; writing and calling methods needs a
user from ``[opcua] users`` in settings.toml (scrypt records). With ``certificate`` +
``private_key`` configured, Basic256Sha256 Sign&Encrypt endpoints are offered too.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asyncua import Server, ua
from asyncua.common.methods import uamethod
from asyncua.crypto.permission_rules import USER_TYPES, PermissionRuleset, User, UserRole

from app.station.access import PinError, verify_pin
from app.station.outputs._async_server import AsyncServerOutput
from app.station.outputs.base import JobBusy, OutputState

if TYPE_CHECKING:
    from asyncua.common.node import Node

    from app.station.recipe import Recipe
    from app.station.settings import Settings

log = logging.getLogger(__name__)
# asyncua logs every node it builds and every request at INFO (a thousand lines at start-up):
# the station's log keeps its warnings and errors only.
logging.getLogger("asyncua").setLevel(logging.WARNING)

NAMESPACE = "urn:inspection-station:machine-vision"
STATES = {"stopped": "Halted", "running": "Operational", "fault": "Error"}
_WRITE = ua.NodeId(ua.Int32(ua.ObjectIds.WriteRequest_Encoding_DefaultBinary))
_CALL = ua.NodeId(ua.Int32(ua.ObjectIds.CallRequest_Encoding_DefaultBinary))
_V = ua.VariantType
# The user of the request being served: set by the permission check, read by the methods (both
# run in the task that serves the request), so a PLC command is audited with who sent it.
_CALLER: contextvars.ContextVar[str | None] = contextvars.ContextVar("opcua_caller", default=None)
# LastResult variables and ResultReady event fields: name -> (type, record -> value)
_RESULT_FIELDS: dict[str, _V] = {
    "ResultId": _V.String,
    "PartId": _V.String,
    "JobId": _V.String,
    "Verdict": _V.String,
    "DefectCount": _V.Int32,
    "TotalAreaPx": _V.Int64,
    "ClassCounts": _V.String,
    "ModelId": _V.String,
    "CreationTime": _V.DateTime,
    "AcquisitionTime": _V.DateTime,
    "Late": _V.Boolean,
    "LatencyMs": _V.Double,
    "Error": _V.String,
}
_COUNTERS: dict[str, _V] = {
    "Judged": _V.Int64,
    "Pass": _V.Int64,
    "NG": _V.Int64,
    "Error": _V.Int64,
    "Yield": _V.Double,
    "BusyTriggers": _V.Int64,
    "LateResults": _V.Int64,
}


def create_output(config: dict[str, Any], *, settings: Settings, recipe: Recipe) -> OpcuaOutput:
    """``[outputs.opcua]``: ``endpoint`` (default opc.tcp://127.0.0.1:4840), ``job_deadline_ms``;
    users and certificate from ``settings.opcua``."""
    deadline = config.get("job_deadline_ms")
    opc = settings.opcua
    return OpcuaOutput(
        str(config.get("endpoint", "opc.tcp://127.0.0.1:4840")),
        users=dict(opc.users),
        certificate=opc.certificate,
        private_key=opc.private_key,
        deadline_s=float(deadline) / 1000.0 if deadline else None,
    )


def result_values(record: dict[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The LastResult / ResultReady values of one result record."""
    defects = record.get("defects") or []
    classes = Counter(
        str(d.get("class_name") or d.get("class"))
        for d in defects
        if d.get("class_name") or d.get("class")
    )
    stamp = record.get("timestamp")
    part = record.get("part_id")
    return {
        "ResultId": str(record.get("result_id", "")),
        "PartId": "" if part is None else str(part),
        "JobId": "" if record.get("job_id") is None else str(record["job_id"]),
        "Verdict": str(record.get("verdict", "ERROR")),
        "DefectCount": len(defects),
        "TotalAreaPx": int(sum(int(d.get("area_px", 0)) for d in defects)),
        "ClassCounts": json.dumps(dict(classes)) if classes else "",
        "ModelId": str(record.get("model") or ""),
        "CreationTime": now or datetime.now(UTC),
        "AcquisitionTime": (
            datetime.fromtimestamp(float(stamp), UTC) if stamp else datetime.now(UTC)
        ),
        "Late": bool(record.get("late", False)),
        "LatencyMs": float(record.get("latency_ms", 0.0)),
        "Error": str(record.get("error") or ""),
    }


class _Users:
    """asyncua user manager: anonymous (read-only) or a user from settings (scrypt records)."""

    def __init__(self, users: dict[str, str]) -> None:
        self._users = users

    def get_user(
        self,
        iserver: Any,
        username: str | None = None,
        password: str | None = None,
        certificate: Any = None,
    ) -> User | None:
        if not username:
            return User(role=UserRole.Anonymous)
        record = self._users.get(username)
        if record is None or password is None:
            log.warning("OPC UA login refused for %r", username)
            return None
        text = password.decode("utf-8") if isinstance(password, bytes) else str(password)
        try:
            ok = verify_pin(text, record)
        except PinError as exc:
            log.error("OPC UA user %r: %s", username, exc)
            return None
        if not ok:
            log.warning("OPC UA login refused for %r: wrong password", username)
            return None
        return User(role=UserRole.User, name=username)


class _ReadOnlyForAnonymous(PermissionRuleset):
    """Users may do what asyncua's users may; anonymous sessions all but write and call."""

    def __init__(self) -> None:
        user = {ua.NodeId(ua.Int32(t)) for t in USER_TYPES}
        self._allowed = {UserRole.User: user, UserRole.Anonymous: user - {_WRITE, _CALL}}

    def check_validity(self, user: User | None, action_type_id: ua.NodeId, body: Any) -> bool:
        role = user.role if user is not None else UserRole.Anonymous
        if action_type_id == _CALL:
            _CALLER.set(user.name if user is not None else None)
        return action_type_id in self._allowed.get(role, set())


class OpcuaOutput(AsyncServerOutput):
    """The OPC UA server output (see the module docstring)."""

    name = "opcua"
    label = "OPC UA"
    start_timeout_s = 20.0
    _log = log

    def __init__(
        self,
        endpoint: str,
        *,
        users: dict[str, str] | None = None,
        certificate: Path | None = None,
        private_key: Path | None = None,
        deadline_s: float | None = None,
    ) -> None:
        super().__init__(deadline_s=deadline_s)
        self.endpoint = endpoint
        self._users = dict(users or {})
        self._certificate, self._private_key = certificate, private_key
        self._server: Server | None = None
        self._nodes: dict[str, Node] = {}
        self._event: Any = None

    # -- AsyncServerOutput -------------------------------------------------------------------

    def _where(self) -> str:
        return self.endpoint

    def _log_started(self) -> None:
        security = "Basic256Sha256 Sign&Encrypt + None" if self._certificate else "None"
        users = ", ".join(sorted(self._users)) or "none: read-only"
        log.info("OPC UA server on %s (security %s; users %s)", self.endpoint, security, users)

    def _state_detail(self) -> tuple[OutputState, str]:
        sessions = self._session_count() if self._started.is_set() else 0
        if sessions:
            return "connected", f"{self.endpoint}, {sessions} client(s)"
        return super()._state_detail()

    async def _shutdown(self) -> None:
        if self._server is not None:
            await self._server.stop()

    def _session_count(self) -> int:
        server = self._server
        if server is None:
            return 0
        bserver = getattr(server, "bserver", None)
        return len(getattr(bserver, "clients", []) or [])

    async def _serve(self) -> None:
        server = Server(user_manager=_Users(self._users))  # type: ignore[arg-type]  # duck-typed UserManager (get_user)
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("Inspection station")
        await server.set_application_uri("urn:inspection-station:server")
        policies = [ua.SecurityPolicyType.NoSecurity]
        if self._certificate is not None and self._private_key is not None:
            await server.load_certificate(str(self._certificate))
            await server.load_private_key(str(self._private_key))
            policies.append(ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt)
        # asyncua annotates SimpleRoleRuleset, but any PermissionRuleset works: it only calls
        # check_validity().
        server.set_security_policy(policies, permission_ruleset=_ReadOnlyForAnonymous())  # type: ignore[arg-type]  # asyncua's narrow annotation
        # No users: anonymous only (and no user token for a password to travel in clear).
        tokens: list[type] = [ua.AnonymousIdentityToken]
        if self._users:
            tokens.append(ua.UserNameIdentityToken)
        server.set_identity_tokens(tokens)
        idx = await server.register_namespace(NAMESPACE)
        await self._build(server, idx)
        await server.start()
        self._server = server

    async def _build(self, server: Server, idx: int) -> None:
        control = self._control
        assert control is not None
        vision = await server.nodes.objects.add_object(idx, "VisionSystem")
        n = self._nodes
        n["State"] = await vision.add_variable(idx, "State", "Halted", _V.String)
        n["Fault"] = await vision.add_variable(idx, "Fault", "", _V.String)
        n["SelectedRecipe"] = await vision.add_variable(
            idx, "SelectedRecipe", control.selected_recipe(), _V.String
        )
        n["Recipes"] = await vision.add_variable(
            idx, "Recipes", ua.Variant(control.recipes(), _V.String)
        )
        last = await vision.add_object(idx, "LastResult")
        empty = result_values({"verdict": ""})  # no result yet: empty strings, zeros
        for name, vtype in _RESULT_FIELDS.items():
            n[f"LastResult.{name}"] = await last.add_variable(idx, name, empty[name], vtype)
        counters = await vision.add_object(idx, "Counters")
        for name, vtype in _COUNTERS.items():
            zero = 0.0 if vtype == _V.Double else 0
            n[f"Counters.{name}"] = await counters.add_variable(idx, name, zero, vtype)
        method = self._method
        await vision.add_method(idx, "SelectRecipe", method(self._m_select), [_V.String], [])
        await vision.add_method(idx, "Start", method(self._m_start), [], [])
        await vision.add_method(idx, "Stop", method(self._m_stop), [], [])
        await vision.add_method(
            idx, "RunJob", method(self._m_run_job), [_V.String], [_V.String, _V.String]
        )
        etype = await server.create_custom_event_type(
            idx, "ResultReadyEventType", ua.ObjectIds.BaseEventType, list(_RESULT_FIELDS.items())
        )
        self._event = await server.get_event_generator(etype, vision.nodeid)
        n["VisionSystem"] = vision
        await self._write_counters()

    async def _write(self, key: str, value: Any, vtype: _V) -> None:
        await self._nodes[key].write_value(ua.Variant(value, vtype))

    async def _write_counters(self) -> None:
        assert self._control is not None
        values: dict[str, int | float] = dict(self._control.counters())
        values = {
            "Judged": values.get("judged", 0),
            "Pass": values.get("pass", 0),
            "NG": values.get("ng", 0),
            "Error": values.get("error", 0),
            "Yield": float(values.get("yield", 0.0)),
            "BusyTriggers": self.busy_rejected,
            "LateResults": self.late,
        }
        for name, vtype in _COUNTERS.items():
            await self._write(f"Counters.{name}", values[name], vtype)

    async def _apply(self, kind: str, payload: Any) -> None:
        if kind == "result":
            await self._apply_result(payload)
        elif kind == "state":
            state, fault = payload
            await self._write("State", STATES.get(state, "Error"), _V.String)
            await self._write("Fault", fault or "", _V.String)
        elif kind == "recipe":
            assert self._control is not None
            await self._write("SelectedRecipe", self._control.selected_recipe(), _V.String)

    async def _apply_result(self, record: dict[str, Any]) -> None:
        values = result_values(record)
        self.late += bool(values["Late"])
        for name, vtype in _RESULT_FIELDS.items():
            await self._write(f"LastResult.{name}", values[name], vtype)
        await self._write_counters()
        event = self._event.event
        for name, value in values.items():
            setattr(event, name, value)
        message = f"result {values['ResultId']}: {values['Verdict']}"
        if values["PartId"]:
            message += f" (part {values['PartId']})"
        await self._event.trigger(message=message)
        self.sent += 1
        self._last.append(message)

    # -- methods: run on worker threads (they may block), with the caller's user name ----------

    def _method(self, body: Callable[..., Any]) -> Any:
        @uamethod
        async def call(parent: ua.NodeId, *args: Any) -> Any:
            user = _CALLER.get()
            run = functools.partial(body, user, *args)
            return await asyncio.get_running_loop().run_in_executor(None, run)

        return call

    def _command(self, user: str | None, command: str, detail: dict[str, Any]) -> None:
        if self.on_command is not None:
            try:
                self.on_command(user, command, detail)
            except Exception:  # noqa: BLE001 - auditing must not fail the command
                log.exception("OPC UA: recording %s failed", command)

    def _m_select(self, user: str | None, name: str) -> ua.StatusCode | None:
        assert self._control is not None
        self._command(user, "SelectRecipe", {"name": name})
        try:
            self._control.select_recipe(str(name))
        except ValueError as exc:
            self._last.append(f"SelectRecipe refused: {exc}")
            return ua.StatusCode(ua.UInt32(ua.StatusCodes.BadInvalidArgument))
        except RuntimeError as exc:
            self._last.append(f"SelectRecipe refused: {exc}")
            return ua.StatusCode(ua.UInt32(ua.StatusCodes.BadInvalidState))
        self._last.append(f"recipe {name!r} selected by {user}")
        self._put(("recipe", None))
        return None

    def _m_start(self, user: str | None) -> ua.StatusCode | None:
        assert self._control is not None
        self._command(user, "Start", {})
        try:
            self._control.start()
        except Exception as exc:  # noqa: BLE001 - the client gets a status, the log the cause
            log.exception("OPC UA Start failed")
            self._last.append(f"Start failed: {exc}")
            return ua.StatusCode(ua.UInt32(ua.StatusCodes.BadInvalidState))
        return None

    def _m_stop(self, user: str | None) -> None:
        assert self._control is not None
        self._command(user, "Stop", {})
        self._control.stop()

    def _m_run_job(self, user: str | None, part_id: str | None) -> Any:
        assert self._control is not None
        try:
            record = self._control.run_job(part_id or None, self.deadline_s)
        except JobBusy as exc:
            self.busy_rejected += 1
            self._last.append(f"RunJob answered busy: {exc}")
            if self._loop is not None:
                asyncio.run_coroutine_threadsafe(self._write_counters(), self._loop)
            return ua.StatusCode(ua.UInt32(ua.StatusCodes.BadInvalidState))
        return (str(record.get("result_id", "")), str(record.get("verdict", "ERROR")))
