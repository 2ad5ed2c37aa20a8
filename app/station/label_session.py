"""The Label workspace's model: the frame on screen, the frame being edited, its mask, the save.

It follows the frame on screen through ``ViewState`` (live or under review) as the *candidate*;
``edit`` copies the candidate into the editor, starting from the model's own binary mask under the
rules wanted now, so the technician only paints what the model missed and erases what it invented.
The painter (the GUI) owns the pixels and their undo while painting and hands the mask back with
``set_mask``; ``save`` / ``mark_false_alarm`` write the label into the recipe's dataset through
``labels.save_label`` (atomic, never overwrites). Saving blocks: the GUI calls it on a worker.

With defect classes (``set_classes`` with the model's class names, two or more) the mask is
class-index: 0 background, k + 1 a pixel of ``class_names[k]``; the starting mask paints each of
the model's blobs with its class (from the frame's kept class map; a frame without one, e.g.
opened from the archive, starts empty), and the label is saved class-index with ``classes.txt``.

Listeners get ``(event, payload)``: ``"candidate"`` (FrameResult | None), ``"editing"``
(FrameResult | None) on the caller's thread, ``"saved"`` (LabelPaths) on the saving thread.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from app.station import labels
from app.station.inspection import FrameResult, Rules
from app.station.inspector import binary_mask, class_mask
from app.station.view_state import ViewState

log = logging.getLogger(__name__)

LabelEvent = Literal["candidate", "editing", "saved"]
LabelListener = Callable[[LabelEvent, Any], None]
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def default_label_name(result: FrameResult) -> str:
    """A file stem that tells where the frame came from: the source file's stem, else the id."""
    path = result.frame.metadata.get("path")
    fallback = f"frame{result.frame.frame_id:06d}"
    stem = Path(str(path)).stem if path else fallback
    return _UNSAFE.sub("_", stem).strip("._") or fallback


def describe(result: FrameResult) -> str:
    ins = result.inspection
    return (
        f"frame #{result.frame.frame_id} from {result.frame.source} — {ins.verdict}, "
        f"{len(ins.defects)} defect(s)"
    )


class LabelError(ValueError):
    """Nothing to save, or the frame cannot be labelled (the message says why)."""


class LabelSession:
    """Candidate (frame on screen) → editing (a copy with its mask) → saved label.

    ``dataset_dir`` and ``rules`` are asked when needed: the recipe's dataset and the rules
    wanted now may change while the station runs.
    """

    def __init__(
        self,
        dataset_dir: Callable[[], Path],
        rules: Callable[[], Rules],
        view_state: ViewState | None = None,
    ) -> None:
        self._dataset_dir = dataset_dir
        self._rules = rules
        self._listeners: list[LabelListener] = []
        self._candidate: FrameResult | None = None
        self._editing: FrameResult | None = None
        self._mask: NDArray[np.uint8] | None = None
        self._threshold: float | None = None
        self._classes: tuple[str, ...] = ()
        self._editing_classes: tuple[str, ...] = ()
        self.name = ""
        self._unfollow: Callable[[], None] | None = None
        if view_state is not None:
            self._unfollow = view_state.subscribe(self._on_view)
            self.set_candidate(view_state.current)

    # --- listeners ----------------------------------------------------------------------------
    def subscribe(self, listener: LabelListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _emit(self, event: LabelEvent, payload: Any) -> None:
        for listener in list(self._listeners):
            try:
                listener(event, payload)
            except Exception:  # noqa: BLE001 - a broken view must not lose a saved label
                log.exception("label listener failed on %s", event)

    def close(self) -> None:
        if self._unfollow is not None:
            self._unfollow()
            self._unfollow = None

    # --- candidate ----------------------------------------------------------------------------
    def _on_view(self, view: ViewState) -> None:
        self.set_candidate(view.current)

    @property
    def candidate(self) -> FrameResult | None:
        """The frame on screen: what ``edit()`` would take."""
        return self._candidate

    def set_candidate(self, result: FrameResult | None) -> None:
        if result is not self._candidate:
            self._candidate = result
            self._emit("candidate", result)

    # --- classes ------------------------------------------------------------------------------
    @property
    def class_names(self) -> tuple[str, ...]:
        """The model's defect classes when it has several, else () (binary 0 / 255 masks)."""
        return self._classes

    def set_classes(self, names: Sequence[str]) -> None:
        """The running model's class names; fewer than two means a one-class model.

        A frame already in the editor keeps its mask layout: the change applies to the next one.
        """
        names = tuple(names)
        self._classes = names if len(names) >= 2 else ()

    # --- editing ------------------------------------------------------------------------------
    @property
    def editing(self) -> FrameResult | None:
        return self._editing

    @property
    def mask(self) -> NDArray[np.uint8] | None:
        """The mask being edited (0 / 255, or class ids with classes; the frame's size), None
        when nothing is edited."""
        return self._mask

    @property
    def start_threshold(self) -> float | None:
        """The threshold the starting mask was cut at."""
        return self._threshold

    def edit(self, result: FrameResult | None = None) -> NDArray[np.uint8]:
        """Edit ``result`` (default: the candidate); returns the starting mask.

        Raises
        ------
        LabelError
            No frame, or a frame that could not be read (nothing to label).
        """
        result = result or self._candidate
        if result is None:
            raise LabelError("no frame on screen to label yet")
        image = result.frame.image
        if image.ndim < 2 or image.size == 0:
            raise LabelError(f"frame #{result.frame.frame_id} has no image to label")
        rules = self._rules()
        start = self._start_mask(result, rules)
        self._editing, self._mask, self._threshold = result, start, rules.threshold
        self._editing_classes = self._classes
        self.name = default_label_name(result)
        self._emit("editing", result)
        return start.copy()

    def _start_mask(self, result: FrameResult, rules: Rules) -> NDArray[np.uint8]:
        shape = result.frame.image.shape[:2]
        if result.prob is None or result.prob.shape[:2] != shape:
            return np.zeros(shape, np.uint8)  # a frame the model could not judge: start empty
        if not self._classes:
            return np.where(binary_mask(result.prob, rules), 255, 0).astype(np.uint8)
        cp = result.extra.get("class_prob")
        if cp is None or cp.ndim != 3 or cp.shape[:2] != shape or cp.shape[2] != len(self._classes):
            # no class map (archived frame, another model): guessing a class would teach a
            # wrong one, so the technician paints the defects with their classes
            return np.zeros(shape, np.uint8)
        return class_mask(result.prob, rules, cp, self._classes, defects_only=False)

    @property
    def editing_classes(self) -> tuple[str, ...]:
        """The classes the mask in the editor is painted with (() when binary)."""
        return self._editing_classes

    def set_mask(self, mask: NDArray[np.generic]) -> None:
        """The painter's mask now (any value > 0 is defect; class ids with classes)."""
        if self._editing is None:
            raise LabelError("no frame is being edited")
        m = np.asarray(mask)
        if m.shape[:2] != self._editing.frame.image.shape[:2]:
            raise LabelError(
                f"mask size {m.shape[:2]} is not the frame's {self._editing.frame.image.shape[:2]}"
            )
        if self._editing_classes:
            top = len(self._editing_classes)
            if m.size and (int(m.min()) < 0 or int(m.max()) > top):
                raise LabelError(f"mask values must be class ids 0..{top}")
            self._mask = m.astype(np.uint8)
        else:
            self._mask = np.where(m > 0, 255, 0).astype(np.uint8)

    def discard(self) -> None:
        if self._editing is not None:
            self._editing, self._mask, self._threshold = None, None, None
            self._emit("editing", None)

    # --- saving -------------------------------------------------------------------------------
    def dataset_dir(self) -> Path:
        return self._dataset_dir()

    def save(self, name: str | None = None) -> labels.LabelPaths:
        """Save the edited frame with its mask as a defect label (blocking; disk I/O).

        Raises
        ------
        LabelError
            Nothing is being edited.
        ValueError
            The mask is empty (paint the defect or mark a false alarm) or unusable.
        OSError
            The dataset folder cannot be written; nothing half-written is left.
        """
        result, mask = self._editing, self._mask
        if result is None or mask is None:
            raise LabelError("no frame is being edited: pause on a frame first")
        return self._write(result, mask, "defect", name, self._editing_classes)

    def mark_false_alarm(self, name: str | None = None) -> labels.LabelPaths:
        """Save the edited frame (else the candidate) with an all-zero mask: nothing is wrong."""
        result = self._editing or self._candidate
        if result is None:
            raise LabelError("no frame on screen to mark")
        if result.frame.image.size == 0:
            raise LabelError(f"frame #{result.frame.frame_id} has no image to label")
        if self._editing is None and not name:
            name = default_label_name(result)
        return self._write(result, None, "false_alarm", name, self._classes)

    def _write(
        self,
        result: FrameResult,
        mask: NDArray[np.uint8] | None,
        kind: labels.LabelKind,
        name: str | None,
        classes: tuple[str, ...] = (),
    ) -> labels.LabelPaths:
        stem = (name or self.name or "").strip() or default_label_name(result)
        paths = labels.save_label(
            self.dataset_dir(), result.frame.image, mask, name=stem, kind=kind,
            class_names=classes,
        )  # fmt: skip
        self._emit("saved", paths)
        return paths

    def summary(self) -> str:
        """One line about the dataset labels go into (reads every mask: call it off the GUI)."""
        folder = self.dataset_dir()
        n, defective, normal = labels.dataset_summary(folder)
        line = f"Dataset {folder}: {n} images — {defective} with a defect, {normal} defect-free"
        classes = labels.dataset_classes(folder)
        return f"{line}; classes: {', '.join(classes)}" if classes else line
