"""The model card: what a model file needs to be run and judged, stored as JSON beside it.

``model.onnx`` -> ``model.json``; ``model.engine`` -> ``model.json`` as well (the engine builder
copies the ONNX card and adds the TensorRT agreement). Loaded the way anomalib's
``_load_metadata`` does: the runner never guesses input size or normalisation.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

# 2: ``golden`` (the load-time self-test, see engines.selftest). Version 1 cards are read as
# version 2 without a golden: they load, with a warning that the model is unchecked.
CARD_SCHEMA_VERSION = 2

Precision = Literal["fp32", "fp16", "int8"]
Normalisation = Literal["unit"]  # pixel / (2**bits - 1) -> [0, 1]; standardisation is in the graph


class CardError(ValueError):
    """A model card is missing, unreadable or inconsistent (the message names the file)."""


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to feed a model and read its output.

    The network takes float32 ``N x input_height x input_width x channels`` in [0, 1] and returns
    ``N x H x W x 1`` defect probabilities. Frames are first resized by ``frame_scale`` (e.g. 0.5
    for a model trained on DAGM downscaled 2x), then tiled to the input size.
    """

    name: str
    input_height: int
    input_width: int
    channels: int = 1
    normalisation: Normalisation = "unit"
    frame_scale: float = 1.0
    threshold: float = 0.5
    min_area_px: int = 0  # suggested minimum defect area, in full-resolution frame pixels
    class_names: tuple[str, ...] = ("defect",)
    precision: Precision = "fp32"
    input_name: str = "image"
    output_name: str = "probability"
    model_id: str = ""
    architecture: str = ""
    training: dict[str, Any] = field(default_factory=dict)  # data, split file, run id, time
    metrics: dict[str, Any] = field(default_factory=dict)  # from training/evaluate report.json
    agreement: dict[str, Any] = field(default_factory=dict)  # e.g. {"fp32_max_abs_diff": 3e-6}
    created_at: str = ""
    # {"input": base64 PNG tile, "input_sha256", "output_digest", "tolerance", "recorded_with"};
    # {} when the card has none (schema 1 cards, test models)
    golden: dict[str, Any] = field(default_factory=dict)
    schema_version: int = CARD_SCHEMA_VERSION

    def __post_init__(self) -> None:
        problems = []
        if self.input_height <= 0 or self.input_width <= 0:
            problems.append(f"input size {self.input_height}x{self.input_width} is not positive")
        if self.channels not in (1, 3):
            problems.append(f"channels must be 1 or 3, not {self.channels}")
        if not 0.0 < self.threshold < 1.0:
            problems.append(f"threshold {self.threshold} is outside (0, 1)")
        if not 0.0 < self.frame_scale <= 4.0:
            problems.append(f"frame_scale {self.frame_scale} is outside (0, 4]")
        if self.precision not in ("fp32", "fp16", "int8"):
            problems.append(f"precision {self.precision!r} is not fp32, fp16 or int8")
        if self.normalisation != "unit":
            problems.append(f"normalisation {self.normalisation!r} is not 'unit'")
        if not isinstance(self.golden, dict):
            problems.append(f"golden must be a JSON object, not {type(self.golden).__name__}")
        if problems:
            raise CardError("; ".join(problems))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.input_height, self.input_width, self.channels)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["class_names"] = list(self.class_names)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, origin: str = "<dict>") -> ModelCard:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise CardError(f"{origin}: unknown card keys {unknown}")
        version = data.get("schema_version", CARD_SCHEMA_VERSION)
        if not isinstance(version, int) or version < 1:
            raise CardError(f"{origin}: card schema_version {version!r} is not an integer >= 1")
        if version > CARD_SCHEMA_VERSION:
            raise CardError(
                f"{origin}: card schema {version} is newer than this station ({CARD_SCHEMA_VERSION})"
            )
        # Older layouts are strict subsets of this one: read them as the current version, so a
        # card re-saved by this station says what it now holds.
        data = {**data, "schema_version": CARD_SCHEMA_VERSION}
        if "class_names" in data:
            data["class_names"] = tuple(data["class_names"])
        try:
            return cls(**data)
        except TypeError as exc:  # missing required keys
            raise CardError(f"{origin}: {exc}") from None
        except CardError as exc:
            raise CardError(f"{origin}: {exc}") from None

    def with_updates(self, **changes: Any) -> ModelCard:
        return replace(self, **changes)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically (temp file + rename) so a crash never leaves half a card."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(self.to_dict(), fh, indent=2, sort_keys=True)
                fh.write("\n")
            # mkstemp creates 0600; a card must be readable like any other file in the bundle
            os.chmod(tmp, 0o644)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ModelCard:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise CardError(f"{path}: model card not found") from None
        except (OSError, json.JSONDecodeError) as exc:
            raise CardError(f"{path}: model card unreadable ({exc})") from None
        if not isinstance(data, dict):
            raise CardError(f"{path}: model card is not a JSON object")
        return cls.from_dict(data, origin=str(path))


def card_path_for(model_path: str | os.PathLike[str]) -> Path:
    """``x/model.onnx`` -> ``x/model.json`` (same for ``.engine`` / ``.plan``)."""
    return Path(model_path).with_suffix(".json")


def load_card_for(model_path: str | os.PathLike[str]) -> ModelCard:
    return ModelCard.load(card_path_for(model_path))
