"""Train → evaluate → compare → export → build → deploy / rollback, as an explicit state machine.

The Train & Deploy workspace's model. Each step is a child process (``python -m training ...``,
``python -m engines build``; command lines from :mod:`app.station.training_jobs`) or a blocking
call (loading the model into the running station), driven through a small :class:`JobRunner`
that the GUI implements with QProcess and superqt workers and tests implement with a fake or
``subprocess``. The workflow itself never blocks and imports no Qt.

States (:class:`Stage`) and what moves between them::

    IDLE/COMPARED/DEPLOYED/ROLLED_BACK/FAILED --start--> TRAINING --done--> EVALUATING (new, then
    current, on the new run's held-out split) --> COMPARED --deploy--> EXPORTING [--> BUILDING on a
    GPU] --> LOADING --> DEPLOYED;  any --rollback--> ROLLING_BACK --> ROLLED_BACK;
    TRAINING --cancel--> IDLE;  a failed step --> FAILED (the running model is untouched).

Deploy guard: when the new model is worse than the running one at the station's operating point
(lower recall, or more false alarms, on the same comparison set) — or the comparison cannot tell —
``deploy`` raises :class:`DeployBlocked` unless an :class:`Override` with the engineer PIN and a
reason is given. Every deploy and rollback is recorded (who, why, from, to, the comparison) in
``history``, in ``DATA_DIR/deployments.jsonl`` and, when given, through ``audit``.

Listeners get ``(event, payload)``: ``"state"`` (Stage), ``"status"`` (str), ``"progress"``
(:class:`TrainProgress`), ``"compared"`` (:class:`Comparison`), ``"failed"`` (WorkflowError),
``"record"`` (:class:`DeployRecord`), ``"dataset"`` (None: labels were saved). They are called on
the thread the runner calls back on (the GUI thread for the Qt runner).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from app.station import training_jobs
from app.station._deploy_guard import Comparison, compare_reports
from app.station._workflow_parts import (
    BUSY,
    DeployBlocked,
    DeployRecord,
    DeployTarget,
    InvalidAction,
    JobRunner,
    Override,
    OverrideRefused,
    PinResult,
    Stage,
    StepFailed,
    TrainOptions,
    TrainProgress,
    WorkflowError,
    operating_point_note,
)

__all__ = [
    "Comparison",
    "DeployBlocked",
    "DeployRecord",
    "InvalidAction",
    "JobRunner",
    "Override",
    "OverrideRefused",
    "Stage",
    "StepFailed",
    "TrainOptions",
    "TrainProgress",
    "TrainingWorkflow",
    "WorkflowError",
]

log = logging.getLogger(__name__)
HISTORY_FILE = "deployments.jsonl"


Listener = Callable[[str, Any], None]


class TrainingWorkflow:
    """See the module docstring. ``operating_point()`` gives the station's threshold now."""

    def __init__(
        self,
        station: DeployTarget,
        runner: JobRunner,
        data_dir: Path,
        *,
        operating_point: Callable[[], float],
        check_pin: Callable[[str], PinResult] | None = None,
        audit: Callable[..., Any] | None = None,
        gpu_available: Callable[[], bool] = training_jobs.gpu_available,
        python: str | None = None,
    ) -> None:
        self._station = station
        self._runner = runner
        self.data_dir = Path(data_dir)
        self._operating_point = operating_point
        self._check_pin = check_pin
        self._audit = audit
        self._gpu = gpu_available
        self._python = python
        self.stage = Stage.IDLE
        self.options: TrainOptions | None = None
        self.run_dir: Path | None = None
        self.new_model: Path | None = None
        self.reports: dict[str, dict[str, Any]] = {}
        self.comparison: Comparison | None = None
        self.deployed_path: Path | None = None
        self.error: WorkflowError | None = None
        self.history: list[DeployRecord] = self._read_history()
        self._listeners: list[Listener] = []
        self._done_event: dict[str, Any] | None = None
        self._child_errors: list[str] = []
        self._cancelled = False
        self._pending: tuple[str, str, bool] = ("", "", False)  # who, why, override of a deploy

    # --- listeners ----------------------------------------------------------------------------
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _emit(self, event: str, payload: Any) -> None:
        for listener in list(self._listeners):
            try:
                listener(event, payload)
            except Exception:  # noqa: BLE001 - a broken view must not stop a deploy
                log.exception("training workflow listener failed on %s", event)

    def _to(self, stage: Stage, status: str = "") -> None:
        self.stage = stage
        if status:
            self._emit("status", status)
        self._emit("state", stage)

    @property
    def busy(self) -> bool:
        return self.stage in BUSY

    def can_deploy(self) -> bool:
        return self.stage == Stage.COMPARED and self.new_model is not None

    def can_rollback(self) -> bool:
        return not self.busy and self._station.previous_model_path is not None

    def running_model(self) -> str:
        return str(self._station.model_path)

    def dataset_changed(self) -> None:
        """Labels were saved into the dataset: views refresh their summary."""
        self._emit("dataset", None)

    # --- failing ------------------------------------------------------------------------------
    def _fail(self, error: WorkflowError) -> None:
        if isinstance(error, StepFailed):
            parts = [*self._child_errors, error.output.strip()]
            error.output = "\n\n".join(p for p in parts if p)
        self._child_errors.clear()
        self.error = error
        self._to(Stage.FAILED, f"{error} The station keeps running.")
        self._emit("failed", error)

    def _require_idle(self, action: str) -> None:
        if self.busy:
            raise InvalidAction(f"cannot {action} while {self.stage.value}")

    # --- training -----------------------------------------------------------------------------
    def start(self, options: TrainOptions) -> None:
        """Train a new model on ``options.data`` into a fresh run folder.

        Raises
        ------
        InvalidAction
            A step is running.
        """
        self._require_idle("start training")
        self.options = options
        self.new_model, self.comparison, self.error = None, None, None
        self.reports.clear()
        self._done_event, self._cancelled = None, False
        self._child_errors.clear()
        try:
            self.run_dir = training_jobs.new_run_dir(self.data_dir)
        except OSError as exc:
            self._fail(StepFailed("Training", -1, message=f"Cannot create the run folder: {exc}"))
            return
        command = training_jobs.train_command(
            options.data, self.run_dir, epochs=options.epochs, image_size=options.image_size,
            base_filters=options.base_filters, amp=options.amp, max_minutes=options.max_minutes,
            python=self._python,
        )  # fmt: skip
        self._to(Stage.TRAINING, f"Training into {self.run_dir} …")
        self._runner.run_process(command, self._on_train_line, self._on_train_done)

    def cancel(self) -> None:
        if self.stage == Stage.TRAINING:
            self._cancelled = True
            self._emit("status", "Cancelling …")
            self._runner.cancel_process()

    def _on_train_line(self, line: str) -> None:
        event = training_jobs.parse_progress(line)
        if event is None:
            return
        kind = event.get("event")
        # "epochs" is the trainer's plan: those that fit the budget when none were asked for
        asked = self.options.epochs if self.options else None
        epochs = max(1, int(event.get("epochs") or asked or 1))
        eta = event.get("eta_s")
        eta_s = float(eta) if isinstance(eta, int | float) else None
        if kind in ("step", "epoch"):
            steps = max(1, int(event.get("steps") or 1))
            # "epoch" and "step" are 1-based: step s of epoch e is (e - 1) + s / steps epochs in.
            x = max(0, int(event.get("epoch") or 1) - 1) + int(event.get("step") or steps) / steps
            keys = ("loss", "dice") if kind == "step" else ("loss", "val_loss", "dice", "val_dice")
            metrics = {
                k: float(event[k]) for k in keys if isinstance(event.get(k), int | float)
            }  # NaN arrives as null: skipped
            self._emit("progress", TrainProgress(x, min(1.0, x / epochs), metrics, eta_s))
        elif kind == "done":
            self._done_event = event
        elif kind == "error":
            self._child_errors.append(str(event.get("message", event)))
        elif kind == "export":
            self._emit(
                "status", f"Training done; exporting and checking the ONNX ({event.get('stage')}) …"
            )

    def _on_step_line(self, line: str) -> None:
        """Evaluate / export / build: only their error events matter (shown if the step fails)."""
        event = training_jobs.parse_progress(line)
        if event is not None and event.get("event") == "error":
            self._child_errors.append(str(event.get("message", event)))

    def _on_train_done(self, code: int, err: str) -> None:
        if self._cancelled:
            self._cancelled = False
            self._child_errors.clear()
            self._to(Stage.IDLE, "Training cancelled; the running model is unchanged.")
            return
        done = self._done_event
        if code != 0 or done is None or not done.get("model"):
            why = "" if code else "Training ended without a model."
            self._fail(StepFailed("Training", code, err, why))
            return
        self.new_model = Path(str(done["model"]))
        ran = done.get("epochs_run") or (self.options.epochs if self.options else None) or 1
        self._emit("progress", TrainProgress(float(ran), 1.0))
        self._to(Stage.EVALUATING, "Training done. Evaluating the new model …")
        self._evaluate("new", self.new_model, then=self._evaluate_current)

    # --- evaluation ---------------------------------------------------------------------------
    def _evaluate(self, which: str, model: Path, then: Callable[[], None]) -> None:
        assert self.run_dir is not None and self.options is not None
        out = self.run_dir / f"eval-{which}"
        # Both models against the new run's held-out split, so every row compares like for like.
        command = training_jobs.evaluate_command(
            model, self.options.data, out, split="test", split_file=self.run_dir / "split.json",
            python=self._python,
        )  # fmt: skip

        def done(code: int, err: str) -> None:
            step = f"Evaluation of the {which} model"
            if code != 0:
                self._fail(StepFailed(step, code, err))
                return
            try:
                self.reports[which] = training_jobs.read_report(out)
            except training_jobs.ReportError as exc:
                self._fail(StepFailed(step, code, err, str(exc)))
                return
            then()

        self._runner.run_process(command, self._on_step_line, done)

    def _evaluate_current(self) -> None:
        self._emit("status", "Evaluating the running model on the new model's test split …")
        self._evaluate("current", Path(self._station.model_path), then=self._compare)

    def _compare(self) -> None:
        self.comparison = compare_reports(
            self.reports["current"], self.reports["new"], self._operating_point()
        )
        self._emit("compared", self.comparison)
        if self.comparison.worse:
            status = "The new model is WORSE than the running one: " + "; ".join(
                self.comparison.reasons
            )
        else:
            status = "Compare, then Deploy the new model or keep the running one."
        self._to(Stage.COMPARED, status)

    def recompare(self) -> Comparison | None:
        """The operating point moved (sliders): compare the same reports again."""
        if self.comparison is not None and {"current", "new"} <= set(self.reports):
            self.comparison = compare_reports(
                self.reports["current"], self.reports["new"], self._operating_point()
            )
            self._emit("compared", self.comparison)
        return self.comparison

    # --- deploy / rollback --------------------------------------------------------------------
    def deploy(self, *, who: str = "", why: str = "", override: Override | None = None) -> None:
        """Export the new model's ONNX, build a TensorRT engine on a GPU, hot-swap it in.

        Raises
        ------
        InvalidAction
            Nothing compared to deploy, or a step is running.
        DeployBlocked
            The new model is worse (or the comparison unknown) and no override was given.
        OverrideRefused
            The override's PIN is wrong (or no checker), or it names no one or no reason.
        """
        if not self.can_deploy() or self.run_dir is None:
            raise InvalidAction(
                f"nothing to deploy while {self.stage.value}: train and compare first"
            )
        comparison = self.comparison
        if comparison is None or comparison.worse:
            if override is None:
                raise DeployBlocked(comparison)
            self._check_override(override)
            who, why = override.who, override.reason
        onnx = self.data_dir / "models" / f"{self.run_dir.name}.onnx"
        self._pending = (who.strip() or "technician", why.strip(), override is not None)
        self._to(Stage.EXPORTING, f"Exporting the verified ONNX to {onnx} …")

        def exported(code: int, err: str) -> None:
            if code != 0:
                self._fail(StepFailed("ONNX export", code, err))
            elif self._gpu():
                engine = onnx.with_suffix(".engine")
                self._to(Stage.BUILDING, f"Building the TensorRT engine {engine} …")
                self._runner.run_process(
                    training_jobs.build_command(onnx, engine, python=self._python),
                    self._on_step_line,
                    lambda c, e: (
                        self._fail(StepFailed("TensorRT build", c, e)) if c else self._load(engine)
                    ),
                )
            else:
                self._load(onnx)

        self._runner.run_process(
            training_jobs.export_command(self.run_dir, onnx, python=self._python),
            self._on_step_line,
            exported,
        )

    def _check_override(self, override: Override) -> None:
        if not override.who.strip():
            raise OverrideRefused("say who decides to deploy a worse model")
        if not override.reason.strip():
            raise OverrideRefused("give the reason for deploying a worse model")
        if self._check_pin is None:
            raise OverrideRefused("no engineer PIN checker: a worse model cannot be deployed")
        result = self._check_pin(override.pin)
        if not result.ok:
            raise OverrideRefused(f"override refused: {result.message}")

    def _load(self, path: Path) -> None:
        self._to(Stage.LOADING, f"Loading {path} into the running station …")
        before = str(self._station.model_path)

        def loaded(card: Any, exc: BaseException | None) -> None:
            if exc is not None:
                self._fail(
                    StepFailed("Loading the new model", -1,
                               message=f"{exc} (the previous model keeps running)")
                )  # fmt: skip
                return
            self.deployed_path = path
            who, why, overridden = self._pending
            if not why:
                why = "new model not worse at the operating point"
            self._record("deploy", who, why, before, str(path), overridden)
            self._to(
                Stage.DEPLOYED,
                f"Deployed {path.name}. Rollback brings back the previous model."
                + operating_point_note(card, self._station.rules),
            )

        self._runner.run_call(lambda: self._station.load_model(path), loaded)

    def rollback(self, *, who: str = "", why: str = "") -> None:
        """Swap back to the previous model (a second rollback toggles back).

        Raises
        ------
        InvalidAction
            A step is running, or there is no previous model.
        """
        self._require_idle("roll back")
        if self._station.previous_model_path is None:
            raise InvalidAction("there is no previous model to roll back to")
        before = str(self._station.model_path)
        target = str(self._station.previous_model_path)
        self._to(Stage.ROLLING_BACK, f"Rolling back to {target} …")

        def done(_card: Any, exc: BaseException | None) -> None:
            if exc is not None:
                self._fail(StepFailed("Rollback", -1, message=str(exc)))
                return
            self._record("rollback", who.strip() or "technician",
                         why.strip() or "rollback requested", before, target, False)  # fmt: skip
            self._to(Stage.ROLLED_BACK, f"Rolled back: running {Path(target).name} again.")

        self._runner.run_call(self._station.rollback_model, done)

    # --- who and why --------------------------------------------------------------------------
    def _record(
        self, action: str, who: str, why: str, old: str, new: str, overridden: bool
    ) -> None:
        findings = self.comparison.reasons if self.comparison is not None else ()
        record = DeployRecord(time.time(), action, who, why, old, new, overridden, findings)
        self.history.append(record)
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            with (self.data_dir / HISTORY_FILE).open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(asdict(record)) + "\n")
        except OSError as exc:  # the swap happened; losing the note must not undo it
            log.error("deploy history not written to %s: %s", self.data_dir, exc)
        if self._audit is not None:
            try:
                self._audit(
                    "engineer" if overridden else "technician",
                    "model.deploy" if action == "deploy" else "model.rollback",
                    user=who, target=new, old=old, new=new,
                    detail={"why": why, "override": overridden, "comparison": list(findings)},
                )  # fmt: skip
            except Exception:  # noqa: BLE001 - the audit trail queues; never break a deploy
                log.exception("audit record of the %s failed", action)
        self._emit("record", record)

    def _read_history(self) -> list[DeployRecord]:
        path = self.data_dir / HISTORY_FILE
        records: list[DeployRecord] = []
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return records
        for line in lines[-200:]:
            try:
                d = json.loads(line)
                d["comparison"] = tuple(d.get("comparison") or ())
                records.append(DeployRecord(**d))
            except (ValueError, TypeError):
                log.warning("%s: unreadable line skipped", path)
        return records


def describe_dataset(folder: str | Path) -> str:
    """One line on a training dataset in any layout training reads (DAGM, images+masks, ...).

    Uses training's own discovery (TF-free) so the count is what training will see; the station's
    bundle leaves ``training`` out, and then the validation pairing logic counts instead. Reads
    mask headers / pixels: call it off the GUI thread.
    """
    root = Path(folder)
    if not root.is_dir():
        return f"Dataset {root}: 0 images (the folder does not exist yet)"
    try:
        from training.data.discovery import DatasetError, discover
    except ImportError:
        return _describe_by_pairs(root)
    try:
        s = discover(root).summary()
    except DatasetError as exc:
        return f"Dataset {root}: {exc}"
    text = (
        f"Dataset {root} ({s['layout']}): {s['images']} images — {s['defective']} with a defect, "
        f"{s['defect_free']} defect-free"
    )
    problems = len(s["problems"])
    return text + (f" · {problems} problem(s): python -m training data {root}" if problems else "")


def _describe_by_pairs(root: Path) -> str:
    from app.station.validation import find_pairs, mask_is_defective

    # DAGM: ClassN/{Train,Test}/ each with Label/; otherwise the folder itself
    parts = [p for p in (root / "Train", root / "Test") if (p / "Label").is_dir()] or [root]
    n = defective = 0
    for part in parts:
        for _image, mask in find_pairs(part):
            n += 1
            defective += int(mask is not None and mask_is_defective(mask))
    return f"Dataset {root}: {n} images — {defective} with a defect, {n - defective} defect-free"
