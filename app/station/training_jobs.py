"""Command lines for the training child process and readers for what it writes.

Training, evaluation, export and engine building run as separate processes (``python -m training``
/ ``python -m engines``): TensorFlow sets process-wide state and can crash, and neither should
happen inside the station. This module only builds the argument lists (run them with QProcess or
subprocess) and parses the JSON progress lines and reports the children write. It imports neither
TensorFlow nor Qt.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any, Literal

PathLike = str | os.PathLike[str]
Split = Literal["test", "all"]


class ReportError(ValueError):
    """An evaluation report is missing or unreadable (the message names the file)."""


PYTHON_ENV = "INSPECTION_STATION_PYTHON"


def _python(python: PathLike | None) -> str:
    """The interpreter for the child: ``python``, else ``$INSPECTION_STATION_PYTHON``, else ours.

    Our own interpreter is the one whose environment has training/ and engines/ installed. A
    PyInstaller bundle has no interpreter of its own (``sys.executable`` is the station, and
    TensorFlow is left out of it), so there the variable or ``python3`` on PATH is used.
    """
    if python is not None:
        return str(python)
    configured = os.environ.get(PYTHON_ENV, "").strip()
    if configured:
        return configured
    if getattr(sys, "frozen", False):
        return shutil.which("python3") or shutil.which("python") or "python3"
    return sys.executable


def train_command(
    data: PathLike,
    out: PathLike,
    *,
    masks: PathLike | None = None,
    epochs: int | None = None,
    image_size: int | None = None,
    base_filters: int | None = None,
    amp: bool = False,
    xla: bool | None = None,
    max_minutes: float | None = None,
    python: PathLike | None = None,
) -> list[str]:
    """``python -m training train --data PATH [--masks DIR] --out RUN_DIR ... --progress json``.

    Parameters
    ----------
    data, out
        Dataset folder (images+masks or DAGM layout) and the run folder to create.
    masks
        Mask folder when the masks are not beside the images.
    epochs, image_size, base_filters
        Left to the trainer when None (it derives epochs and tile from the data and the budget).
    max_minutes
        Time budget (0 = none); None leaves the trainer's default (40 min without ``epochs``).
    amp
        Mixed precision (useful on a GPU).
    xla
        XLA compilation: True ``--xla``, False ``--no-xla``, None the trainer's default (on).
    python
        Interpreter to run (default: ``sys.executable``).

    Returns
    -------
    list of str
        The argument vector; JSON progress lines come out on stdout.
    """
    cmd = [_python(python), "-m", "training", "train", "--data", str(data)]
    if masks is not None:
        cmd += ["--masks", str(masks)]
    cmd += ["--out", str(out)]
    for flag, value in (
        ("--epochs", epochs),
        ("--image-size", image_size),
        ("--base-filters", base_filters),
    ):
        if value is not None:
            cmd += [flag, str(int(value))]
    if max_minutes is not None:
        cmd += ["--max-minutes", f"{float(max_minutes):g}"]
    if amp:
        cmd.append("--amp")
    if xla is not None:
        cmd.append("--xla" if xla else "--no-xla")
    return [*cmd, "--progress", "json"]


def evaluate_command(
    model: PathLike,
    data: PathLike,
    out: PathLike,
    *,
    masks: PathLike | None = None,
    split: Split = "test",
    split_file: PathLike | None = None,
    python: PathLike | None = None,
) -> list[str]:
    """``python -m training evaluate --model M --data PATH [--masks DIR] --split S --out DIR``.

    ``model`` is an ``.onnx`` file or a run folder; ``split="test"`` uses the split recorded with
    the model, or ``split_file`` when given (to compare two models on the same images), ``"all"``
    every image in ``data``. The report lands in ``out/report.json``.
    """
    if split not in ("test", "all"):
        raise ValueError(f"split must be 'test' or 'all', not {split!r}")
    cmd = [_python(python), "-m", "training", "evaluate", "--model", str(model)]
    cmd += ["--data", str(data)]
    if masks is not None:
        cmd += ["--masks", str(masks)]
    if split_file is not None:
        cmd += ["--split-file", str(split_file)]
    return [*cmd, "--split", split, "--out", str(out)]


def export_command(
    run_dir: PathLike, out: PathLike, *, python: PathLike | None = None
) -> list[str]:
    """``python -m training export --run RUN_DIR --out MODEL.onnx`` (writes MODEL.json beside)."""
    return [_python(python), "-m", "training", "export", "--run", str(run_dir), "--out", str(out)]


def build_command(onnx: PathLike, out: PathLike, *, python: PathLike | None = None) -> list[str]:
    """``python -m engines build --onnx MODEL.onnx --out MODEL.engine`` (TensorRT; GPU only)."""
    return [_python(python), "-m", "engines", "build", "--onnx", str(onnx), "--out", str(out)]


def parse_progress(line: str | bytes) -> dict[str, Any] | None:
    """One progress event from a line of the child's stdout, or None.

    Anything that is not one whole JSON object with an ``"event"`` key (a TensorFlow warning, a
    progress bar, half a line read before the rest arrived, undecodable bytes) gives None, so the
    caller can feed every line it reads.
    """
    if isinstance(line, bytes):
        line = line.decode("utf-8", errors="replace")
    text = line.strip()
    if not (text.startswith("{") and text.endswith("}")):
        return None
    try:
        event = json.loads(text)
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        return None
    return event


class ProgressReader:
    """Turns arbitrary chunks of a child's stdout into progress events.

    Pipes deliver whatever is ready, often half a line; the rest of the line is kept until its
    newline arrives. Non-JSON lines are kept in ``other`` (the last 200) for the error view.
    """

    def __init__(self) -> None:
        self._pending = ""
        self.other: list[str] = []

    def feed(self, chunk: str | bytes) -> list[dict[str, Any]]:
        """Add a chunk; return the events of the lines it completed."""
        if isinstance(chunk, bytes):
            chunk = chunk.decode("utf-8", errors="replace")
        *lines, self._pending = (self._pending + chunk).split("\n")
        return self._parse(lines)

    def flush(self) -> list[dict[str, Any]]:
        """At process exit: parse the last line even without its newline."""
        lines, self._pending = [self._pending], ""
        return self._parse(lines)

    def _parse(self, lines: list[str]) -> list[dict[str, Any]]:
        events = []
        for line in lines:
            event = parse_progress(line)
            if event is not None:
                events.append(event)
            elif line.strip():
                self.other.append(line.rstrip())
        del self.other[:-200]
        return events


def read_report(path: PathLike) -> dict[str, Any]:
    """The ``report.json`` written by ``python -m training evaluate``.

    Parameters
    ----------
    path
        The evaluation output folder, or the report file itself.

    Raises
    ------
    ReportError
        Missing, unreadable or not a JSON object; the message names the file.
    """
    path = Path(path)
    report = path / "report.json" if path.is_dir() else path
    try:
        data = json.loads(report.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{report}: evaluation report not found") from None
    except (OSError, ValueError) as exc:
        raise ReportError(f"{report}: evaluation report unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise ReportError(f"{report}: evaluation report is not a JSON object")
    return data


def new_run_dir(data_dir: PathLike, *, now: _dt.datetime | None = None) -> Path:
    """Create and return a fresh ``DATA_DIR/runs/run-YYYYmmdd-HHMMSS`` folder.

    The folder is created here (not just named) so two runs started in the same second get
    different folders (``..._2``, ``..._3``) instead of writing into each other.
    """
    stamp = (now or _dt.datetime.now()).strftime("run-%Y%m%d-%H%M%S")
    runs = Path(data_dir) / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    candidate, n = runs / stamp, 1
    while True:
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            n += 1
            candidate = runs / f"{stamp}_{n}"


def gpu_available() -> bool:
    """True when TensorRT imports and CUDA reports at least one device; never raises.

    Decides whether "Deploy" also builds a TensorRT engine. PyPI's ``tensorrt`` can be a stub
    that fails on import and CUDA can be present without a device, so both are actually tried.
    """
    try:
        import tensorrt  # noqa: F401

        try:
            from cuda.bindings import runtime as cudart
        except ImportError:  # cuda-python < 12.6 spelled it cuda.cudart
            from cuda import cudart
        err, count = cudart.cudaGetDeviceCount()
        return int(err) == 0 and int(count) > 0
    except Exception:  # noqa: BLE001 - any failure means "no usable GPU", by contract
        return False
