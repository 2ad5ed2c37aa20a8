"""Triggered jobs: a controller asks for one verdict on one part, and gets it with its part id.

Shared by OPC UA (``RunJob``) and Modbus (the trigger coil); one job at a time for the whole
station, whichever controller asked:

- **Line stopped** (the usual triggered setup): the job acquires and judges one frame now
  (``session.step``): a GenICam camera in software-trigger mode fires ``TriggerSoftware`` for it,
  a free-running camera (Viky has no trigger) or a folder simply gives its next frame.
- **Line running**: the next result out of the pipeline carries the part id
  (``session.tag_next_result``) and is the job's answer (published once, with the part id).
  Without a part id, the answer is the next result whose frame was acquired after the trigger.
- A trigger while a job runs raises :class:`JobBusy` (counted in ``busy_rejected``); it is never
  queued silently.
- A result later than the deadline (``[outputs] job_deadline_ms`` or per output) is marked
  ``"late": true`` and raises an alarm. No result at all within ``timeout_s`` (or the source ran
  dry, or the line stopped first) gives an ERROR record: a job never ends without an answer.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.station.inspection import FrameResult
from app.station.outputs.base import JobBusy

log = logging.getLogger(__name__)

JOB_TIMEOUT_S = 30.0  # a job with no result by then is answered ERROR (camera gone, line halted)
_POLL_S = 0.05


class JobSession(Protocol):
    """What jobs need of :class:`~app.station.session.InspectionSession`."""

    @property
    def running(self) -> bool: ...

    def step(self) -> FrameResult | None: ...


@dataclass
class Job:
    id: int
    part_id: str | None
    wall: float  # time.time() at the trigger: frames acquired before it are not this part
    t0: float  # time.monotonic() at the trigger
    deadline_s: float | None
    tagged: bool = False  # the session tags the job's result with its part id (extra["part_id"])
    done: threading.Event = field(default_factory=threading.Event)
    fields: dict[str, Any] | None = None  # set when a result is claimed
    record: dict[str, Any] | None = None


class JobRunner:
    """One triggered job at a time over a session.

    Parameters
    ----------
    session
        The inspection session (``running``, ``step``).
    publish
        Publishes a record the session did not produce (a job that got no frame ends as an ERROR
        record, which the controllers must see too).
    on_alarm
        Called with the message when a result is late or missing.
    deadline_s
        Default deadline per job (None = none).
    timeout_s
        A job with no result after this long ends as ERROR.
    """

    def __init__(
        self,
        session: JobSession,
        *,
        publish: Callable[[dict[str, Any]], None],
        on_alarm: Callable[[str], None],
        deadline_s: float | None = None,
        timeout_s: float = JOB_TIMEOUT_S,
    ) -> None:
        self._session = session
        self._publish = publish
        self._on_alarm = on_alarm
        self.deadline_s = deadline_s
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._job: Job | None = None
        self._ids = itertools.count(1)
        self.jobs = 0
        self.busy_rejected = 0
        self.late = 0
        self._step_takes_part = _step_takes_part_id(session)

    @property
    def busy(self) -> bool:
        return self._job is not None

    def counters(self) -> dict[str, int]:
        return {"jobs": self.jobs, "busy_rejected": self.busy_rejected, "late": self.late}

    def run(self, part_id: str | None, deadline_s: float | None = None) -> dict[str, Any]:
        """Run one job and return its result record (with ``part_id``, ``job_id``, ``late``).

        Blocks the caller (a controller's worker thread) until the result is out.

        Raises
        ------
        JobBusy
            Another job is running; the trigger is counted in ``busy_rejected``.
        """
        part_id = part_id or None
        with self._lock:
            if self._job is not None:
                self.busy_rejected += 1
                raise JobBusy(
                    f"busy: job {self._job.id} is running ({self.busy_rejected} busy triggers)"
                )
            deadline = deadline_s if deadline_s is not None else self.deadline_s
            job = Job(next(self._ids), part_id, time.time(), time.monotonic(), deadline)
            self._job = job
            self.jobs += 1
        try:
            if self._session.running:
                self._wait_running(job)
            else:
                self._step(job)
            if not job.done.wait(max(0.0, self.timeout_s - (time.monotonic() - job.t0))):
                self._fail(job, f"no result within {self.timeout_s:g} s")
            # A claimed result completes microseconds later, on the thread that claimed it.
            if not job.done.wait(1.0):
                self._fail(job, "result claimed but never published", force=True)
        finally:
            with self._lock:
                if self._job is job:
                    self._job = None
        assert job.record is not None
        return job.record

    def _step(self, job: Job) -> None:
        try:
            if self._step_takes_part:
                job.tagged = job.part_id is not None
                result = self._session.step(part_id=job.part_id)  # type: ignore[call-arg]  # only when step() takes it (checked)
            else:
                result = self._session.step()
        except Exception as exc:  # noqa: BLE001 - the controller gets an ERROR answer, not silence
            log.exception("job %d: step failed", job.id)
            self._fail(job, f"acquisition failed: {exc}")
            return
        if job.done.is_set():
            return
        if result is None:
            reason = "the line is running" if self._session.running else "no frame (source ended)"
            self._fail(job, reason)
        # else: the result event is on its way through the hub (claim / complete).

    def _wait_running(self, job: Job) -> None:
        tag = getattr(self._session, "tag_next_result", None)
        if tag is not None and job.part_id is not None:
            job.tagged = True
            tag(job.part_id)
        end = job.t0 + self.timeout_s
        while not job.done.wait(_POLL_S):
            if time.monotonic() >= end:
                return
            if not self._session.running and not job.done.wait(0.5):
                if job.fields is None:
                    self._fail(job, "the line stopped before a frame was taken")
                return

    # -- called by the hub for every result ------------------------------------------------

    def claim(self, result: FrameResult) -> dict[str, Any] | None:
        """The job fields for ``result`` when it answers the pending job, else None."""
        with self._lock:
            job = self._job
            if job is None or job.fields is not None:
                return None
            if job.tagged:
                if result.extra.get("part_id") != job.part_id:
                    return None
            elif result.frame.timestamp < job.wall:
                return None
            elapsed = time.monotonic() - job.t0
            late = job.deadline_s is not None and elapsed > job.deadline_s
            job.fields = _job_fields(job, elapsed, late)
            return dict(job.fields)

    def complete(self, record: dict[str, Any]) -> None:
        """The published record of the claimed result: the job's answer."""
        job = self._job
        if job is None or job.fields is None or record.get("job_id") != job.id:
            return
        job.record = record
        if record.get("late"):
            self._late(job, float(record.get("latency_ms", 0.0)))
        job.done.set()

    def _fail(self, job: Job, reason: str, *, force: bool = False) -> None:
        with self._lock:
            if job.done.is_set() or (job.fields is not None and not force):
                return
            elapsed = time.monotonic() - job.t0
            late = job.deadline_s is not None and elapsed > job.deadline_s
            job.fields = _job_fields(job, elapsed, late)
        record: dict[str, Any] = {
            "frame": None,
            "source": None,
            "verdict": "ERROR",
            "error": f"job {job.id}: {reason}",
            "defects": [],
            "timings_ms": {},
            "reasons": [f"job {job.id}: {reason}"],
            "model": None,
            **job.fields,
        }
        self._on_alarm(f"job {job.id} (part {job.part_id or '-'}): {reason}")
        self._publish(record)  # the hub calls complete() with it (result id added)
        if not job.done.is_set():
            job.record = record
            if late:
                self._late(job, float(record["latency_ms"]))
            job.done.set()

    def _late(self, job: Job, latency_ms: float) -> None:
        self.late += 1
        assert job.deadline_s is not None
        self._on_alarm(
            f"job {job.id} (part {job.part_id or '-'}) late: result after {latency_ms:.0f} ms "
            f"> deadline {job.deadline_s * 1000:.0f} ms"
        )


def _job_fields(job: Job, elapsed_s: float, late: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "part_id": job.part_id,
        "job_id": job.id,
        "late": bool(late),
        "latency_ms": round(elapsed_s * 1000.0, 3),
    }
    if job.deadline_s is not None:
        fields["deadline_ms"] = round(job.deadline_s * 1000.0, 3)
    return fields


def _step_takes_part_id(session: JobSession) -> bool:
    import inspect

    try:
        return "part_id" in inspect.signature(session.step).parameters
    except (TypeError, ValueError):
        return False
