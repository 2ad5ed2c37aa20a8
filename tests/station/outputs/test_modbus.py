"""A real pymodbus client on loopback drives the station's Modbus server (real session, demo)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from pymodbus.client import ModbusTcpClient

from app.station.outputs import modbus as mb
from app.station.outputs.hub import OutputHub
from app.station.session import InspectionSession
from tests.station.outputs.conftest import free_port

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def plant(
    station: InspectionSession,
) -> Iterator[tuple[OutputHub, mb.ModbusOutput, ModbusTcpClient]]:
    port = free_port()
    output = mb.ModbusOutput("127.0.0.1", port)
    hub = OutputHub(station, [output])
    hub.start()
    assert output.status().state == "listening", output.status()
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=5)
    assert client.connect()
    try:
        yield hub, output, client
    finally:
        client.close()
        hub.close()


def coils(client: ModbusTcpClient) -> list[bool]:
    rr = client.read_coils(0, count=9)
    assert not rr.isError(), rr
    return list(rr.bits[:9])


def regs(client: ModbusTcpClient) -> list[int]:
    rr = client.read_holding_registers(0, count=13)
    assert not rr.isError(), rr
    return list(rr.registers)


def wait_for_result(client: ModbusTcpClient, timeout: float = 20.0) -> None:
    """The PLC side of the handshake: wait until the station resets the trigger coil."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not coils(client)[mb.TRIGGER]:
            return
        time.sleep(0.02)
    raise AssertionError("the station never reset the trigger coil")


def trigger(client: ModbusTcpClient, part: int) -> Any:
    assert not client.write_registers(mb.HR_PART_IN, [part & 0xFFFF, part >> 16]).isError()
    return client.write_coil(mb.TRIGGER, True)


def test_trigger_coil_runs_a_job_and_the_registers_carry_its_result(plant: Any) -> None:
    hub, output, client = plant
    station = hub.session
    assert coils(client)[mb.READY] and not coils(client)[mb.BUSY]
    assert output.status().state == "connected"
    assert regs(client)[mb.HR_RECIPE] == hub.control.recipes().index("demo")
    for n, part in enumerate((70001, 70002, 123456789), start=1):
        assert not trigger(client, part).isError()
        wait_for_result(client)
        r = regs(client)
        latest = station.latest()
        assert latest is not None and latest.extra.get("part_id") == str(part)
        assert r[mb.HR_COUNT] | (r[mb.HR_COUNT + 1] << 16) == n
        assert r[mb.HR_VERDICT] == mb.VERDICT_CODES[latest.inspection.verdict]
        assert r[mb.HR_DEFECTS] == len(latest.inspection.defects)
        assert r[mb.HR_PART_OUT] | (r[mb.HR_PART_OUT + 1] << 16) == part
        c = coils(client)
        assert c[mb.READY] and not c[mb.BUSY] and not c[mb.LATE]
        verdict_coils = [c[mb.PASS], c[mb.NG], c[mb.ERROR]]
        assert verdict_coils.count(True) == 1
        assert verdict_coils[("PASS", "NG", "ERROR").index(latest.inspection.verdict)]
    assert station.stats().judged == 3
    assert output.status().sent == 3


def test_a_trigger_while_busy_is_answered_busy_and_counted(
    plant: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub, _, client = plant
    # Hold the job in its acquisition until the second trigger is answered (a demo job on an
    # idle machine ends in ~50 ms: the test must not depend on inference being slow).
    release = threading.Event()
    real_step = hub.session.step

    def held_step(part_id: str | None = None) -> Any:
        release.wait(20)
        return real_step(part_id=part_id)

    monkeypatch.setattr(hub.session, "step", held_step)
    assert not trigger(client, 1).isError()
    second = client.write_coil(mb.TRIGGER, True)  # the first job still runs
    assert second.isError() and second.exception_code == 6  # server device busy
    release.set()
    wait_for_result(client)
    assert regs(client)[mb.HR_BUSY] == 1
    assert hub.session.stats().judged == 1  # the refused trigger judged nothing


def test_a_late_result_sets_late_and_alarm(plant: Any) -> None:
    hub, output, client = plant
    output.deadline_s = 0.001  # no inference is that fast
    assert not trigger(client, 5).isError()
    wait_for_result(client)
    c = coils(client)
    assert c[mb.LATE] and c[mb.ALARM]
    assert regs(client)[mb.HR_LATE] == 1
    assert hub.jobs.late == 1
    # The PLC acknowledges the alarm; the next on-time result clears "late".
    assert not client.write_coil(mb.ALARM, False).isError()
    output.deadline_s = 30.0
    assert not trigger(client, 6).isError()
    wait_for_result(client)
    c = coils(client)
    assert not c[mb.LATE] and not c[mb.ALARM]


def test_writes_outside_the_plc_registers_are_refused(plant: Any) -> None:
    _, _, client = plant
    refused = client.write_register(mb.HR_COUNT, 99)
    assert refused.isError() and refused.exception_code == 2
    assert client.write_coil(mb.PASS, True).isError()
    assert regs(client)[mb.HR_COUNT] == 0 and not coils(client)[mb.PASS]


def test_recipe_index_register_selects_a_recipe(plant: Any) -> None:
    hub, _, client = plant
    names = hub.control.recipes()
    assert not client.write_register(mb.HR_RECIPE, names.index("strict")).isError()
    end = time.monotonic() + 10
    while hub.control.selected_recipe() != "strict" and time.monotonic() < end:
        time.sleep(0.05)
    assert hub.control.selected_recipe() == "strict"
    assert hub.session.rules.threshold == 0.5
    assert regs(client)[mb.HR_RECIPE] == names.index("strict")
