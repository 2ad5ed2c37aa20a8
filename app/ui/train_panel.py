"""Train & Deploy: a view of the ``TrainingWorkflow`` (app/station/training_workflow.py).

The workflow is the state machine (train → evaluate → compare → export → build → deploy /
rollback); this panel only turns its events into widgets and the user's clicks into its calls.
Children run through ``QtJobRunner`` (QProcess), blocking calls on superqt workers, so the GUI
thread never waits. Deploy is guarded: when the new model is worse than the running one, the
verdict is red and Deploy asks for a PIN-confirmed override with a name and a reason.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
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

from app.station.training_workflow import (
    DeployRecord,
    Override,
    Stage,
    StepFailed,
    TrainingWorkflow,
    TrainOptions,
    TrainProgress,
    WorkflowError,
    describe_dataset,
)
from app.ui._eval_compare import ComparisonView
from app.ui._process_job import ProcessJob, QtJobRunner
from app.ui.bridge import SessionBridge

AUTO_EPOCHS = "as many as fit"
AUTO_SIZE = "from the data"
_COLOURS = {"loss": "#1f77b4", "val_loss": "#ff7f0e", "dice": "#2ca02c", "val_dice": "#d62728"}


class OverrideDialog(QDialog):
    """Deploying a worse model: who decides, why, and the engineer PIN."""

    def __init__(self, findings: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Deploy a worse model?")
        warning = QLabel(f"The comparison says the new model is worse:\n{findings}", self)
        warning.setWordWrap(True)
        warning.setStyleSheet("color: #c62828; font-weight: bold;")
        self.who = QLineEdit(self)
        self.who.setToolTip("Your name: recorded with the deploy")
        self.reason = QLineEdit(self)
        self.reason.setToolTip("Why the worse model must go in anyway: recorded with the deploy")
        self.pin = QLineEdit(self)
        self.pin.setEchoMode(QLineEdit.EchoMode.Password)
        self.pin.setToolTip("The engineer PIN confirms the override")
        form = QFormLayout()
        form.addRow("Name", self.who)
        form.addRow("Reason", self.reason)
        form.addRow("Engineer PIN", self.pin)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Deploy anyway")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(warning)
        lay.addLayout(form)
        lay.addWidget(buttons)

    def override(self) -> Override:
        return Override(pin=self.pin.text(), who=self.who.text(), reason=self.reason.text())


class TrainPanel(QWidget):
    """Dataset + options, Start/Cancel, live curves, evaluation side by side, Deploy/Rollback."""

    error = Signal(str)
    state_changed = Signal(str)  # the workflow's Stage value

    def __init__(
        self,
        workflow: TrainingWorkflow,
        runner: QtJobRunner,
        bridge: SessionBridge,
        default_data: Path,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.workflow = workflow
        self.runner = runner
        self._curves: dict[str, list[tuple[float, float]]] = {}
        self._build(default_data)
        self._unsubscribe = workflow.subscribe(self._on_event)
        self.destroyed.connect(lambda *_: self._unsubscribe())
        bridge.model.connect(self._on_model)  # bound: no call into a deleted panel
        self._sync()

    # --- what tests and the window read ----------------------------------------------------
    @property
    def state(self) -> str:
        return self.workflow.stage.value

    @property
    def job(self) -> ProcessJob | None:
        return self.runner.job

    @property
    def reports(self) -> dict[str, dict[str, Any]]:
        return self.workflow.reports

    @property
    def new_model(self) -> str | None:
        return None if self.workflow.new_model is None else str(self.workflow.new_model)

    @property
    def run_dir(self) -> Path | None:
        return self.workflow.run_dir

    @property
    def deployed_path(self) -> Path | None:
        return self.workflow.deployed_path

    # ------------------------------------------------------------------ UI
    def _build(self, default_data: Path) -> None:
        data = QGroupBox("Dataset")
        self.data_edit = QLineEdit(str(default_data))
        self.data_edit.setToolTip(
            "Training data: the recipe's dataset (labels land here), DAGM, images+masks, ..."
        )
        browse = QPushButton("…")
        browse.setToolTip("Pick the training data folder")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.data_edit, 1)
        row.addWidget(browse)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        dl = QVBoxLayout(data)
        dl.addLayout(row)
        dl.addWidget(self.summary)
        # Typing a path must not scan a folder per key stroke: refresh once the text rests.
        self._summary_timer = QTimer(self, singleShot=True, interval=400)
        self._summary_timer.timeout.connect(self.refresh_summary)
        self.data_edit.textChanged.connect(self._summary_timer.start)

        opts = QGroupBox("Training options")
        # The trainer derives what is left open from the data (training/autoconfig.py).
        self.budget = QSpinBox(minimum=1, maximum=24 * 60, value=40, suffix=" min")
        self.budget.setToolTip(
            "Time budget: training stops after it, the learning rate annealing over it"
        )
        self.epochs = QSpinBox(minimum=0, maximum=1000, value=0)
        self.epochs.setSpecialValueText(AUTO_EPOCHS)
        self.epochs.setToolTip("Passes over the training images (as many as fit the budget at 0)")
        self.image_size = QComboBox()
        self.image_size.addItems([AUTO_SIZE, "64", "128", "256", "512"])
        self.image_size.setToolTip(
            "Tile size the network trains on (px); from the data: from the image sizes"
        )
        self.base_filters = QComboBox()
        self.base_filters.addItems(["8", "16", "32"])
        self.base_filters.setCurrentText("16")
        self.base_filters.setToolTip("Width of the U-Net: more filters, slower and more capable")
        self.amp = QCheckBox("Mixed precision (GPU)")
        self.amp.setToolTip("float16 training on a GPU; no gain on a CPU")
        form = QFormLayout(opts)
        form.addRow("Time budget", self.budget)
        form.addRow("Epochs", self.epochs)
        form.addRow("Image size", self.image_size)
        form.addRow("Base filters", self.base_filters)
        form.addRow("", self.amp)

        self.start_btn = QPushButton("Start training")
        self.start_btn.setToolTip("Train a new model in a child process; the line keeps running")
        self.start_btn.clicked.connect(self.start)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setToolTip("Stop the training child; the running model is unchanged")
        self.cancel_btn.clicked.connect(self.cancel)
        self.progress = QProgressBar(maximum=1000)
        self.progress.setToolTip("Training progress")
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
            plot.setToolTip("Live training curves (x: epochs)")
            plot.addLegend()
            plot.setLabel("bottom", "epoch")
            for k in keys:
                self.lines[k] = plot.plot([], [], name=k, pen=pg.mkPen(_COLOURS[k], width=2))
        curves = QHBoxLayout()
        curves.addWidget(self.loss_plot)
        curves.addWidget(self.dice_plot)

        self.errors = QPlainTextEdit(readOnly=True)
        self.errors.setPlaceholderText("Error output of a failed step appears here.")
        self.errors.setToolTip("What a failed step printed (its error lines and stderr)")
        self.errors.setMaximumBlockCount(2000)

        self.comparison = ComparisonView(self)

        self.who = QLineEdit()
        self.who.setPlaceholderText("your name")
        self.who.setToolTip("Recorded with every deploy and rollback")
        self.why = QLineEdit()
        self.why.setPlaceholderText("why (recorded)")
        self.why.setToolTip("Why you deploy or roll back: recorded in the history and audit")
        self.deploy_btn = QPushButton("Deploy new model")
        self.deploy_btn.setToolTip("Export, (build on a GPU) and hot-swap the new model in")
        self.deploy_btn.clicked.connect(self.deploy)
        self.rollback_btn = QPushButton("Rollback")
        self.rollback_btn.setToolTip("Swap back to the model used before the last swap")
        self.rollback_btn.clicked.connect(self.rollback)
        self.model_label = QLabel("")
        self.model_label.setWordWrap(True)
        deploy_row = QHBoxLayout()
        deploy_row.addWidget(self.who)
        deploy_row.addWidget(self.why, 1)
        deploy_row.addWidget(self.deploy_btn)
        deploy_row.addWidget(self.rollback_btn)
        self.history_label = QLabel("")
        self.history_label.setWordWrap(True)

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
        lay.addWidget(self.model_label)
        lay.addWidget(self.history_label)
        lay.addWidget(self.errors, 1)
        self.refresh_summary()
        self._show_history()

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Training data", self.data_edit.text())
        if folder:
            self.data_edit.setText(folder)

    def refresh_summary(self) -> None:
        worker = create_worker(
            describe_dataset, Path(self.data_edit.text()), _start_thread=False, _ignore_errors=True
        )
        # Workers report to bound methods only: Qt drops those connections if the panel dies.
        worker.returned.connect(self.summary.setText)
        worker.errored.connect(self._summary_failed)
        worker.start()

    def _summary_failed(self, exc: BaseException) -> None:
        self.summary.setText(f"Dataset unreadable: {exc}")

    def _on_model(self, _card: object) -> None:
        self._sync()

    # --------------------------------------------------------- workflow events
    def _on_event(self, event: str, payload: Any) -> None:
        if event == "state":
            self._sync()
            self.state_changed.emit(payload.value)
        elif event == "status":
            self.status.setText(payload)
        elif event == "progress":
            self._on_progress(payload)
        elif event == "compared":
            self.comparison.show_comparison(payload)
            self._sync()
        elif event == "failed":
            self._on_failed(payload)
        elif event == "record":
            self._show_history()
        elif event == "dataset":
            self.refresh_summary()

    def _on_progress(self, p: TrainProgress) -> None:
        self.progress.setValue(int(1000 * p.fraction))
        for key, value in p.metrics.items():
            pts = self._curves.setdefault(key, [])
            pts.append((p.x, value))
            self.lines[key].setData([q[0] for q in pts], [q[1] for q in pts])
        self.eta.setText("" if p.eta_s is None else f"ETA {_duration(p.eta_s)}")
        if p.fraction >= 1.0:
            self.eta.setText("")

    def _on_failed(self, error: WorkflowError) -> None:
        parts = [str(error), error.output if isinstance(error, StepFailed) else ""]
        self.errors.setPlainText("\n\n".join(p for p in parts if p))
        self.error.emit(str(error))

    def curve_points(self, key: str) -> list[tuple[float, float]]:
        """The points drawn so far on the ``loss``/``val_loss``/``dice``/``val_dice`` curve."""
        return list(self._curves.get(key, []))

    def _sync(self) -> None:
        wf = self.workflow
        self.start_btn.setEnabled(not wf.busy)
        self.cancel_btn.setEnabled(wf.stage == Stage.TRAINING)
        self.deploy_btn.setEnabled(wf.can_deploy())
        worse = wf.can_deploy() and (wf.comparison is None or wf.comparison.worse)
        self.deploy_btn.setText("Deploy anyway (override)…" if worse else "Deploy new model")
        self.deploy_btn.setStyleSheet("color: #c62828; font-weight: bold;" if worse else "")
        self.rollback_btn.setEnabled(wf.can_rollback())
        self.model_label.setText(f"Running model: {wf.running_model()}")

    def _show_history(self) -> None:
        last = self.workflow.history[-3:]
        self.history_label.setText(
            "\n".join(_describe(r) for r in reversed(last)) if last else "No deploy recorded yet."
        )

    # --------------------------------------------------------------- actions
    def start(self) -> None:
        if self.workflow.busy:
            return
        self._curves.clear()
        for line in self.lines.values():
            line.setData([], [])
        self.comparison.clear()
        self.errors.clear()
        self.progress.setValue(0)
        self.eta.setText("")
        size = self.image_size.currentText()
        options = TrainOptions(
            data=Path(self.data_edit.text()),
            epochs=self.epochs.value() or None,
            image_size=None if size == AUTO_SIZE else int(size),
            base_filters=int(self.base_filters.currentText()),
            amp=self.amp.isChecked(),
            max_minutes=float(self.budget.value()),
        )
        self._call(self.workflow.start, options)

    def cancel(self) -> None:
        self.workflow.cancel()

    def deploy(self) -> None:
        wf = self.workflow
        if not wf.can_deploy():
            return
        if wf.comparison is None or wf.comparison.worse:
            findings = "; ".join(wf.comparison.reasons) if wf.comparison else "no comparison"
            dialog = OverrideDialog(findings, self)
            dialog.who.setText(self.who.text())
            dialog.reason.setText(self.why.text())
            if dialog.exec() != QDialog.DialogCode.Accepted:
                return
            self.deploy_override(dialog.override())
            return
        self._call(wf.deploy, who=self.who.text(), why=self.why.text())

    def deploy_override(self, override: Override) -> bool:
        """Deploy a worse model with an engineer's PIN-confirmed override; False if refused."""
        return self._call(self.workflow.deploy, override=override)

    def rollback(self) -> None:
        self._call(self.workflow.rollback, who=self.who.text(), why=self.why.text())

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> bool:
        try:
            fn(*args, **kwargs)
        except WorkflowError as exc:
            self.status.setText(str(exc))
            self.error.emit(str(exc))
            return False
        return True

    def shutdown(self) -> None:
        """Window closing: kill a running child so it does not outlive the station."""
        self.runner.kill()


def _describe(record: DeployRecord) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(record.time))
    override = " (override)" if record.override else ""
    return (
        f"{when} {record.action}{override} by {record.who}: {Path(record.model_to).name} "
        f"— {record.why}"
    )


def _duration(seconds: float) -> str:
    s = int(max(0.0, seconds))
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )
