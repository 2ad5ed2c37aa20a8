"""The Validation workspace's model: one labelled folder, the running model over it once, and the
threshold table / PR curve / operating point that follow the rules wanted now.

It owns engine loading (the GUI imports no ``engines``): ``compute`` loads a private copy of the
running model, so validation never shares an engine with the live line, and closes it after.
``compute`` blocks: the GUI runs it on a worker; ``cancel`` stops it between chunks and ``wait``
lets a closing window be sure no job outlives it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from app.station.inspection import Rules
from app.station.validation import ValidationCancelled, ValidationSet, find_pairs
from engines import load_engine
from engines.protocol import Engine
from engines.scoring import DEFAULT_THRESHOLDS, ThresholdRow

__all__ = ["OperatingPoint", "ThresholdRow", "ValidationCancelled", "ValidationJob"]

Progress = Callable[[int, int], None]


class ValidationBusy(RuntimeError):
    """A computation is already running; one at a time."""


@dataclass(frozen=True)
class OperatingPoint:
    """What the rules wanted now do on the validation set."""

    threshold: float
    min_area_px: int
    row: ThresholdRow
    n_images: int

    def summary(self) -> str:
        p = self.row
        return (
            f"{self.n_images} images · operating point: threshold {self.threshold:.2f}, min area "
            f"{self.min_area_px} px → precision {p.precision:.3f}, recall {p.recall:.3f}, "
            f"FP rate {p.fpr:.3f} (TP {p.tp} TN {p.tn} FP {p.fp} FN {p.fn})"
        )


class ValidationJob:
    """Compute a ``ValidationSet`` for the running model; answer rule changes from kept maps.

    ``model_path`` is asked at each ``compute`` (the running model may have been swapped).
    ``loader`` builds the engine (``engines.load_engine``; tests may pass another).
    """

    def __init__(
        self,
        model_path: Callable[[], Path],
        *,
        loader: Callable[[Path], Engine] = load_engine,
        thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    ) -> None:
        self._model_path = model_path
        self._loader = loader
        self.thresholds = tuple(thresholds)
        self._cancel = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._lock = threading.Lock()
        self.result: ValidationSet | None = None
        self.folder: Path | None = None

    # --- computing --------------------------------------------------------------------------------
    @staticmethod
    def check_folder(folder: str | Path) -> Path:
        """``folder`` as a Path when it holds at least one image; else a clear ValueError."""
        text = str(folder).strip()
        if not text:
            raise ValueError("choose a validation folder first")
        path = Path(text)
        if not path.is_dir():
            raise ValueError(f"validation folder {path} does not exist")
        if not find_pairs(path):
            raise ValueError(f"{path}: no image found (images/ + masks/, DAGM or plain layout)")
        return path

    def begin(self) -> None:
        """Claim the job for one computation (on the caller's thread, before handing ``run`` to
        a worker), so a ``cancel`` made before the worker starts is not lost.

        Raises
        ------
        ValidationBusy
            Another computation is running.
        """
        with self._lock:
            if not self._idle.is_set():
                raise ValidationBusy("a validation is already running")
            self._idle.clear()
            self._cancel.clear()

    def run(self, folder: str | Path, progress: Progress | None = None) -> ValidationSet:
        """The computation claimed by ``begin``: load the running model, run it once over
        ``folder`` and keep the result (blocking; the engine is closed after).

        Raises
        ------
        ValueError
            The folder is missing or has no readable image.
        ModelLoadError
            The running model could not be loaded a second time.
        ValidationCancelled
            ``cancel()`` was called; the previous result is kept.
        """
        if self._idle.is_set():
            raise RuntimeError("call begin() before run()")
        try:
            path = self.check_folder(folder)
            if self._cancel.is_set():  # cancelled before the model was even loaded
                raise ValidationCancelled(f"validation of {path} cancelled")
            engine = self._loader(self._model_path())
            try:
                vs = ValidationSet.compute(
                    engine, path, progress=progress, cancel=self._cancel.is_set
                )
            finally:
                engine.close()
            self.result, self.folder = vs, path
            return vs
        finally:
            self._idle.set()

    def compute(self, folder: str | Path, progress: Progress | None = None) -> ValidationSet:
        """``begin`` + ``run`` on this thread."""
        self.begin()
        return self.run(folder, progress)

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def running(self) -> bool:
        return not self._idle.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no computation runs; False on timeout."""
        return self._idle.wait(timeout)

    # --- following the rules ------------------------------------------------------------------
    def table(self, rules: Rules) -> list[ThresholdRow]:
        """The threshold table (0.1 … 0.9) at the rules' minimum area; [] before ``compute``."""
        vs = self.result
        return [] if vs is None else vs.table(rules.min_area_px, self.thresholds)

    def pr_curve(self, rules: Rules) -> tuple[list[float], list[float]]:
        """``(recall, precision)`` swept over the minimum area at the rules' threshold."""
        vs = self.result
        if vs is None:
            return [], []
        precision, recall = vs.pr_curve(rules.threshold)
        return [float(r) for r in recall], [float(p) for p in precision]

    def operating_point(self, rules: Rules) -> OperatingPoint | None:
        vs = self.result
        if vs is None:
            return None
        row = vs.point(rules.threshold, rules.min_area_px)
        return OperatingPoint(rules.threshold, rules.min_area_px, row, len(vs))
