"""One product's settings as a frozen dataclass tree, stored as TOML (read with tomllib).

Relative paths in a recipe file:

- ``model`` and a ``folder:`` / ``video:`` source path resolve against the recipe file's folder
  (so the bundled demo says ``model = "../models/demo.onnx"``); :func:`load_recipe` returns them
  absolute and :func:`save_recipe` writes them relative again when they sit near the file.
- ``dataset_dir`` resolves against the station's data dir (``Settings.data_dir``), not against the
  recipe: an installed recipe folder may be read-only, and labels must land where the technician
  can write. Use :meth:`Recipe.dataset_path`.

Validation rejects unknown keys, wrong types and out-of-range values with a :class:`RecipeError`
that names the file, the key and the problem. ``schema_version`` is bumped when the layout of the
file changes; :data:`MIGRATIONS` upgrades older files on load.
"""

from __future__ import annotations

import importlib.resources
import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10 is not supported, but be clear
    raise ImportError("the station needs Python >= 3.11 (tomllib)") from None

from app.station._atomic import atomic_write_text
from app.station._recipe_schema import (
    RecipeError,
    check_dict,
    outputs_from_dict,
    rules_from_dict,
    rules_to_dict,
    take,
)
from app.station._toml_layout import dumps_keeping_layout
from app.station.inspection import Rules

__all__ = [
    "MIGRATIONS",
    "RECIPE_SCHEMA_VERSION",
    "CameraSettings",
    "Recipe",
    "RecipeError",
    "SourceSettings",
    "demo_recipe_path",
    "load_recipe",
    "recipe_from_dict",
    "recipe_to_dict",
    "rules_from_dict",
    "rules_to_dict",
    "save_recipe",
]

RECIPE_SCHEMA_VERSION = 1

SourceMode = Literal["free-run", "triggered"]
TriggerMode = Literal["off", "software", "hardware"]

# version N -> function turning a version-N dict into a version-N+1 dict. Version 1 is the first
# published layout, so nothing to upgrade yet; a rename in v2 adds ``1: _v1_to_v2`` here.
MIGRATIONS: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {}


@dataclass(frozen=True)
class SourceSettings:
    """Where frames come from: ``spec`` as ``folder:PATH``, ``genicam:DEVICE[@CTI]``, ``video:X``.

    ``fps`` paces a folder or video (0 = as fast as possible); ``mode="triggered"`` means every
    frame is a part that needs a verdict, so the pipeline never drops one.
    """

    spec: str = ""
    fps: float = 0.0
    loop: bool = False
    mode: SourceMode = "free-run"
    # free-run cameras: alarm when more than this share of acquired frames is not inspected
    drop_alarm_pct: float = 5.0
    # significant bits of the pixels (12-bit camera data in 16-bit words: 12, scaled by 4095);
    # None = the container's depth (uint8: 8, uint16: 16)
    bit_depth: int | None = None


@dataclass(frozen=True)
class CameraSettings:
    """GenICam settings applied on open; ``None`` leaves the camera's own value untouched."""

    width: int | None = None
    height: int | None = None
    pixel_format: str | None = None
    exposure_us: float | None = None
    gain_db: float | None = None
    trigger: TriggerMode | None = None


@dataclass(frozen=True)
class Recipe:
    """One product: model, rules, zones, source, camera, pixel size, dataset, archive policy.

    ``version`` counts saves (``save_recipe`` bumps it; the store records it with every result).
    ``model`` is absolute after :func:`load_recipe`. ``path`` is the file it was loaded from or
    saved to (not part of equality).
    """

    name: str
    model: Path
    rules: Rules = field(default_factory=Rules)
    version: int = 1
    schema_version: int = RECIPE_SCHEMA_VERSION
    pixel_size_mm: float | None = None
    source: SourceSettings = field(default_factory=SourceSettings)
    camera: CameraSettings = field(default_factory=CameraSettings)
    dataset_dir: Path = Path("datasets/default")
    archive_ng: bool = True
    retention_rows: int | None = None
    autostart: bool = False  # the GUI starts the line as soon as the window is up
    ng_hold_s: float = 2.0  # the Run screen holds an NG verdict this long (or until acknowledged)
    max_model_faults: int = 5  # consecutive model faults (NaN map, inference error) before FAULT
    # [outputs] as validated by outputs_from_dict: {"opcua": {...}, "job_deadline_ms": 500, ...}
    outputs: dict[str, Any] = field(default_factory=dict, hash=False)
    path: Path | None = field(default=None, compare=False)

    def dataset_path(self, data_dir: str | os.PathLike[str]) -> Path:
        """The absolute dataset folder: ``dataset_dir`` itself when absolute, else under
        ``data_dir`` (the station's writable data folder, ``Settings.data_dir``)."""
        d = self.dataset_dir.expanduser()
        return d if d.is_absolute() else Path(data_dir) / d

    def with_rules(self, rules: Rules) -> Recipe:
        return replace(self, rules=rules)


def demo_recipe_path() -> Path:
    """The bundled ``resources/recipes/demo.toml``."""
    return Path(str(importlib.resources.files("resources") / "recipes" / "demo.toml"))


# -- paths -------------------------------------------------------------------------------------


def _resolve(text: str, base: Path) -> Path:
    p = Path(text).expanduser()
    return p if p.is_absolute() else (base / p).resolve()


def _relative(path: Path, base: Path) -> str:
    """Relative to ``base`` when the file is inside ``base`` or a sibling folder (like the demo's
    ``../models``), so a recipe folder moves together with its models; else absolute."""
    try:
        rel = os.path.relpath(path, base)
    except ValueError:  # another drive on Windows
        return path.as_posix()
    if Path(rel).parts[:2] == ("..", ".."):
        return path.as_posix()
    return Path(rel).as_posix()


def _spec_paths(spec: str, fn: Callable[[str], str]) -> str:
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in ("folder", "video") or not rest or rest.isdigit():
        return spec  # genicam ids and camera indices are not paths
    return f"{kind}:{fn(rest)}"


# -- dict <-> dataclasses -----------------------------------------------------------------------


def _source_from(data: Any, where: str) -> SourceSettings:
    d = check_dict(data, where, {"spec", "fps", "loop", "mode", "drop_alarm_pct", "bit_depth"})
    spec = take(d, "spec", str, where, default="")
    fps = take(d, "fps", float, where, default=0.0, check=(lambda v: v >= 0, ">= 0"))
    loop = take(d, "loop", bool, where, default=False)
    mode = take(d, "mode", str, where, default="free-run", choices=("free-run", "triggered"))
    drop_pct = take(
        d, "drop_alarm_pct", float, where, default=5.0, check=(lambda v: 0 <= v <= 100, "0..100")
    )
    depths = (8, 10, 12, 14, 16)
    bit_depth = take(
        d, "bit_depth", int, where, check=(lambda v: v in depths, "one of 8, 10, 12, 14, 16")
    )
    return SourceSettings(
        spec=spec, fps=fps, loop=loop, mode=mode, drop_alarm_pct=drop_pct, bit_depth=bit_depth
    )


def _camera_from(data: Any, where: str) -> CameraSettings:
    keys = {"width", "height", "pixel_format", "exposure_us", "gain_db", "trigger"}
    d = check_dict(data, where, keys)
    positive = (lambda v: v > 0, "> 0")
    return CameraSettings(
        width=take(d, "width", int, where, check=positive),
        height=take(d, "height", int, where, check=positive),
        pixel_format=take(d, "pixel_format", str, where),
        exposure_us=take(d, "exposure_us", float, where, check=positive),
        gain_db=take(d, "gain_db", float, where),
        trigger=take(d, "trigger", str, where, choices=("off", "software", "hardware")),
    )


def _migrate(data: dict[str, Any], origin: str) -> dict[str, Any]:
    version = data.get("schema_version", RECIPE_SCHEMA_VERSION)
    if type(version) is not int or version < 1:
        raise RecipeError(
            f"{origin}: key 'schema_version': must be an integer >= 1, not {version!r}"
        )
    if version > RECIPE_SCHEMA_VERSION:
        raise RecipeError(
            f"{origin}: key 'schema_version': {version} is newer than this station "
            f"understands ({RECIPE_SCHEMA_VERSION}); update the station"
        )
    while version < RECIPE_SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            raise RecipeError(f"{origin}: no migration from recipe schema {version}")
        data = step(dict(data))
        version += 1
        data["schema_version"] = version
    return data


_TOP_KEYS = {
    "schema_version",
    "name",
    "version",
    "model",
    "pixel_size_mm",
    "rules",
    "source",
    "camera",
    "dataset_dir",
    "archive_ng",
    "retention_rows",
    "outputs",
    "autostart",
    "ng_hold_s",
    "max_model_faults",
}


def recipe_from_dict(data: dict[str, Any], *, base_dir: Path, origin: str = "<recipe>") -> Recipe:
    """Validate a parsed recipe and build the :class:`Recipe` (paths resolved against
    ``base_dir``). Raises :class:`RecipeError` naming ``origin``, the key and the problem."""
    data = _migrate(dict(data), origin)
    where = origin
    d = check_dict(data, where, _TOP_KEYS)
    nonempty = (lambda v: bool(v.strip()), "not empty")
    positive = (lambda v: v > 0, "> 0")
    name = take(d, "name", str, where, required=True, check=nonempty)
    model_text = take(d, "model", str, where, required=True, check=nonempty)
    source = _source_from(d.get("source", {}), f"{where}: [source]")
    base = base_dir.resolve()
    source = replace(source, spec=_spec_paths(source.spec, lambda p: str(_resolve(p, base))))
    return Recipe(
        name=name,
        model=_resolve(model_text, base),
        rules=rules_from_dict(d.get("rules", {}), f"{where}: [rules]"),
        version=take(d, "version", int, where, default=1, check=(lambda v: v >= 0, ">= 0")),
        schema_version=RECIPE_SCHEMA_VERSION,
        pixel_size_mm=take(d, "pixel_size_mm", float, where, check=positive),
        source=source,
        camera=_camera_from(d.get("camera", {}), f"{where}: [camera]"),
        dataset_dir=Path(
            take(d, "dataset_dir", str, where, default="datasets/default", check=nonempty)
        ),
        archive_ng=take(d, "archive_ng", bool, where, default=True),
        retention_rows=take(d, "retention_rows", int, where, check=positive),
        outputs=outputs_from_dict(d.get("outputs", {}), f"{where}: [outputs]"),
        autostart=take(d, "autostart", bool, where, default=False),
        ng_hold_s=take(d, "ng_hold_s", float, where, default=2.0, check=(lambda v: v >= 0, ">= 0")),
        max_model_faults=take(d, "max_model_faults", int, where, default=5, check=positive),
    )


def recipe_to_dict(recipe: Recipe, *, base_dir: Path) -> dict[str, Any]:
    """The TOML-ready dict; ``None`` values are left out (TOML has no null)."""
    base = base_dir.resolve()
    source = {
        "spec": _spec_paths(recipe.source.spec, lambda p: _relative(Path(p), base)),
        "fps": float(recipe.source.fps),
        "loop": recipe.source.loop,
        "mode": recipe.source.mode,
    }
    if recipe.source.drop_alarm_pct != 5.0:
        source["drop_alarm_pct"] = float(recipe.source.drop_alarm_pct)
    if recipe.source.bit_depth is not None:
        source["bit_depth"] = recipe.source.bit_depth
    cam = recipe.camera
    camera = {
        k: v
        for k, v in (
            ("width", cam.width),
            ("height", cam.height),
            ("pixel_format", cam.pixel_format),
            ("exposure_us", cam.exposure_us),
            ("gain_db", cam.gain_db),
            ("trigger", cam.trigger),
        )
        if v is not None
    }
    out: dict[str, Any] = {
        "schema_version": RECIPE_SCHEMA_VERSION,
        "name": recipe.name,
        "version": recipe.version,
        "model": _relative(Path(recipe.model), base),
        "dataset_dir": recipe.dataset_dir.as_posix(),
        "archive_ng": recipe.archive_ng,
    }
    if recipe.pixel_size_mm is not None:
        out["pixel_size_mm"] = float(recipe.pixel_size_mm)
    if recipe.retention_rows is not None:
        out["retention_rows"] = recipe.retention_rows
    if recipe.autostart:
        out["autostart"] = True
    if recipe.ng_hold_s != 2.0:
        out["ng_hold_s"] = float(recipe.ng_hold_s)
    if recipe.max_model_faults != 5:
        out["max_model_faults"] = recipe.max_model_faults
    out["rules"] = rules_to_dict(recipe.rules)
    out["source"] = source
    if camera:
        out["camera"] = camera
    if recipe.outputs:
        out["outputs"] = {
            k: dict(v) if isinstance(v, dict) else v for k, v in recipe.outputs.items()
        }
    return out


# -- files --------------------------------------------------------------------------------------


def load_recipe(path: str | os.PathLike[str]) -> Recipe:
    """Read and validate a recipe file.

    Raises
    ------
    RecipeError
        The file is missing, not valid TOML, or a key is unknown, mistyped or out of range; the
        message names the file and the key.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{path}: recipe file unreadable ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: not valid TOML ({exc})") from None
    recipe = recipe_from_dict(data, base_dir=path.parent, origin=str(path))
    return replace(recipe, path=path)


def save_recipe(recipe: Recipe, path: str | os.PathLike[str]) -> Recipe:
    """Write ``recipe`` to ``path`` atomically with its version bumped by one.

    The file is written to a temporary file in the same folder, flushed and fsynced, then renamed
    over the old one, so a crash or a full disk never leaves a half-written recipe.

    Returns
    -------
    Recipe
        The saved recipe (``version + 1``, ``path`` set).
    """
    path = Path(path)
    saved = replace(recipe, version=recipe.version + 1, path=path)
    # over an existing file: its comments and layout are kept (tomlkit)
    text = dumps_keeping_layout(recipe_to_dict(saved, base_dir=path.parent), path)
    atomic_write_text(path, text)
    return saved
