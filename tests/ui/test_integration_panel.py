"""Integration page and PLC lamp: states, counters, last messages, timer refresh, a real MQTT
output's status through a broker outage, and tooltips on every control."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PySide6.QtWidgets import QAbstractButton, QAbstractItemView, QComboBox, QSpinBox, QWidget

from app.station.outputs.base import OutputStatus
from app.ui.integration_panel import NO_OUTPUTS, IntegrationPanel, PlcIndicator, plc_summary

pytestmark = pytest.mark.gui


def _statuses() -> list[OutputStatus]:
    return [
        OutputStatus("opcua", "listening", "opc.tcp://127.0.0.1:4840", last_messages=("a1",)),
        OutputStatus(
            "mqtt",
            "queueing",
            "broker away",
            queued=7,
            sent=3,
            dropped=1,
            last_messages=("m1", "m2"),
        ),  # fmt: skip
    ]


def _cells(panel: IntegrationPanel, row: int) -> list[str]:
    return [panel.table.item(row, c).text() for c in range(panel.table.columnCount())]


def assert_tooltips(widget: QWidget) -> None:
    kinds = (QAbstractButton, QComboBox, QSpinBox)
    views = widget.findChildren(QAbstractItemView)  # their corner buttons are Qt's own
    controls = [w for k in kinds for w in widget.findChildren(k)
                if not any(v.isAncestorOf(w) for v in views)]  # fmt: skip
    assert controls
    missing = [w.text() if hasattr(w, "text") else type(w).__name__ for w in controls
               if not w.toolTip()]  # fmt: skip
    assert not missing, f"controls without a tooltip: {missing}"


def test_panel_shows_states_counters_and_messages(qtbot) -> None:
    current = _statuses()
    panel = IntegrationPanel(lambda: current, interval_ms=50)
    qtbot.addWidget(panel)
    panel.show()
    assert _cells(panel, 0)[:2] == ["opcua", "listening"]
    assert _cells(panel, 1) == ["mqtt", "queueing 7", "broker away", "7", "3", "1"]
    assert panel.messages.toPlainText() == "a1"  # first output selected
    panel.table.selectRow(1)
    assert panel.messages.toPlainText() == "m1\nm2"
    assert_tooltips(panel)

    # The timer picks up a change; the selection stays on the same output.
    current[1] = OutputStatus("mqtt", "connected", "ok", sent=10, last_messages=("m3",))
    qtbot.waitUntil(lambda: panel.table.item(1, 1).text() == "connected", timeout=2000)
    assert panel.messages.toPlainText() == "m3"


def test_panel_without_outputs_and_with_a_failing_source(qtbot) -> None:
    panel = IntegrationPanel(list)
    qtbot.addWidget(panel)
    assert panel.table.rowCount() == 0 and panel.summary.text() == NO_OUTPUTS

    def broken() -> list[OutputStatus]:
        raise RuntimeError("hub closed")

    panel.source = broken
    with qtbot.waitSignal(panel.error, timeout=1000) as sig:
        panel.refresh()
    assert "hub closed" in sig.args[0] and "hub closed" in panel.summary.text()


@pytest.mark.parametrize(
    ("states", "kind", "text"),
    [
        ([], "none", "no PLC"),
        (["listening"], "none", "no PLC"),
        (["listening", "connected"], "connected", "PLC connected"),
        (["connected", "error"], "error", "PLC error (o1)"),
        (["queueing"], "queueing", "PLC link down, 4 queued"),
    ],
)
def test_plc_summary(states: list[str], kind: str, text: str) -> None:
    sts = [OutputStatus(f"o{i}", s, "d", queued=4) for i, s in enumerate(states)]  # type: ignore[arg-type]
    assert plc_summary(sts)[:2] == (kind, text)


def test_plc_indicator_follows_the_source(qtbot) -> None:
    current: list[OutputStatus] = []
    lamp = PlcIndicator(lambda: current, interval_ms=50)
    qtbot.addWidget(lamp)
    assert lamp.kind == "none" and "no PLC" in lamp.text()
    current.append(OutputStatus("modbus", "connected", "client 127.0.0.1"))
    qtbot.waitUntil(lambda: lamp.kind == "connected", timeout=2000)
    assert "PLC connected" in lamp.text() and "modbus: connected" in lamp.toolTip()
    current.append(OutputStatus("opcua", "error", "port in use"))
    qtbot.waitUntil(lambda: lamp.kind == "error", timeout=2000)
    assert "#cc3333" in lamp.styleSheet()


def test_panel_with_a_real_mqtt_output_through_a_broker_outage(qtbot, tmp_path: Path) -> None:
    from app.station.outputs.mqtt import MqttOutput
    from tests.mosquitto import Mosquitto

    broker = Mosquitto(tmp_path / "broker").start()
    out = MqttOutput({"url": broker.url, "station": "ui"}, data_dir=tmp_path / "data")

    class Control:
        def state(self) -> tuple[str, str | None]:
            return ("running", None)

    out.start(Control())  # type: ignore[arg-type]
    try:
        panel = IntegrationPanel(lambda: [out.status()], interval_ms=100)
        lamp = PlcIndicator(lambda: [out.status()], interval_ms=100)
        qtbot.addWidget(panel)
        qtbot.addWidget(lamp)
        panel.show()
        qtbot.waitUntil(lambda: panel.table.item(0, 1).text() == "connected", timeout=10000)
        qtbot.waitUntil(lambda: lamp.kind == "connected", timeout=3000)
        broker.stop()
        qtbot.waitUntil(lambda: "disconnected" in out.status().detail
                        or "unreachable" in out.status().detail, timeout=10000)  # fmt: skip
        for i in range(5):
            out.publish({"frame": i, "verdict": "PASS"})
        qtbot.waitUntil(lambda: panel.table.item(0, 1).text() == "queueing 5", timeout=3000)
        qtbot.waitUntil(lambda: lamp.kind == "queueing", timeout=3000)
        broker.start()
        qtbot.waitUntil(lambda: panel.table.item(0, 1).text() == "connected", timeout=15000)
        assert panel.table.item(0, 4).text() == "5"  # sent
        assert "#4" in panel.messages.toPlainText() or "#5" in panel.messages.toPlainText()
    finally:
        out.close()
        broker.stop()
        time.sleep(0)
