"""Retrain, compare, deploy, roll back — training runs in a child process, never in the GUI.

Every step is a ``python -m ...`` command built by ``app.station.training_jobs`` and run by a
``QProcess`` (async: the GUI thread never waits on it). Training streams JSON progress lines on
stdout; stderr is kept (bounded) and shown when a step fails, and the station keeps running
whatever the child does. Order after Start: train -> evaluate the new model -> evaluate the
current model on the same data and split -> side-by-side table and PR curves -> (Deploy) export
ONNX -> TensorRT engine when a GPU is present -> ``session.load_model`` (hot swap).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt.utils import create_worker

from app.station import training_jobs
from app.station.session import InspectionSession
from app.ui._eval_compare import ComparisonView
from app.ui._process_job import ProcessJob
from app.ui._workers import RunningWorkers
from app.ui.bridge import SessionBridge
from app.ui.label_panel import summarise

_COLOURS = {"loss": "#1f77b4", "val_loss": "#ff7f0e", "dice": "#2ca02c", "val_dice": "#d62728"}


class TrainPanel(QWidget):
    """Dataset + options, Start/Cancel, live curves, evaluation side by side, Deploy/Rollback."""

    state_changed = Signal(str)  # idle, training, evaluating, compared, deploying, deployed, failed

    def __init__(
        self, session: InspectionSession, bridge: SessionBridge, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.bridge = bridge
        self.state = "idle"
        self.job: ProcessJob | None = None
        self.run_dir: Path | None = None
        self.new_model: str | None = None  # what training produced (model file or run dir)
        self.reports: dict[str, dict[str, Any]] = {}
        self.deployed_path: Path | None = None
        self._curves: dict[str, list[tuple[float, float]]] = {}
        self._workers = RunningWorkers()
        self._done_event: dict[str, Any] | None = None
        self._cancelled = False
        self._child_errors: list[str] = []
        self._loading = False  # a model load / rollback is running on a worker thread
        self._build()
        bridge.model.connect(self._on_model)  # bound: no call into a deleted panel
        self._sync()

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:
        data = QGroupBox("Dataset")
        dataset = self.session.recipe.dataset_path(self.session.settings.data_dir)
        self.data_edit = QLineEdit(str(dataset))
        browse = QPushButton("…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.data_edit, 1)
        row.addWidget(browse)
        self.summary = QLabel("")
        dl = QVBoxLayout(data)
        dl.addLayout(row)
        dl.addWidget(self.summary)
        # Typing a path must not scan a folder per key stroke: refresh once the text rests.
        self._summary_timer = QTimer(self, singleShot=True, interval=400)
        self._summary_timer.timeout.connect(self.refresh_summary)
        self.data_edit.textChanged.connect(self._summary_timer.start)

        opts = QGroupBox("Training options")
        self.epochs = QSpinBox(minimum=1, maximum=1000, value=30)
        self.image_size = QComboBox()
        self.image_size.addItems(["64", "128", "256", "512"])
        self.image_size.setCurrentText("256")
        self.base_filters = QComboBox()
        self.base_filters.addItems(["8", "16", "32"])
        self.base_filters.setCurrentText("16")
        self.amp = QCheckBox("Mixed precision (GPU)")
        form = QFormLayout(opts)
        form.addRow("Epochs", self.epochs)
        form.addRow("Image size", self.image_size)
        form.addRow("Base filters", self.base_filters)
        form.addRow("", self.amp)

        self.start_btn = QPushButton("Start training")
        self.start_btn.clicked.connect(self.start)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.clicked.connect(self.cancel)
        self.progress = QProgressBar(maximum=1000)
        self.eta = QLabel("")
        self.status = QLabel("")
        self.status.setWordWrap(True)
        run_row = QHBoxLayout()
        for w in (self.start_btn, self.cancel_btn, self.progress, self.eta):
            run_row.addWidget(w)

        self.loss_plot = pg.PlotWidget(title="Loss")
        self.dice_plot = pg.PlotWidget(title="Dice")
        self.lines: dict[str, pg.PlotDataItem] = {}
        for plot, keys in (
            (self.loss_plot, ("loss", "val_loss")),
            (self.dice_plot, ("dice", "val_dice")),
        ):
            plot.addLegend()
            plot.setLabel("bottom", "epoch")
            for k in keys:
                self.lines[k] = plot.plot([], [], name=k, pen=pg.mkPen(_COLOURS[k], width=2))
        curves = QHBoxLayout()
        curves.addWidget(self.loss_plot)
        curves.addWidget(self.dice_plot)

        self.errors = QPlainTextEdit(readOnly=True)
        self.errors.setPlaceholderText("Error output of a failed step appears here.")
        self.errors.setMaximumBlockCount(2000)

        self.comparison = ComparisonView(self)

        self.deploy_btn = QPushButton("Deploy new model")
        self.deploy_btn.clicked.connect(self.deploy)
        self.rollback_btn = QPushButton("Rollback")
        self.rollback_btn.clicked.connect(self.rollback)
        self.model_label = QLabel("")
        deploy_row = QHBoxLayout()
        deploy_row.addWidget(self.deploy_btn)
        deploy_row.addWidget(self.rollback_btn)
        deploy_row.addWidget(self.model_label, 1)

        top = QHBoxLayout()
        top.addWidget(data, 2)
        top.addWidget(opts, 1)
        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addLayout(run_row)
        lay.addWidget(self.status)
        lay.addLayout(curves, 2)
        lay.addWidget(self.comparison, 2)
        lay.addLayout(deploy_row)
        lay.addWidget(self.errors, 1)
        self.refresh_summary()

    def _on_model(self, _card: object) -> None:
        self._sync()

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Training data", self.data_edit.text())
        if folder:
            self.data_edit.setText(folder)

    def refresh_summary(self) -> None:
        worker = create_worker(summarise, Path(self.data_edit.text()), _ignore_errors=True)
        # Workers report to bound methods only: Qt drops those connections if the panel dies.
        worker.returned.connect(self.summary.setText)
        worker.errored.connect(self._summary_failed)
        self._workers.start(worker)

    def _summary_failed(self, exc: BaseException) -> None:
        self.summary.setText(f"Dataset unreadable: {exc}")

    def _set_state(self, state: str, message: str = "") -> None:
        self.state = state
        if message:
            self.status.setText(message)
        self._sync()
        self.state_changed.emit(state)

    def _sync(self) -> None:
        busy = self.job is not None or self._loading
        self.start_btn.setEnabled(not busy)
        self.cancel_btn.setEnabled(self.job is not None and self.state == "training")
        self.deploy_btn.setEnabled(
            self.new_model is not None and self.state != "deployed" and not busy
        )
        self.rollback_btn.setEnabled(self.session.previous_model_path is not None and not busy)
        card = self.session.model_card
        self.model_label.setText(f"Running model: {card.name} ({self.session.model_path})")

    # -------------------------------------------------------------- running
    def _run(
        self,
        command: list[str],
        on_line: Callable[[str], None] | None,
        on_done: Callable[[int, str], None],
    ) -> None:
        job = ProcessJob(command, self)
        job.line.connect(on_line or self._on_step_line)

        def finished(code: int, err: str) -> None:
            self.job = None
            job.deleteLater()
            on_done(code, err)

        job.done.connect(finished)
        self.job = job
        self._sync()
        job.start()

    def _fail(self, step: str, code: int, err: str, message: str = "") -> None:
        text = message or f"{step} failed (exit code {code})."
        # The child's own {"event": "error"} lines say what went wrong; stderr says where.
        parts = [text, *self._child_errors, err.strip()]
        self._child_errors.clear()
        self.errors.setPlainText("\n\n".join(p for p in parts if p))
        self._set_state("failed", f"{text} The station keeps running; see the output below.")

    # ------------------------------------------------------------- training
    def start(self) -> None:
        if self.job is not None:
            return
        self.new_model = None
        self.reports.clear()
        self._curves.clear()
        for line in self.lines.values():
            line.setData([], [])
        self.comparison.clear()
        self.errors.clear()
        self.progress.setValue(0)
        self.eta.setText("")
        self._done_event = None
        self._cancelled = False
        self._child_errors.clear()
        try:
            self.run_dir = training_jobs.new_run_dir(self.session.settings.data_dir)
        except OSError as exc:
            self._fail("Training", -1, "", f"Cannot create the run folder: {exc}")
            return
        command = training_jobs.train_command(
            Path(self.data_edit.text()),
            self.run_dir,
            epochs=self.epochs.value(),
            image_size=int(self.image_size.currentText()),
            base_filters=int(self.base_filters.currentText()),
            amp=self.amp.isChecked(),
        )
        self._set_state("training", f"Training into {self.run_dir} …")
        self._run(command, self._on_train_line, self._on_train_done)

    def cancel(self) -> None:
        if self.job is not None:
            self.status.setText("Cancelling …")
            self._cancelled = True
            self.job.cancel()

    def _on_train_line(self, line: str) -> None:
        event = training_jobs.parse_progress(line)
        if event is None:
            return
        kind = event.get("event")
        epochs = max(1, int(event.get("epochs") or self.epochs.value()))
        if kind in ("step", "epoch"):
            steps = max(1, int(event.get("steps") or 1))
            # "epoch" and "step" are 1-based: step s of epoch e is (e - 1) + s / steps epochs in.
            x = max(0, int(event.get("epoch") or 1) - 1) + int(event.get("step") or steps) / steps
            self.progress.setValue(int(1000 * min(1.0, x / epochs)))
            keys = ("loss", "dice") if kind == "step" else ("loss", "val_loss", "dice", "val_dice")
            for key in keys:
                if isinstance(event.get(key), int | float):  # NaN arrives as null: skipped
                    self._add_point(key, x, float(event[key]))
        elif kind == "done":
            self._done_event = event
        elif kind == "error":
            self._child_errors.append(str(event.get("message", event)))
        elif kind == "export":
            self.status.setText(
                f"Training done; exporting and checking the ONNX ({event.get('stage')}) …"
            )
        if isinstance(event.get("eta_s"), int | float):
            self.eta.setText(f"ETA {_duration(float(event['eta_s']))}")

    def _on_step_line(self, line: str) -> None:
        """Evaluate / export / build: only their error events matter (shown if the step fails)."""
        event = training_jobs.parse_progress(line)
        if event is not None and event.get("event") == "error":
            self._child_errors.append(str(event.get("message", event)))

    def _add_point(self, key: str, x: float, y: float) -> None:
        pts = self._curves.setdefault(key, [])
        pts.append((x, y))
        self.lines[key].setData([p[0] for p in pts], [p[1] for p in pts])

    def curve_points(self, key: str) -> list[tuple[float, float]]:
        """The points drawn so far on the ``loss``/``val_loss``/``dice``/``val_dice`` curve."""
        return list(self._curves.get(key, []))

    def _on_train_done(self, code: int, err: str) -> None:
        if self._cancelled:
            self._cancelled = False
            self._set_state("idle", "Training cancelled; the running model is unchanged.")
            return
        done = self._done_event
        if code != 0 or done is None or not done.get("model"):
            why = "" if code else "Training ended without a model."
            self._fail("Training", code, err, why)
            return
        self.progress.setValue(1000)
        self.eta.setText("")
        self.new_model = str(done["model"])
        self._set_state("evaluating", "Training done. Evaluating the new model …")
        self._evaluate("new", Path(self.new_model), then=self._evaluate_current)

    # ----------------------------------------------------------- evaluation
    def _evaluate(self, which: str, model: Path, then: Callable[[], None]) -> None:
        assert self.run_dir is not None
        out = self.run_dir / f"eval-{which}"
        # Both models against the new run's held-out split, so every row compares like for like.
        command = training_jobs.evaluate_command(
            model,
            Path(self.data_edit.text()),
            out,
            split="test",
            split_file=self.run_dir / "split.json",
        )

        def done(code: int, err: str) -> None:
            if code != 0:
                self._fail(f"Evaluation of the {which} model", code, err)
                return
            try:
                self.reports[which] = training_jobs.read_report(out)
            except training_jobs.ReportError as exc:
                self._fail(f"Evaluation of the {which} model", code, err, str(exc))
                return
            then()

        self._run(command, None, done)

    def _evaluate_current(self) -> None:
        self.status.setText("Evaluating the running model on the new model's test split …")
        self._evaluate("current", self.session.model_path, then=self._compare)

    def _compare(self) -> None:
        self.comparison.show_reports(
            self.reports["current"], self.reports["new"], self.session.rules.threshold
        )
        self._set_state("compared", "Compare, then Deploy the new model or keep the running one.")

    # --------------------------------------------------------------- deploy
    def deploy(self) -> None:
        if self.new_model is None or self.job is not None or self.run_dir is None:
            return
        onnx = Path(self.session.settings.data_dir) / "models" / f"{self.run_dir.name}.onnx"
        self._set_state("deploying", f"Exporting the verified ONNX to {onnx} …")

        def exported(code: int, err: str) -> None:
            if code != 0:
                self._fail("ONNX export", code, err)
            elif training_jobs.gpu_available():
                engine = onnx.with_suffix(".engine")
                self.status.setText(f"Building the TensorRT engine {engine} …")
                self._run(
                    training_jobs.build_command(onnx, engine),
                    None,
                    lambda c, e: self._fail("TensorRT build", c, e) if c else self._load(engine),
                )
            else:
                self._load(onnx)

        self._run(training_jobs.export_command(self.run_dir, onnx), None, exported)

    def _load(self, path: Path) -> None:
        self.status.setText(f"Loading {path} into the running station …")
        # Building an ONNX Runtime session / deserialising an engine takes a moment: off the GUI
        # thread. A bad model raises ModelLoadError and the running engine stays in place.
        self._loading = True
        self.deployed_path = path
        worker = create_worker(self.session.load_model, path, _ignore_errors=True)
        worker.returned.connect(self._deployed)
        worker.errored.connect(self._load_failed)
        worker.finished.connect(self._loaded)
        self._workers.start(worker)
        self._sync()

    def _loaded(self) -> None:
        self._loading = False
        self._sync()

    def _load_failed(self, exc: BaseException) -> None:
        self.deployed_path = None
        self._fail("Loading the new model", -1, "", f"{exc} (the previous model keeps running)")

    def _deployed(self, card: Any) -> None:
        path = self.deployed_path
        self._set_state(
            "deployed", f"Deployed {card.name} ({path}). Rollback brings back the previous model."
        )

    def rollback(self) -> None:
        self._loading = True
        worker = create_worker(self.session.rollback_model, _ignore_errors=True)
        worker.returned.connect(self._rolled_back)
        worker.errored.connect(self._rollback_failed)
        worker.finished.connect(self._loaded)
        self._workers.start(worker)
        self._sync()

    def _rolled_back(self, card: Any) -> None:
        self._set_state("rolled back", f"Rolled back: running {card.name} again.")

    def _rollback_failed(self, exc: BaseException) -> None:
        self._fail("Rollback", -1, "", str(exc))


def _duration(seconds: float) -> str:
    s = int(max(0.0, seconds))
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )
