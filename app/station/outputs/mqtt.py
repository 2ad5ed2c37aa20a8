"""MQTT output: one JSON message per inspection, the station state retained, nothing lost.

Topics (``prefix`` and ``station`` from the recipe's ``[outputs.mqtt]``):

- ``{prefix}/{station}/result``: the result record (the CLI JSON line's fields) plus
  ``"station"`` and ``"seq"``, QoS 1 (``qos`` key), not retained. ``seq`` increases by one per
  message over the life of the station's queue file, so a consumer can drop the duplicate that
  at-least-once delivery sends after a connection breaks between a PUBLISH and its PUBACK.
- ``{prefix}/{station}/state``: ``{"station", "state", "fault", "time"}`` retained, QoS 1;
  ``state`` is "running" / "stopped" / "fault", and "offline" as the Last Will (also published
  on a clean close).
- ``{prefix}/{station}/alarm``: ``{"station", "alarm", "time", "seq"}`` for the hub's alarms
  (a late result, a trigger while busy), queued and delivered like results.

Delivery: every result goes first into an on-disk queue (:class:`DiskQueue`, a SQLite file in the
data folder, ``queue_max`` long, the oldest dropped and counted when full). One sender thread
publishes the oldest message, waits for its PUBACK, deletes it and goes on: one message in flight,
so the order is kept across broker outages and station restarts (paho re-sends the in-flight
message after a reconnect). On loopback this delivers far more than a 30 fps line makes
(tests/station/outputs/test_mqtt.py measures it). ``publish`` only writes to the queue, so a slow
or absent broker never blocks the line.

TLS and the broker account come from the station settings (``[mqtt]``: ``username``,
``password``, ``ca_file``, ``cert_file``, ``key_file``); an ``mqtts://`` url turns TLS on with the
system's CAs when no ``ca_file`` is given.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from app.station.outputs._disk_queue import DiskQueue
from app.station.outputs.base import OutputState, OutputStatus, StationControl
from app.station.settings import MqttSettings

if TYPE_CHECKING:
    from app.station.recipe import Recipe
    from app.station.settings import Settings

__all__ = ["MqttOutput", "create_output"]

log = logging.getLogger(__name__)

DEFAULT_PORT, DEFAULT_TLS_PORT = 1883, 8883
DEFAULT_QUEUE_MAX = 10_000
_LAST = 12  # lines kept for the Integration page
DRAIN_ON_CLOSE_S = 3.0  # a headless run's last results should leave before the process does
_QUEUE_WRITE = "cannot write to the message queue"


def _topic_part(value: str, key: str) -> str:
    if not value or any(c in value for c in "+#\0"):
        raise ValueError(f"[outputs.mqtt] {key} = {value!r}: must be non-empty, without + or #")
    return value.strip("/")


class MqttOutput:
    """Publishes results and state to an MQTT broker (see the module docstring).

    Parameters
    ----------
    section
        The recipe's ``[outputs.mqtt]`` table: ``url`` (``mqtt://HOST[:PORT]`` or ``mqtts://``),
        ``prefix`` (default "inspection"), ``station`` (default "line1"), ``qos`` (default 1),
        ``queue_max`` (default 10000 messages).
    data_dir
        Folder of the on-disk queue (``mqtt-queue-{station}.sqlite3``).
    settings
        Broker account and TLS files (the station settings' ``[mqtt]``).

    Raises
    ------
    ValueError
        A bad url, prefix or station (the message names the key).
    """

    name = "mqtt"

    def __init__(
        self,
        section: Mapping[str, Any],
        *,
        data_dir: str | os.PathLike[str],
        settings: MqttSettings | None = None,
    ) -> None:
        self.url = str(section.get("url", f"mqtt://127.0.0.1:{DEFAULT_PORT}"))
        parts = urlsplit(self.url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"[outputs.mqtt] url = {self.url!r}: expected mqtt(s)://HOST[:PORT]")
        try:
            port = parts.port
        except ValueError:
            raise ValueError(f"[outputs.mqtt] url = {self.url!r}: bad port") from None
        self.tls = parts.scheme == "mqtts" or bool(settings and settings.ca_file)
        self.host = parts.hostname
        self.port = port or (DEFAULT_TLS_PORT if self.tls else DEFAULT_PORT)
        self.prefix = _topic_part(str(section.get("prefix", "inspection")), "prefix")
        self.station = _topic_part(str(section.get("station", "line1")), "station")
        self.qos = int(section.get("qos", 1))
        self.queue_max = int(section.get("queue_max", DEFAULT_QUEUE_MAX))
        self.settings = settings or MqttSettings()
        self.result_topic = f"{self.prefix}/{self.station}/result"
        self.state_topic = f"{self.prefix}/{self.station}/state"
        self.alarm_topic = f"{self.prefix}/{self.station}/alarm"
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in self.station)
        self.queue_path = Path(data_dir) / f"mqtt-queue-{safe}.sqlite3"

        self.sent = 0
        self._queue: DiskQueue | None = None
        self._client: mqtt.Client | None = None
        self._connected = False
        self._error: str | None = None  # a fault that retrying will not cure (files, auth, disk)
        self._link: str = "not started"  # why we are not connected, for status()
        self._state: tuple[str, str | None] = ("stopped", None)
        self._last: deque[str] = deque(maxlen=_LAST)
        self._lock = threading.Lock()
        self._acked: set[int] = set()
        self._ack_cond = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._sender: threading.Thread | None = None
        self._lost_publishes = 0  # results the disk queue could not take (disk full, ...)
        self._drop_logged = 0.0

    # -- Output protocol ---------------------------------------------------------------------

    def start(self, control: StationControl) -> None:
        """Open the queue, connect in the background (retrying) and start the sender."""
        try:
            self._state = control.state()
        except Exception as exc:  # the state is cosmetic here; never fail the start for it
            log.debug("mqtt: cannot read the station state (%s)", exc)
        try:
            self._queue = DiskQueue(self.queue_path, self.queue_max)
        except Exception as exc:
            self._fail(f"cannot open the message queue {self.queue_path}: {exc}")
            return
        if len(self._queue):
            self._note(f"{len(self._queue)} messages waiting from before the restart")
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"inspection-station-{self.station}",
            protocol=mqtt.MQTTv311,
        )
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.will_set(self.state_topic, self._state_payload("offline", None), qos=1, retain=True)
        s = self.settings
        if s.username:
            client.username_pw_set(s.username, s.password)
        try:
            if self.tls:
                client.tls_set(
                    ca_certs=str(s.ca_file) if s.ca_file else None,
                    certfile=str(s.cert_file) if s.cert_file else None,
                    keyfile=str(s.key_file) if s.key_file else None,
                )
        except (OSError, ValueError) as exc:
            self._fail(f"TLS files unusable ({exc}); results wait in the queue")
            return
        client.reconnect_delay_set(1, 5)
        self._client = client
        self._link = f"connecting to {self.url}"
        client.connect_async(self.host, self.port, keepalive=10)
        client.loop_start()
        self._sender = threading.Thread(target=self._send_loop, name="mqtt-sender", daemon=True)
        self._sender.start()

    def publish(self, record: dict[str, Any]) -> None:
        """Queue one result (on disk); never blocks on the network, never raises."""
        self._enqueue(self.result_topic, {**record, "station": self.station})

    def alarm(self, message: str) -> None:
        """An alarm from the hub (late result, busy trigger, ...), queued like a result."""
        self._note(f"alarm: {message}")
        doc = {"station": self.station, "alarm": message, "time": time.time()}
        self._enqueue(self.alarm_topic, doc)

    def _enqueue(self, topic: str, doc: dict[str, Any]) -> None:
        queue = self._queue
        if queue is None:  # not started, or the queue could not be opened (status says so)
            self._lost_publishes += 1
            return
        payload = json.dumps(doc, default=str)
        try:
            dropped = queue.push(topic, payload.encode("utf-8"))
        except Exception as exc:
            self._lost_publishes += 1
            self._fail(f"{_QUEUE_WRITE} ({exc}); result not published")
            return
        if self._error and self._error.startswith(_QUEUE_WRITE):
            self._error = None  # the disk takes messages again
        now = time.monotonic()
        if dropped and now - self._drop_logged >= 5.0:  # a full queue at 30 fps: not 30 lines/s
            self._drop_logged = now
            log.warning(
                "mqtt: queue full (%d), oldest messages dropped (dropped so far: %d)",
                self.queue_max, queue.dropped,
            )  # fmt: skip
        self._wake.set()

    def state_changed(self, state: str, fault: str | None) -> None:
        """Publish the new state, retained (the broker keeps it for late subscribers)."""
        self._state = (state, fault)
        self._note(f"state {state}" + (f": {fault}" if fault else ""))
        client = self._client
        if client is not None and self._connected:
            client.publish(self.state_topic, self._state_payload(state, fault), 1, retain=True)

    def status(self) -> OutputStatus:
        """connected / queueing n / error, with the last connection events and messages."""
        queue = self._queue
        n = len(queue) if queue is not None else 0
        dropped = (queue.dropped if queue is not None else 0) + self._lost_publishes
        state: OutputState
        if self._error:
            state, detail = "error", self._error
        elif self._connected:
            state = "queueing" if n else "connected"
            detail = f"{self.url}: {n} waiting" if n else f"connected to {self.url}"
        else:
            state = "queueing" if n else "error"
            detail = f"{self._link}; {n} waiting on disk" if n else self._link
        return OutputStatus(
            name=self.name,
            state=state,
            detail=detail,
            queued=n,
            sent=self.sent,
            dropped=dropped,
            last_messages=tuple(self._last),
        )

    def close(self) -> None:
        """Deliver what is queued (a few seconds at most, while connected), say "offline"
        (retained) and stop; what is still undelivered stays on disk for the next start."""
        queue = self._queue
        deadline = time.monotonic() + DRAIN_ON_CLOSE_S
        while queue is not None and len(queue) and self._connected and self._sender is not None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
        self._stop.set()
        self._wake.set()
        if self._sender is not None:
            self._sender.join(timeout=5)
        client, self._client = self._client, None
        if client is not None:
            if self._connected:
                info = client.publish(
                    self.state_topic, self._state_payload("offline", None), 1, retain=True
                )
                deadline = time.monotonic() + 1.0
                while not info.is_published() and time.monotonic() < deadline:
                    time.sleep(0.01)
            client.disconnect()
            client.loop_stop()
        queue, self._queue = self._queue, None
        if queue is not None:
            left = len(queue)
            if left:
                log.info("mqtt: %d messages kept in %s for the next start", left, self.queue_path)
            queue.close()

    # -- internals ---------------------------------------------------------------------------

    def _state_payload(self, state: str, fault: str | None) -> bytes:
        doc: dict[str, Any] = {"station": self.station, "state": state, "fault": fault}
        if state != "offline":  # the Last Will is fixed at connect time: a time would be stale
            doc["time"] = time.time()
        return json.dumps(doc).encode("utf-8")

    def _note(self, text: str) -> None:
        with self._lock:
            self._last.append(f"{time.strftime('%H:%M:%S')} {text}")

    def _fail(self, text: str) -> None:
        if text != self._error:
            log.error("mqtt: %s", text)
            self._note(text)
        self._error = text

    def _on_connect(
        self, client: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        if reason.is_failure:  # wrong password, not authorised, ...: paho keeps retrying
            self._connected = False
            self._fail(f"broker {self.url} refused the connection: {reason}")
            return
        self._connected = True
        self._error = None
        self._link = f"connected to {self.url}"
        log.info("mqtt: connected to %s", self.url)
        self._note(f"connected to {self.url}")
        state, fault = self._state
        client.publish(self.state_topic, self._state_payload(state, fault), 1, retain=True)
        self._wake.set()

    def _on_connect_fail(self, _client: mqtt.Client, _ud: Any) -> None:
        if self._link != f"broker {self.url} unreachable":
            log.warning("mqtt: broker %s unreachable, retrying", self.url)
            self._note(f"broker {self.url} unreachable, retrying")
        self._link = f"broker {self.url} unreachable"

    def _on_disconnect(
        self, _client: mqtt.Client, _ud: Any, _flags: Any, reason: Any, _props: Any
    ) -> None:
        was = self._connected
        self._connected = False
        self._link = f"disconnected from {self.url} ({reason})"
        if was and not self._stop.is_set():
            log.warning("mqtt: %s; results wait on disk", self._link)
            self._note(f"{self._link}, queueing")

    def _on_publish(
        self, _client: mqtt.Client, _ud: Any, mid: int, _reason: Any, _props: Any
    ) -> None:
        with self._ack_cond:
            self._acked.add(mid)
            self._ack_cond.notify_all()

    def _send_loop(self) -> None:
        queue, client = self._queue, self._client
        assert queue is not None and client is not None
        while not self._stop.is_set():
            self._wake.clear()
            head = queue.peek() if self._connected else None
            if head is None:
                self._wake.wait(0.5)
                continue
            seq, topic, stored = head
            doc = json.loads(stored)
            doc["seq"] = seq
            info = client.publish(topic, json.dumps(doc).encode("utf-8"), self.qos)
            if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:  # cannot happen with one in flight
                self._fail("paho refused the message (its queue is full)")
                self._stop.wait(1.0)
                continue
            if self.qos > 0:
                # paho re-sends this message after a reconnect; wait for its PUBACK however
                # long the broker is away (closing leaves it on disk for the next start).
                with self._ack_cond:
                    while info.mid not in self._acked and not self._stop.is_set():
                        self._ack_cond.wait(0.5)
                    if info.mid not in self._acked:
                        return
                    self._acked.clear()  # only the one in flight matters; drop state acks too
            queue.remove(seq)
            self.sent += 1
            if topic != self.alarm_topic:  # alarms were noted when they were raised
                verdict = doc.get("verdict", "")
                self._note(f"#{seq} {verdict} frame {doc.get('frame', '?')} → {topic}")


def create_output(
    config: Mapping[str, Any], *, settings: Settings, recipe: Recipe | None = None
) -> MqttOutput:
    """The hub's factory: ``[outputs.mqtt]`` of the recipe, account and TLS from ``settings``."""
    return MqttOutput(config, data_dir=settings.data_dir, settings=settings.mqtt)
