"""Trigger -> result latency of a triggered job, as a PLC sees it, over Modbus TCP and OPC UA.

The station runs the demo model on a camera (default ``genicam:0``, the Viky GenTL simulator the
``genicam`` wheel ships) with the line stopped, so every job takes one new frame. Two real clients
on loopback drive it, one job at a time:

- Modbus: write the part id registers, write the trigger coil, poll the trigger coil (every
  1 ms) until the station clears it, read the result registers (the part id must come back);
- OPC UA: call ``RunJob(PartId)`` and wait for its answer.

Latency = the client's clock from the trigger write / method call to the result being readable.
The station's own figure (``latency_ms`` of the job record: trigger accepted -> result published)
and the inference time are reported beside it.

    python -m bench.bench_trigger [--source genicam:0] [--jobs 40]

Writes a markdown table (with the command that produced it) to ``bench/results/trigger.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shlex
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asyncua import Client  # noqa: E402
from pymodbus.client import ModbusTcpClient  # noqa: E402

from app.station.access import hash_pin  # noqa: E402
from app.station.outputs import modbus as mb  # noqa: E402
from app.station.outputs.base import OutputStatus  # noqa: E402
from app.station.outputs.hub import OutputHub  # noqa: E402
from app.station.outputs.opcua import NAMESPACE, OpcuaOutput  # noqa: E402
from app.station.recipe import SourceSettings, demo_recipe_path, load_recipe, save_recipe  # noqa: E402
from app.station.session import InspectionSession  # noqa: E402
from app.station.settings import Settings  # noqa: E402
from bench.bench_engines import cpu_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench" / "results" / "trigger.md"
USER, PASSWORD = "bench", "bench-password"


class JobLatencies:
    """An output that keeps the station-side latency of every job record."""

    name = "bench"

    def __init__(self) -> None:
        self.station_ms: dict[str, list[float]] = {"modbus": [], "opcua": []}
        self.infer_ms: dict[str, list[float]] = {"modbus": [], "opcua": []}
        self.verdicts: set[str] = set()

    def start(self, control: Any) -> None:
        pass

    def publish(self, record: dict[str, Any]) -> None:
        part = str(record.get("part_id") or "")
        if "job_id" not in record or part == "warm-up":
            return
        via = "opcua" if part.startswith("UA-") else "modbus"
        self.station_ms[via].append(float(record["latency_ms"]))
        self.infer_ms[via].append(float(record.get("timings_ms", {}).get("infer", 0.0)))
        self.verdicts.add(str(record.get("verdict")))

    def state_changed(self, state: str, fault: str | None) -> None:
        pass

    def status(self) -> OutputStatus:
        return OutputStatus(self.name, "connected")

    def close(self) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def modbus_jobs(port: int, first: int, n: int) -> list[float]:
    client = ModbusTcpClient("127.0.0.1", port=port, timeout=10)
    assert client.connect(), "modbus client could not connect"
    out = []
    try:
        for i in range(first, first + n):
            part = 100_000 + i
            client.write_registers(mb.HR_PART_IN, [part & 0xFFFF, part >> 16])
            t0 = time.perf_counter()
            if client.write_coil(mb.TRIGGER, True).isError():
                raise RuntimeError("trigger refused")
            while client.read_coils(mb.TRIGGER, count=1).bits[0]:
                time.sleep(0.001)
            regs = client.read_holding_registers(0, count=13).registers
            out.append((time.perf_counter() - t0) * 1000.0)
            got = regs[mb.HR_PART_OUT] | (regs[mb.HR_PART_OUT + 1] << 16)
            if got != part:
                raise RuntimeError(f"part id {got} came back for trigger {part}")
    finally:
        client.close()
    return out


async def opcua_jobs(url: str, first: int, n: int) -> list[float]:
    client = Client(url, timeout=30)
    client.set_user(USER)
    client.set_password(PASSWORD)
    out = []
    async with client:
        idx = await client.get_namespace_index(NAMESPACE)
        vision = await client.nodes.objects.get_child(f"{idx}:VisionSystem")
        for i in range(first, first + n):
            t0 = time.perf_counter()
            await vision.call_method(f"{idx}:RunJob", f"UA-{i}")
            out.append((time.perf_counter() - t0) * 1000.0)
    return out


def summary(values: list[float]) -> tuple[float, float, float]:
    arr = np.asarray(values, dtype=np.float64)
    return float(np.median(arr)), float(np.percentile(arr, 99)), float(arr.max())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="genicam:0", help="source spec (default genicam:0)")
    parser.add_argument("--jobs", type=int, default=40, help="jobs per protocol (default 40)")
    parser.add_argument("--round", type=int, default=5, help="jobs per protocol and round")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench-trigger-"))
    demo = load_recipe(demo_recipe_path())
    recipe = replace(demo, source=SourceSettings(spec=args.source, mode="triggered"))
    path = save_recipe(recipe, tmp / "recipes" / "demo.toml").path
    assert path is not None
    settings = Settings.defaults(tmp / "data")
    session = InspectionSession(load_recipe(path), recipe_path=path, settings=settings)
    url = f"opc.tcp://127.0.0.1:{free_port()}"
    port = free_port()
    latencies = JobLatencies()
    outputs = [
        OpcuaOutput(url, users={USER: hash_pin(PASSWORD)}),
        mb.ModbusOutput("127.0.0.1", port),
    ]
    hub = OutputHub(session, [*outputs, latencies])
    hub.start()
    try:
        for _ in range(3):  # warm-up: opens the camera, first inferences
            hub.control.run_job("warm-up")
        # Interleaved rounds, so the load of a shared machine hits both protocols alike.
        modbus: list[float] = []
        opcua: list[float] = []
        for first in range(1, args.jobs + 1, args.round):
            n = min(args.round, args.jobs + 1 - first)
            modbus += modbus_jobs(port, first, n)
            opcua += asyncio.run(opcua_jobs(url, first, n))
        frame = session.latest()
        shape = "x".join(str(v) for v in frame.frame.image.shape) if frame else "?"
        verdicts = sorted(latencies.verdicts)
    finally:
        hub.close()
        session.close()

    command = "python -m bench.bench_trigger " + shlex.join(
        argv if argv is not None else sys.argv[1:]
    )
    client = {"modbus": modbus, "opcua": opcua}

    def overhead(via: str) -> list[float]:
        return [c - s for c, s in zip(client[via], latencies.station_ms[via], strict=True)]

    rows = [
        ("Modbus TCP: trigger coil -> coil cleared, registers read", modbus),
        ("  station side (trigger accepted -> result published)", latencies.station_ms["modbus"]),
        ("  inference alone (engine)", latencies.infer_ms["modbus"]),
        ("  protocol + client (client - station side, per job)", overhead("modbus")),
        ("OPC UA: RunJob call -> answer", opcua),
        ("  station side (trigger accepted -> result published)", latencies.station_ms["opcua"]),
        ("  inference alone (engine)", latencies.infer_ms["opcua"]),
        ("  protocol + client (client - station side, per job)", overhead("opcua")),
    ]
    lines = [
        "# Trigger -> result latency of a triggered job",
        "",
        f"Command: `{command.strip()}`  ",
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; CPU: {cpu_name()}; "
        f"Python {platform.python_version()}  ",
        f"Camera: `{args.source}` ({shape} frames; the Viky simulator has no trigger node, so each "
        "job takes the camera's next frame); model: the demo model (`resources/models/demo.onnx`); "
        f"line stopped, one job at a time, {args.jobs} jobs per protocol after 3 warm-up jobs, "
        f"in interleaved rounds of {args.round}; "
        f"verdicts seen: {', '.join(verdicts)}.",
        "",
        "| path | jobs | median ms | p99 ms | max ms |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, values in rows:
        med, p99, top = summary(values)
        lines.append(f"| {name} | {len(values)} | {med:.1f} | {p99:.1f} | {top:.1f} |")
    lines += [
        "",
        f"p99 of {args.jobs} jobs is the interpolated 99th percentile (close to the maximum at this "
        "count). Clients and station share the machine's cores, as a PLC on loopback would not: "
        "on the line, add the network round trip (Modbus polls: plus the PLC's poll period). "
        f"Load average (1 min) at the end: {os.getloadavg()[0]:.1f}. Inference times vary from "
        "job to job; the *protocol + client* rows (per-job differences) are what the protocol "
        "itself adds, so compare the protocols by those rows, not by the totals.",
        "",
        "Seen in an earlier run on a busy machine (2026-11-29): inference ran 2-3x faster "
        "during the Modbus jobs, whose client polls the trigger coil every 1 ms; on this "
        "(virtual, 2-core) machine a thread that wakes every millisecond kept ONNX Runtime "
        "faster (360 -> 103, 486 -> 303, 322 -> 131 ms with a plain `time.sleep(0.001)` thread "
        "beside `run_job`). On an idle machine the two protocols' inference times match.",
        f"Mean of the Modbus latencies: {statistics.fmean(modbus):.1f} ms.",
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
