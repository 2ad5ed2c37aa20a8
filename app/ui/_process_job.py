"""One child process driven by a QProcess: stdout as lines, a bounded stderr tail, cancel.

Used by the training workflow (through ``QtJobRunner``) for ``python -m training ...`` /
``python -m engines build``. QProcess is asynchronous, so the GUI thread never waits on the child;
cancel follows labelme's pattern of asking first (``terminate``: the child can close its files)
and forcing after a grace period.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QProcess, QTimer, Signal
from superqt.utils import create_worker

CANCEL_GRACE_MS = 5000
STDERR_KEEP = 64 * 1024  # the tail worth showing; TensorFlow can print megabytes


class ProcessJob(QObject):
    """Run ``command`` (``command[0]`` is the program, normally ``sys.executable``).

    Signals: ``line(str)`` per stdout line; ``done(exit_code, stderr_tail)`` exactly once, with
    exit code -1 when the child crashed, was killed or could not start.
    """

    line = Signal(str)
    done = Signal(int, str)

    def __init__(
        self, command: list[str], parent: QObject | None = None, *, grace_ms: int = CANCEL_GRACE_MS
    ) -> None:
        super().__init__(parent)
        self.command = list(command)
        self._out = b""
        self._err = b""
        self._reported = False
        self.proc = QProcess(self)
        self.proc.readyReadStandardOutput.connect(self._read_out)
        self.proc.readyReadStandardError.connect(self._read_err)
        self.proc.finished.connect(self._finished)
        self.proc.errorOccurred.connect(self._error)
        self._killer = QTimer(self, singleShot=True, interval=grace_ms)
        self._killer.timeout.connect(self.proc.kill)

    @property
    def running(self) -> bool:
        return self.proc.state() != QProcess.ProcessState.NotRunning

    def start(self) -> None:
        self.proc.start(self.command[0], self.command[1:])

    def cancel(self) -> None:
        """Ask the child to stop; kill it if it has not stopped after the grace period."""
        if self.running:
            self.proc.terminate()
            self._killer.start()

    def _read_out(self) -> None:
        self._out += bytes(self.proc.readAllStandardOutput().data())
        # A pipe delivers whatever is ready, often half a line: keep the rest for next time.
        *lines, self._out = self._out.split(b"\n")
        for raw in lines:
            self.line.emit(raw.decode("utf-8", "replace"))

    def _read_err(self) -> None:
        self._err = (self._err + bytes(self.proc.readAllStandardError().data()))[-STDERR_KEEP:]

    def _finished(self, code: int, status: QProcess.ExitStatus) -> None:
        self._killer.stop()
        self._read_out()
        self._read_err()
        if self._out.strip():
            self.line.emit(self._out.decode("utf-8", "replace"))
        self._out = b""
        self._report(-1 if status != QProcess.ExitStatus.NormalExit else code)

    def _error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:  # no finished() follows in this case
            self._err += f"could not start {self.command[0]}: {self.proc.errorString()}".encode()
            self._report(-1)

    def _report(self, code: int) -> None:
        if not self._reported:
            self._reported = True
            self.done.emit(code, self._err.decode("utf-8", "replace"))


class QtJobRunner(QObject):
    """The training workflow's ``JobRunner`` in Qt: QProcess children, superqt worker calls.

    Every callback runs on the GUI thread (QProcess signals and superqt's ``returned`` /
    ``errored`` are delivered there), so the workflow is only ever touched from one thread.
    """

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.job: ProcessJob | None = None

    def run_process(
        self,
        command: list[str],
        on_line: Callable[[str], None],
        on_done: Callable[[int, str], None],
    ) -> None:
        job = ProcessJob(command, self)
        job.line.connect(on_line)

        def finished(code: int, err: str) -> None:
            if self.job is job:
                self.job = None
            job.deleteLater()
            on_done(code, err)

        job.done.connect(finished)
        self.job = job
        job.start()

    def cancel_process(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def run_call(
        self, fn: Callable[[], Any], on_done: Callable[[Any, BaseException | None], None]
    ) -> None:
        worker = create_worker(fn, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(lambda value: on_done(value, None))
        worker.errored.connect(lambda exc: on_done(None, exc))
        worker.start()

    def kill(self, timeout_ms: int = 5000) -> None:
        """Window closing: stop a running child now (it is not left behind)."""
        if self.job is not None and self.job.running:
            self.job.proc.kill()
            self.job.proc.waitForFinished(timeout_ms)
