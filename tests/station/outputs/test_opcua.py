"""A real asyncua client on loopback against the station's OPC UA server (real session, demo)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client, ua
from asyncua.common.node import Node

from app.station.access import hash_pin
from app.station.outputs.hub import OutputHub
from app.station.outputs.opcua import NAMESPACE, OpcuaOutput, result_values
from app.station.session import InspectionSession
from tests.station.outputs.conftest import SAMPLES, free_port

pytestmark = pytest.mark.timeout(60)
USER, PASSWORD = "plc", "line-1-secret"


@pytest.fixture
def served(station: InspectionSession) -> Iterator[tuple[OutputHub, str]]:
    url = f"opc.tcp://127.0.0.1:{free_port()}"
    output = OpcuaOutput(url, users={USER: hash_pin(PASSWORD)})
    hub = OutputHub(station, [output])
    hub.start()
    assert output.status().state == "listening", output.status()
    try:
        yield hub, url
    finally:
        hub.close()


class Events:
    def __init__(self) -> None:
        self.received: list[Any] = []

        self.values: list[Any] = []

    def event_notification(self, event: Any) -> None:
        self.received.append(event)

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        self.values.append(value)


async def vision_of(client: Client) -> tuple[int, Node]:
    idx = await client.get_namespace_index(NAMESPACE)
    return idx, await client.nodes.objects.get_child(f"{idx}:VisionSystem")


async def until(predicate: Any, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < end, "timed out"
        await asyncio.sleep(0.05)


def test_a_client_selects_starts_gets_every_result_and_runs_a_job(served: Any) -> None:
    hub, url = served
    station: InspectionSession = hub.session

    async def scenario() -> None:
        client = Client(url, timeout=20)
        client.set_user(USER)
        client.set_password(PASSWORD)
        async with client:
            idx, vision = await vision_of(client)
            names = {(await c.read_browse_name()).Name for c in await vision.get_children()}
            assert {"State", "SelectedRecipe", "Recipes", "LastResult", "Counters"} <= names
            assert {"SelectRecipe", "Start", "Stop", "RunJob"} <= names
            recipes = await (await vision.get_child(f"{idx}:Recipes")).read_value()
            assert recipes == ["demo", "strict"]
            state = await vision.get_child(f"{idx}:State")
            assert await state.read_value() == "Halted"
            assert hub.statuses()[0].state == "connected"

            events = Events()
            sub = await client.create_subscription(20, events)
            etype = await client.nodes.base_event_type.get_child(f"{idx}:ResultReadyEventType")
            await sub.subscribe_events(vision, etype)

            await vision.call_method(f"{idx}:SelectRecipe", "strict")
            selected = await vision.get_child(f"{idx}:SelectedRecipe")
            await until(lambda: _equals(selected, "strict"))
            assert station.rules.threshold == 0.5
            assert any("SelectRecipe by plc" in e.message for e in station.events.records())

            states = Events()
            state_sub = await client.create_subscription(10, states)
            await state_sub.subscribe_data_change(state)
            await vision.call_method(f"{idx}:Start")
            await until(lambda: _true("Operational" in states.values), 10)
            await until(lambda: _true(states.values[-1] == "Halted"))  # the folder ran out
            judged = station.stats().judged
            assert judged == len(list(SAMPLES.glob("*.png")))  # every sample frame
            await until(lambda: _true(len(events.received) == judged))

            result_id, verdict = await vision.call_method(f"{idx}:RunJob", "PART-42")
            assert verdict in ("PASS", "NG")
            await until(lambda: _true(len(events.received) == judged + 1))
            last = events.received[-1]
            assert (last.PartId, last.ResultId, last.Verdict) == ("PART-42", result_id, verdict)
            assert station.latest() is not None
            assert station.latest().extra.get("part_id") == "PART-42"
            assert station.stats().judged == len(events.received)
            part = await (
                await vision.get_child([f"{idx}:LastResult", f"{idx}:PartId"])
            ).read_value()
            assert part == "PART-42"
            counters = await vision.get_child(f"{idx}:Counters")
            judged_node = await counters.get_child(f"{idx}:Judged")
            await until(lambda: _equals(judged_node, judged + 1))
            ids = [int(e.ResultId) for e in events.received]
            assert ids == list(range(1, judged + 2))  # none lost, in order
            await sub.delete()

    asyncio.run(scenario())


def test_anonymous_reads_but_cannot_call_and_a_wrong_password_is_refused(served: Any) -> None:
    hub, url = served

    async def scenario() -> None:
        async with Client(url, timeout=20) as client:
            idx, vision = await vision_of(client)
            assert await (await vision.get_child(f"{idx}:State")).read_value() == "Halted"
            with pytest.raises(ua.UaStatusCodeError) as refused:
                await vision.call_method(f"{idx}:Start")
            assert refused.value.code == ua.StatusCodes.BadUserAccessDenied
        bad = Client(url, timeout=20)
        bad.set_user(USER)
        bad.set_password("wrong")
        with pytest.raises(ua.UaStatusCodeError):
            await bad.connect()

    asyncio.run(scenario())
    assert not hub.session.running and hub.session.stats().judged == 0


def test_busy_run_job_is_answered_bad_invalid_state_and_counted(
    served: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub, url = served
    # Hold the first job inside its acquisition until the second trigger has been answered: on
    # an idle machine a demo job ends in ~50 ms, faster than a poll could see it busy.
    release = threading.Event()
    real_step = hub.session.step

    def held_step(part_id: str | None = None) -> Any:
        release.wait(20)
        return real_step(part_id=part_id)

    monkeypatch.setattr(hub.session, "step", held_step)

    def login() -> Client:
        client = Client(url, timeout=20)
        client.set_user(USER)
        client.set_password(PASSWORD)
        return client

    async def scenario() -> None:
        # Two controllers: one connection's requests are served one after the other.
        async with login() as client, login() as other:
            idx, vision = await vision_of(client)
            _, other_vision = await vision_of(other)
            first = asyncio.create_task(vision.call_method(f"{idx}:RunJob", "A"))
            await until(lambda: _true(hub.jobs.busy), 10)
            with pytest.raises(ua.UaStatusCodeError) as busy:
                await other_vision.call_method(f"{idx}:RunJob", "B")
            assert busy.value.code == ua.StatusCodes.BadInvalidState
            release.set()
            _, verdict = await first
            assert verdict in ("PASS", "NG")
            node = await vision.get_child([f"{idx}:Counters", f"{idx}:BusyTriggers"])
            await until(lambda: _equals(node, 1))

    asyncio.run(scenario())
    assert hub.jobs.busy_rejected == 1


def test_a_certificate_adds_basic256sha256_sign_and_encrypt(
    station: InspectionSession, tmp_path: Path
) -> None:
    from asyncua.crypto.cert_gen import setup_self_signed_certificate
    from asyncua.crypto.security_policies import SecurityPolicyBasic256Sha256
    from cryptography.x509.oid import ExtendedKeyUsageOID

    async def make(name: str, uri: str, use: Any) -> tuple[Path, Path]:
        key, cert = tmp_path / f"{name}-key.pem", tmp_path / f"{name}-cert.der"
        await setup_self_signed_certificate(
            key, cert, uri, "127.0.0.1", [use], {"organizationName": name}
        )
        return cert, key

    server_cert, server_key = asyncio.run(
        make("server", "urn:inspection-station:server", ExtendedKeyUsageOID.SERVER_AUTH)
    )
    client_cert, client_key = asyncio.run(
        make("client", "urn:plc:client", ExtendedKeyUsageOID.CLIENT_AUTH)
    )
    url = f"opc.tcp://127.0.0.1:{free_port()}"
    output = OpcuaOutput(
        url, users={USER: hash_pin(PASSWORD)}, certificate=server_cert, private_key=server_key
    )
    hub = OutputHub(station, [output])
    hub.start()

    async def scenario() -> None:
        endpoints = await Client(url, timeout=20).connect_and_get_server_endpoints()
        modes = {(e.SecurityPolicyUri.rsplit("#", 1)[-1], e.SecurityMode) for e in endpoints}
        assert modes == {
            ("None", ua.MessageSecurityMode.None_),
            ("Basic256Sha256", ua.MessageSecurityMode.SignAndEncrypt),
        }
        client = Client(url, timeout=20)
        await client.set_security(
            SecurityPolicyBasic256Sha256, str(client_cert), str(client_key),
            mode=ua.MessageSecurityMode.SignAndEncrypt,
        )  # fmt: skip
        client.set_user(USER)
        client.set_password(PASSWORD)
        async with client:
            idx, vision = await vision_of(client)
            _, verdict = await vision.call_method(f"{idx}:RunJob", "SECURE-1")
            assert verdict in ("PASS", "NG")

    try:
        asyncio.run(scenario())
    finally:
        hub.close()
    assert station.latest() is not None
    assert station.latest().extra.get("part_id") == "SECURE-1"


def test_result_values_carry_class_counts_only_when_defects_have_classes() -> None:
    plain = result_values({"verdict": "NG", "defects": [{"area_px": 5}, {"area_px": 7}]})
    assert plain["DefectCount"] == 2 and plain["TotalAreaPx"] == 12 and plain["ClassCounts"] == ""
    classes = [{"area_px": 1, "class_name": "scratch"}, {"area_px": 1, "class_name": "scratch"}]
    assert result_values({"defects": classes})["ClassCounts"] == '{"scratch": 2}'


async def _equals(node: Node, value: Any) -> bool:
    return bool(await node.read_value() == value)


async def _true(value: bool) -> bool:
    return value


def test_opcua_settings_take_scrypt_records_only(tmp_path: Path) -> None:
    from app.station.settings import SettingsError, load_settings, save_settings

    path = tmp_path / "settings.toml"
    record = hash_pin(PASSWORD)
    path.write_text(f'[opcua]\nusers = {{ plc = "{record}" }}\n', encoding="utf-8")
    settings = load_settings(path)
    assert settings.opcua.users == (("plc", record),)
    save_settings(settings, tmp_path / "again.toml")
    assert load_settings(tmp_path / "again.toml").opcua == settings.opcua
    path.write_text('[opcua]\nusers = { plc = "clear-text" }\n', encoding="utf-8")
    with pytest.raises(SettingsError, match="not clear-text passwords"):
        load_settings(path)
    path.write_text('[opcua]\ncertificate = "c.der"\n', encoding="utf-8")
    with pytest.raises(SettingsError, match="go together"):
        load_settings(path)
