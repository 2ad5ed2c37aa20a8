"""Modbus TCP server for simple PLCs: status coils, a trigger coil and result registers.

A pymodbus asyncio server on its own thread and event loop; results reach it through a queue,
so the line never waits for a PLC. The map (zero-based addresses, as on the wire) is in
docs/integration.md; in short:

- coils: 0 ready, 1 busy, 2 PASS, 3 NG, 4 ERROR, 5 alarm (latched; the PLC writes 0 to
  acknowledge), 6 trigger (the PLC writes 1; the station writes 0 when the result is out),
  7 running, 8 late.
- holding registers (uint16): 0-1 result counter (low, high word), 2 last verdict (0 none,
  1 PASS, 2 NG, 3 ERROR), 3 defect count, 4 recipe index (write to select), 5-6 part id for the
  next trigger (low, high; written by the PLC), 7-8 part id of the last result, 9 busy triggers,
  10 late results, 11 station state (0 stopped, 1 running, 2 fault), 12 last job latency (ms).

A trigger while a job runs is answered with Modbus exception 6 (server device busy) and counted
in register 9. Writes anywhere else are refused with exception 2 (illegal data address).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from app.station.outputs._async_server import AsyncServerOutput
from app.station.outputs.base import JobBusy, OutputState

if TYPE_CHECKING:
    from app.station.recipe import Recipe
    from app.station.settings import Settings

log = logging.getLogger(__name__)

# coils
READY, BUSY, PASS, NG, ERROR, ALARM, TRIGGER, RUNNING, LATE = range(9)
N_COILS = 16
# holding registers
HR_COUNT, HR_VERDICT, HR_DEFECTS, HR_RECIPE = 0, 2, 3, 4
HR_PART_IN, HR_PART_OUT, HR_BUSY, HR_LATE, HR_STATE, HR_LATENCY = 5, 7, 9, 10, 11, 12
N_REGS = 16
VERDICT_CODES = {"PASS": 1, "NG": 2, "ERROR": 3}
STATE_CODES = {"stopped": 0, "running": 1, "fault": 2}
# Function codes the station itself writes with (read codes carrying values: a PLC cannot send
# those), so the access hook tells the station's own writes from a PLC's.
_OWN_COILS, _OWN_REGS = 1, 3
_PLC_COIL_WRITES, _PLC_REG_WRITES = (5, 15), (6, 16)


def create_output(config: dict[str, Any], *, settings: Settings, recipe: Recipe) -> ModbusOutput:
    """``[outputs.modbus]``: ``address`` (HOST:PORT, default 127.0.0.1:5020), ``unit_id``
    (0 = answer every unit id), ``job_deadline_ms``."""
    host, _, port = str(config.get("address", "127.0.0.1:5020")).rpartition(":")
    deadline = config.get("job_deadline_ms")
    return ModbusOutput(
        host,
        int(port),
        unit_id=int(config.get("unit_id", 0)),
        deadline_s=float(deadline) / 1000.0 if deadline else None,
    )


def _words(value: int) -> list[int]:
    value &= 0xFFFFFFFF
    return [value & 0xFFFF, value >> 16]


def _part_number(part_id: Any) -> int:
    """A part id as the uint32 of registers 7-8 (0 when it is not a number that fits)."""
    text = str(part_id) if part_id is not None else ""
    return int(text) if text.isdigit() and int(text) < 2**32 else 0


class ModbusOutput(AsyncServerOutput):
    """The Modbus TCP server output (see the module docstring for the map)."""

    name = "modbus"
    label = "modbus"
    stop_timeout_s = 5.0
    _log = log

    def __init__(
        self, host: str, port: int, *, unit_id: int = 0, deadline_s: float | None = None
    ) -> None:
        super().__init__(deadline_s=deadline_s)
        self.host, self.port, self.unit_id = host, port, unit_id
        self._server: ModbusTcpServer | None = None
        self._busy = False
        self._clients = 0

    # -- AsyncServerOutput -------------------------------------------------------------------

    def _where(self) -> str:
        return f"{self.host}:{self.port}"

    def _log_started(self) -> None:
        log.info("Modbus TCP server on %s:%d (unit id %d)", self.host, self.port, self.unit_id)

    def _state_detail(self) -> tuple[OutputState, str]:
        if self._clients:
            return "connected", f"{self._clients} PLC(s) on {self.host}:{self.port}"
        return super()._state_detail()

    def alarm(self, message: str) -> None:
        super().alarm(message)
        self._put(("alarm", message))  # the PLC sees it: the alarm coil latches

    async def _shutdown(self) -> None:
        if self._server is not None:
            await self._server.shutdown()

    async def _serve(self) -> None:
        device = SimDevice(
            self.unit_id,
            simdata=(
                [SimData(0, count=N_COILS, values=False, datatype=DataType.BITS)],
                [SimData(0, count=16, values=False, datatype=DataType.BITS)],
                [SimData(0, count=N_REGS, values=0, datatype=DataType.REGISTERS)],
                [SimData(0, count=1, values=0, datatype=DataType.REGISTERS)],
            ),
            action=self._access,
        )
        self._server = ModbusTcpServer(
            device, address=(self.host, self.port), trace_connect=self._on_connect
        )
        await self._server.serve_forever(background=True)
        await self._write_recipe_index()
        await self._set_coils({READY: True})

    def _on_connect(self, connected: bool) -> None:
        self._clients = max(0, self._clients + (1 if connected else -1))

    async def _set_coils(self, values: dict[int, bool]) -> None:
        assert self._server is not None
        for address, value in sorted(values.items()):
            await self._server.async_setValues(self.unit_id, _OWN_COILS, address, [bool(value)])

    async def _set_regs(self, address: int, values: list[int]) -> None:
        assert self._server is not None
        clipped = [max(0, min(0xFFFF, int(v))) for v in values]
        await self._server.async_setValues(self.unit_id, _OWN_REGS, address, clipped)

    async def _get_regs(self, address: int, count: int) -> list[int]:
        assert self._server is not None
        return [int(v) for v in await self._server.async_getValues(self.unit_id, 3, address, count)]

    async def _apply(self, kind: str, payload: Any) -> None:
        if kind == "result":
            await self._apply_result(payload)
        elif kind == "state":
            await self._apply_state(*payload)
        elif kind == "alarm":
            await self._set_coils({ALARM: True})

    async def _apply_result(self, record: dict[str, Any]) -> None:
        verdict = str(record.get("verdict", "ERROR"))
        late = bool(record.get("late", False))
        self.late += late
        await self._set_regs(
            HR_VERDICT, [VERDICT_CODES.get(verdict, 3), len(record.get("defects") or [])]
        )
        await self._set_regs(HR_PART_OUT, _words(_part_number(record.get("part_id"))))
        await self._set_regs(HR_LATE, [self.late])
        if "latency_ms" in record:
            await self._set_regs(HR_LATENCY, [round(float(record["latency_ms"]))])
        coils = {PASS: verdict == "PASS", NG: verdict == "NG", ERROR: verdict not in ("PASS", "NG")}
        coils[LATE] = late
        if late:
            coils[ALARM] = True
        await self._set_coils(coils)
        # The counter last: a PLC that sees it change reads a complete result.
        await self._set_regs(HR_COUNT, _words(int(record.get("result_id", self.sent + 1))))
        self.sent += 1
        part = record.get("part_id")
        self._last.append(
            f"#{record.get('result_id')} {verdict}" + (f" part {part}" if part else "")
        )

    async def _apply_state(self, state: str, fault: str | None) -> None:
        await self._set_regs(HR_STATE, [STATE_CODES.get(state, 2)])
        await self._set_coils(
            {RUNNING: state == "running", READY: state != "fault" and not self._busy}
        )
        if state == "fault":
            await self._set_coils({ALARM: True})
            self._last.append(f"fault: {fault}")

    async def _write_recipe_index(self) -> None:
        if self._control is None:
            return
        names = self._control.recipes()
        selected = self._control.selected_recipe()
        await self._set_regs(HR_RECIPE, [names.index(selected) if selected in names else 0])

    # -- what a PLC writes -------------------------------------------------------------------

    async def _access(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        current_registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        """pymodbus calls this on every access; it refuses or acts on a PLC's writes."""
        if set_values is None or function_code in (_OWN_COILS, _OWN_REGS):
            return None
        if function_code in _PLC_COIL_WRITES:
            for offset, value in enumerate(set_values):
                coil = address + offset
                if coil == TRIGGER and value:
                    if self._busy:
                        self.busy_rejected += 1
                        await self._set_regs(HR_BUSY, [self.busy_rejected])
                        self._last.append("trigger while busy: answered busy")
                        return ExcCodes.DEVICE_BUSY
                    self._busy = True
                    asyncio.get_running_loop().create_task(self._job())
                elif coil == ALARM and not value:
                    continue  # acknowledge
                elif coil != TRIGGER:
                    return ExcCodes.ILLEGAL_ADDRESS
            return None
        if function_code in _PLC_REG_WRITES:
            span = range(address, address + len(set_values))
            if not set(span) <= {HR_RECIPE, HR_PART_IN, HR_PART_IN + 1}:
                return ExcCodes.ILLEGAL_ADDRESS
            if HR_RECIPE in span:
                index = int(set_values[HR_RECIPE - address])
                asyncio.get_running_loop().create_task(self._select_recipe(index))
            return None
        return ExcCodes.ILLEGAL_FUNCTION

    async def _job(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await self._set_coils({BUSY: True, READY: False})
            low, high = await self._get_regs(HR_PART_IN, 2)
            number = (high << 16) | low
            part_id = str(number) if number else None
            assert self._control is not None
            try:
                record = await loop.run_in_executor(
                    None, self._control.run_job, part_id, self.deadline_s
                )
                self._last.append(f"job for part {part_id or '-'}: {record.get('verdict')}")
            except JobBusy:
                self.busy_rejected += 1
                await self._set_regs(HR_BUSY, [self.busy_rejected])
                self._last.append("trigger while another controller's job ran: answered busy")
            except Exception as exc:  # noqa: BLE001 - the PLC sees alarm + trigger reset
                log.exception("modbus job failed")
                self._last.append(f"job failed: {exc}")
                await self._set_coils({ALARM: True})
            # The result record was queued before run_job returned: let it land first.
            if self._queue is not None:
                await self._queue.join()
        finally:
            self._busy = False
            state = self._state[0]
            await self._set_coils({BUSY: False, READY: state != "fault", TRIGGER: False})

    async def _select_recipe(self, index: int) -> None:
        assert self._control is not None
        names = self._control.recipes()
        try:
            if not 0 <= index < len(names):
                raise ValueError(f"recipe index {index} out of range 0..{len(names) - 1}")
            if self.on_command is not None:
                self.on_command(None, "SelectRecipe", {"index": index, "name": names[index]})
            await asyncio.get_running_loop().run_in_executor(
                None, self._control.select_recipe, names[index]
            )
            self._last.append(f"recipe {names[index]!r} selected")
        except Exception as exc:  # noqa: BLE001 - refused: alarm, and the register shows the truth
            self._last.append(f"recipe selection refused: {exc}")
            await self._set_coils({ALARM: True})
        await self._write_recipe_index()
