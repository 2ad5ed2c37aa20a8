"""The output hub on the real session: recipe sections, control, running-line jobs, failures."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from app.station.outputs.base import OutputStatus
from app.station.outputs.hub import OutputHub
from app.station.recipe import RecipeError, load_recipe, recipe_from_dict, recipe_to_dict
from app.station.session import InspectionSession
from app.station.settings import Settings
from tests.station.outputs.conftest import free_port, write_recipes

pytestmark = pytest.mark.timeout(60)


class Recorder:
    """An output that keeps what it is given."""

    name = "recorder"

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.states: list[tuple[str, str | None]] = []
        self.control: Any = None

    def start(self, control: Any) -> None:
        self.control = control

    def publish(self, record: dict[str, Any]) -> None:
        self.records.append(record)

    def state_changed(self, state: str, fault: str | None) -> None:
        self.states.append((state, fault))

    def status(self) -> OutputStatus:
        return OutputStatus(self.name, "connected", sent=len(self.records))

    def close(self) -> None:
        pass


def test_outputs_are_off_unless_their_section_is_present(station: InspectionSession) -> None:
    assert OutputHub.from_recipe(station.recipe, station.settings, station) is None


def test_outputs_sections_are_validated(tmp_path: Path) -> None:
    base = {"name": "x", "model": "m.onnx"}
    ok = recipe_from_dict(
        {**base, "outputs": {"job_deadline_ms": 250, "modbus": {"address": "0.0.0.0:5020"}}},
        base_dir=tmp_path,
    )
    assert ok.outputs == {"job_deadline_ms": 250.0, "modbus": {"address": "0.0.0.0:5020"}}
    assert recipe_to_dict(ok, base_dir=tmp_path)["outputs"] == ok.outputs
    bad = [
        ({"opcua": {"endpont": "opc.tcp://x:1"}}, "[outputs.opcua]: unknown key 'endpont'"),
        ({"plc": {}}, "[outputs]: unknown key 'plc'"),
        ({"modbus": {"address": "5020"}}, "'address': must be HOST:PORT"),
        ({"opcua": {"endpoint": "http://x"}}, "opc.tcp://"),
        ({"job_deadline_ms": 0}, "'job_deadline_ms': must be > 0"),
    ]
    for outputs, message in bad:
        with pytest.raises(RecipeError, match=None) as err:
            recipe_from_dict({**base, "outputs": outputs}, base_dir=tmp_path, origin="r.toml")
        assert message in str(err.value), (outputs, str(err.value))


def test_from_recipe_builds_the_outputs_and_one_failure_spares_the_others(tmp_path: Path) -> None:
    busy_port = socket.socket()
    busy_port.bind(("127.0.0.1", 0))
    busy_port.listen()
    taken = busy_port.getsockname()[1]
    outputs = {
        "job_deadline_ms": 4000,
        "opcua": {"endpoint": f"opc.tcp://127.0.0.1:{free_port()}"},
        "modbus": {"address": f"127.0.0.1:{taken}"},
    }
    path = write_recipes(tmp_path / "recipes", outputs)
    recipe = load_recipe(path)
    settings = Settings.defaults(tmp_path / "data")
    with InspectionSession(recipe, recipe_path=path, settings=settings) as session:
        hub = OutputHub.from_recipe(recipe, settings, session)
        assert hub is not None and [o.name for o in hub.outputs] == ["opcua", "modbus"]
        assert hub.jobs.deadline_s == 4.0
        hub.start()
        try:
            states = {s.name: s for s in hub.statuses()}
            assert states["opcua"].state == "listening"
            assert states["modbus"].state == "error" and str(taken) in states["modbus"].detail
            assert any("modbus" in e.message for e in session.events.records())
            record = hub.control.run_job("P-1")  # the line still answers through OPC UA
            assert record["part_id"] == "P-1"
        finally:
            hub.close()
            busy_port.close()


def test_a_job_while_the_line_runs_tags_the_next_result(station: InspectionSession) -> None:
    recorder = Recorder()
    hub = OutputHub(station, [recorder], job_timeout_s=20)
    hub.start()
    try:
        station.start()
        record = hub.control.run_job("RUN-7")
        assert record["part_id"] == "RUN-7" and record["verdict"] in ("PASS", "NG")
        station.wait(30)
    finally:
        hub.close()
    tagged = [r for r in recorder.records if r.get("part_id") == "RUN-7"]
    assert tagged == [record]  # published once, with the part id
    stored = [r for r in station.history() if r.extra.get("part_id") == "RUN-7"]
    assert len(stored) == 1 and stored[0].frame.frame_id == record["frame"]
    assert [r["result_id"] for r in recorder.records] == list(range(1, len(recorder.records) + 1))
    assert len(recorder.records) == station.stats().judged
    assert ("running", None) in recorder.states and recorder.states[-1][0] == "stopped"


def test_control_counters_recipes_and_refusals(station: InspectionSession) -> None:
    hub = OutputHub(station, [Recorder()])
    hub.start()
    try:
        control = hub.control
        assert control.recipes() == ["demo", "strict"] and control.selected_recipe() == "demo"
        with pytest.raises(ValueError, match="unknown recipe 'nope'"):
            control.select_recipe("nope")
        record = control.run_job(None)
        assert record["part_id"] is None and record["job_id"] == 1
        counters = control.counters()
        assert counters["judged"] == 1
        assert counters["pass"] + counters["ng"] + counters["error"] == 1
        assert counters["yield"] == counters["pass"]
        station.start()
        with pytest.raises(RuntimeError, match="stop the line"):
            control.select_recipe("strict")
        control.stop()
        assert control.state() == ("stopped", None)
    finally:
        hub.close()
