"""The training workflow's vocabulary: stages, typed errors, records and the runner interface.

Kept apart from :mod:`app.station.training_workflow` (the state machine) so each stays short.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from app.station._deploy_guard import Comparison


class Stage(Enum):
    IDLE = "idle"
    TRAINING = "training"
    EVALUATING = "evaluating"
    COMPARED = "compared"
    EXPORTING = "exporting"
    BUILDING = "building"
    LOADING = "loading"
    DEPLOYED = "deployed"
    ROLLING_BACK = "rolling back"
    ROLLED_BACK = "rolled back"
    FAILED = "failed"


BUSY = frozenset(
    {Stage.TRAINING, Stage.EVALUATING, Stage.EXPORTING, Stage.BUILDING, Stage.LOADING,
     Stage.ROLLING_BACK}
)  # fmt: skip


# --- errors ------------------------------------------------------------------------------------
class WorkflowError(RuntimeError):
    """Base of the workflow's errors; the message is what the user reads."""


class InvalidAction(WorkflowError):
    """The action is not possible in the current stage (e.g. deploy while training)."""


class StepFailed(WorkflowError):
    """A child process or a load failed; ``output`` holds the child's errors and stderr tail."""

    def __init__(self, step: str, code: int, output: str = "", message: str = "") -> None:
        super().__init__(message or f"{step} failed (exit code {code}).")
        self.step, self.code, self.output = step, code, output


class DeployBlocked(WorkflowError):
    """The new model is worse than the running one (or it cannot be told): override needed."""

    def __init__(self, comparison: Comparison | None) -> None:
        why = comparison.reasons if comparison is not None else ("no comparison was made",)
        super().__init__("The new model is not deployed: " + "; ".join(why))
        self.comparison = comparison


class OverrideRefused(WorkflowError):
    """An override without a right PIN, a name or a reason."""


# --- data --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrainOptions:
    """What the Train workspace asks for. None = derived from the data by the trainer
    (training/autoconfig.py): the epochs from the time budget, the tile from the image sizes."""

    data: Path
    epochs: int | None = None
    image_size: int | None = None
    base_filters: int = 16
    amp: bool = False
    max_minutes: float = 40.0  # time budget (0 = none); with epochs given it is a cap


@dataclass(frozen=True)
class TrainProgress:
    """One progress line of the trainer: ``x`` epochs done (fractional), metrics at that point."""

    x: float
    fraction: float  # 0 … 1 of the whole run
    metrics: dict[str, float] = field(default_factory=dict)
    eta_s: float | None = None
    message: str = ""


@dataclass(frozen=True)
class Override:
    """An engineer's explicit decision to deploy a model the comparison says is worse."""

    pin: str
    who: str
    reason: str


@dataclass(frozen=True)
class DeployRecord:
    time: float
    action: str  # "deploy" | "rollback"
    who: str
    why: str
    model_from: str
    model_to: str
    override: bool = False
    comparison: tuple[str, ...] = ()  # the guard's findings shown at the time


class PinResult(Protocol):
    @property
    def ok(self) -> bool: ...

    @property
    def message(self) -> str: ...


class JobRunner(Protocol):
    """Runs one child process or one blocking call at a time and calls back when done."""

    def run_process(
        self,
        command: list[str],
        on_line: Callable[[str], None],
        on_done: Callable[[int, str], None],
    ) -> None: ...

    def cancel_process(self) -> None: ...

    def run_call(
        self, fn: Callable[[], Any], on_done: Callable[[Any, BaseException | None], None]
    ) -> None: ...


class DeployTarget(Protocol):
    """What the workflow needs of the running station (``InspectionSession`` has it)."""

    @property
    def model_path(self) -> Path: ...

    @property
    def previous_model_path(self) -> Path | None: ...

    @property
    def rules(self) -> Any: ...  # the Rules in use (threshold, min_area_px)

    def load_model(self, path: str | Path) -> Any: ...

    def rollback_model(self) -> Any: ...


def operating_point_note(card: Any, rules: Any) -> str:
    """A sentence when the deployed model's card chose another operating point than the rules in
    use: the comparison was made at the rules, and they stay until someone changes them."""
    try:
        own = (float(card.threshold), int(card.min_area_px))
        used = (float(rules.threshold), int(rules.min_area_px))
    except (AttributeError, TypeError, ValueError):
        return ""
    if own == used:
        return ""
    return (
        f" Its card chose threshold {own[0]:g} and minimum area {own[1]} px on its validation "
        f"split; the station keeps its rules ({used[0]:g}, {used[1]} px), at which the models "
        "were compared — change them on the Rules workspace if the new operating point is wanted."
    )
