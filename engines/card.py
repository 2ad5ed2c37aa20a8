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
# Overlay colours of classes 1.. when a card names none (distinct on grey frames, colour-blind
# friendlier order first: Okabe-Ito, then a few more).
DEFAULT_CLASS_COLORS = (
    "#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7", "#ff00ff",
    "#00ffff", "#ff4040", "#80ff00", "#8080ff",
)  # fmt: skip
CLASS_OUTPUT_NAME = "class_probability"
_NEW_KEYS = {"class_colors": (), "class_output_name": ""}  # left out of a card when default
Normalisation = Literal["unit"]  # pixel / (2**bits - 1) -> [0, 1]; standardisation is in the graph


class CardError(ValueError):
    """A model card is missing, unreadable or inconsistent (the message names the file)."""


@dataclass(frozen=True)
class ModelCard:
    """Everything needed to feed a model and read its output.

    The network takes float32 ``N x input_height x input_width x channels`` in [0, 1] and returns
    ``N x H x W x 1`` defect probabilities. Frames are first resized by ``frame_scale`` (e.g. 0.5
    for a model trained on DAGM downscaled 2x), then tiled to the input size.

    A multi-class model (``class_output_name`` set, two or more ``class_names``) has a second
    output, ``N x H x W x K``: the probability of each class given a defect (the K channels sum
    to 1), channel k for ``class_names[k]``; ``probability`` stays 1 - p(background), so every
    single-class path reads it unchanged. ``class_colors`` are ``#rrggbb`` overlay colours, one
    per class (empty: :data:`DEFAULT_CLASS_COLORS`, see :meth:`color_of`).
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
    class_colors: tuple[str, ...] = ()
    class_output_name: str = ""  # "" = no class output (a one-class model)
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
        problems += self._class_problems()
        if not isinstance(self.golden, dict):
            problems.append(f"golden must be a JSON object, not {type(self.golden).__name__}")
        if problems:
            raise CardError("; ".join(problems))

    def _class_problems(self) -> list[str]:
        problems = []
        if not self.class_names or any(not str(n).strip() for n in self.class_names):
            problems.append(f"class_names {list(self.class_names)} must be non-empty names")
        elif len(set(self.class_names)) != len(self.class_names):
            problems.append(f"class_names {list(self.class_names)} repeat a name")
        if self.class_colors and len(self.class_colors) != len(self.class_names):
            problems.append(
                f"{len(self.class_colors)} class_colors for {len(self.class_names)} class_names"
            )
        bad = [c for c in self.class_colors if not _is_colour(c)]
        if bad:
            problems.append(f"class_colors {bad} are not #rrggbb")
        if self.class_output_name and len(self.class_names) < 2:
            problems.append("class_output_name is set but class_names has fewer than 2 classes")
        if self.class_output_name == self.output_name:
            problems.append(f"class_output_name equals output_name {self.output_name!r}")
        return problems

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.input_height, self.input_width, self.channels)

    @property
    def multiclass(self) -> bool:
        """The model has a class output (one channel per ``class_names`` entry)."""
        return bool(self.class_output_name)

    def color_of(self, index: int) -> str:
        """Overlay colour (``#rrggbb``) of class ``index`` (0-based into ``class_names``)."""
        if self.class_colors:
            return self.class_colors[index]
        return DEFAULT_CLASS_COLORS[index % len(DEFAULT_CLASS_COLORS)]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["class_names"] = list(self.class_names)
        d["class_colors"] = list(self.class_colors)
        # A one-class card stays readable by stations that predate classes (no unknown keys).
        for key, default in _NEW_KEYS.items():
            if d[key] == default or d[key] == list(default or []):
                del d[key]
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
        for key in ("class_names", "class_colors"):
            if key in data:
                if not isinstance(data[key], list | tuple):
                    raise CardError(f"{origin}: {key} must be a list of strings")
                data[key] = tuple(data[key])
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


def _is_colour(value: object) -> bool:
    if not (isinstance(value, str) and len(value) == 7 and value.startswith("#")):
        return False
    try:
        int(value[1:], 16)
    except ValueError:
        return False
    return True


def card_path_for(model_path: str | os.PathLike[str]) -> Path:
    """``x/model.onnx`` -> ``x/model.json`` (same for ``.engine`` / ``.plan``)."""
    return Path(model_path).with_suffix(".json")


def load_card_for(model_path: str | os.PathLike[str]) -> ModelCard:
    return ModelCard.load(card_path_for(model_path))
