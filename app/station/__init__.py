"""The headless inspection core: frames, sources, pipeline, rules, results store, recipes.

No Qt here, ever (an import-linter contract checks it). The public names are re-exported from
their modules lazily (PEP 562), so ``import app.station.frame`` stays cheap and does not drag in
OpenCV, SQLite or the engines; ``from app.station import InspectionSession`` works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.station.frame import Frame
    from app.station.inspection import Defect, FrameResult, Inspection, Rules, Verdict, Zone
    from app.station.inspector import binary_mask, judge
    from app.station.pipeline import FrameQueue, Pipeline
    from app.station.recipe import (
        CameraSettings,
        Recipe,
        RecipeError,
        SourceSettings,
        demo_recipe_path,
        load_recipe,
        save_recipe,
    )
    from app.station.session import InspectionSession
    from app.station.settings import Settings, SettingsError, load_settings
    from app.station.sources import (
        Source,
        SourceError,
        SourceOptions,
        SourceStats,
        list_devices,
        open_source,
    )
    from app.station.stats import PipelineStats, SessionStats
    from app.station.store import ResultsStore, StoreError

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    "Frame": "app.station.frame",
    "Defect": "app.station.inspection",
    "FrameResult": "app.station.inspection",
    "Inspection": "app.station.inspection",
    "Rules": "app.station.inspection",
    "Verdict": "app.station.inspection",
    "Zone": "app.station.inspection",
    "binary_mask": "app.station.inspector",
    "judge": "app.station.inspector",
    "FrameQueue": "app.station.pipeline",
    "Pipeline": "app.station.pipeline",
    "CameraSettings": "app.station.recipe",
    "Recipe": "app.station.recipe",
    "RecipeError": "app.station.recipe",
    "SourceSettings": "app.station.recipe",
    "demo_recipe_path": "app.station.recipe",
    "load_recipe": "app.station.recipe",
    "save_recipe": "app.station.recipe",
    "InspectionSession": "app.station.session",
    "Settings": "app.station.settings",
    "SettingsError": "app.station.settings",
    "load_settings": "app.station.settings",
    "Source": "app.station.sources",
    "SourceError": "app.station.sources",
    "SourceOptions": "app.station.sources",
    "SourceStats": "app.station.sources",
    "list_devices": "app.station.sources",
    "open_source": "app.station.sources",
    "PipelineStats": "app.station.stats",
    "SessionStats": "app.station.stats",
    "ResultsStore": "app.station.store",
    "StoreError": "app.station.store",
}

__all__ = [
    "CameraSettings",
    "Defect",
    "Frame",
    "FrameQueue",
    "FrameResult",
    "Inspection",
    "InspectionSession",
    "Pipeline",
    "PipelineStats",
    "Recipe",
    "RecipeError",
    "ResultsStore",
    "Rules",
    "SessionStats",
    "Settings",
    "SettingsError",
    "Source",
    "SourceError",
    "SourceOptions",
    "SourceSettings",
    "SourceStats",
    "StoreError",
    "Verdict",
    "Zone",
    "binary_mask",
    "demo_recipe_path",
    "judge",
    "list_devices",
    "load_recipe",
    "load_settings",
    "open_source",
    "save_recipe",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'app.station' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
