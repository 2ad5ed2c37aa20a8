"""The model and recipe half of :class:`~app.station.session.InspectionSession`.

A mixin so that the session module stays readable: hot model swaps with rollback, and the
recipe the session was loaded from (save, revert, dirty). It uses the session's lock, event
hub, event log, rules and pipelines; it holds no state of its own.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.station import recipe as recipe_io
from app.station.inspection import FrameResult, Rules
from app.station.recipe import Recipe, RecipeError
from engines import ModelCard, load_engine
from engines.protocol import Engine

if TYPE_CHECKING:
    from app.station._session_parts import ModelSlots, Stepper
    from app.station.events import EventKind, EventRecord
    from app.station.pipeline import Pipeline

log = logging.getLogger("app.station.session")


class ModelRecipeMixin:
    """Model swaps and the recipe file, for :class:`InspectionSession`."""

    _lock: threading.RLock
    _step_lock: threading.RLock
    _models: ModelSlots
    _pipeline: Pipeline | None
    _stepper: Stepper | None
    _recipe: Recipe
    _recipe_path: Path | None
    _rules: Rules

    if TYPE_CHECKING:  # provided by the session

        def _emit(self, event: Any, payload: Any) -> None: ...
        def log_event(
            self,
            kind: EventKind,
            message: str,
            *,
            frame_id: int | None = None,
            file: str | None = None,
        ) -> EventRecord: ...
        def set_rules(self, rules: Rules) -> FrameResult | None: ...
        def audit_record(self, action: str, **fields: Any) -> None: ...
        def open_source(self, spec: str, *, options: Any = None) -> None: ...
        @property
        def source_spec(self) -> str: ...

    # -- model -------------------------------------------------------------------------------

    @property
    def model_card(self) -> ModelCard:
        return self._models.engine.card

    @property
    def model_path(self) -> Path:
        return self._models.path

    @property
    def previous_model_path(self) -> Path | None:
        return self._models.previous_path

    def load_model(
        self, path: str | Path, *, reason: str | None = None, comparison: Any = None
    ) -> ModelCard:
        """Load ``path`` and swap it in between two batches, without stopping.

        Raises
        ------
        ModelLoadError
            The model cannot be used; the running engine stays in place.
        """
        engine = load_engine(path)
        old = self._models.engine.card.model_id or self._models.path.name
        self._swap(engine, Path(path).resolve())
        self.audit_record(
            "model.deploy", target=str(Path(path).name), old=old,
            new=engine.card.model_id or engine.card.name,
            detail={"reason": reason, "comparison": comparison},
        )  # fmt: skip
        return engine.card

    def rollback_model(self, *, reason: str | None = None) -> ModelCard:
        """Swap back to the model used before the last swap (a second rollback toggles back).

        Raises
        ------
        ModelLoadError
            There is no previous model.
        """
        with self._lock:
            engine, path = self._models.rollback_target()
        old = self._models.engine.card.model_id or self._models.path.name
        self._swap(engine, path)
        self.audit_record(
            "model.rollback", target=path.name, old=old,
            new=engine.card.model_id or engine.card.name, detail={"reason": reason},
        )  # fmt: skip
        return engine.card

    def _swap(self, engine: Engine, path: Path) -> None:
        with self._lock:
            evicted = self._models.push(engine, path)
            pipelines = [p for p in (self._pipeline,) if p is not None]
            if self._stepper is not None:
                pipelines.append(self._stepper.pipeline)
        for pipeline in pipelines:
            pipeline.swap_engine(engine)
        if evicted is not None:
            # A batch that started before the swap may still be running on the evicted engine.
            with self._step_lock:
                for pipeline in pipelines:
                    with pipeline.engine_idle():
                        pass
                _close_quietly(evicted)
        log.info("model now %s (%s)", path, engine.card.model_id or engine.card.name)
        self.log_event(
            "model", f"model now {path.name} ({engine.card.model_id or engine.card.name})"
        )
        self._emit("model", engine.card)

    # -- recipe ------------------------------------------------------------------------------

    @property
    def recipe(self) -> Recipe:
        return self._recipe

    @property
    def recipe_path(self) -> Path | None:
        return self._recipe_path

    @property
    def dirty(self) -> bool:
        """True when the rules or the model differ from the recipe as last loaded/saved."""
        return self._rules != self._recipe.rules or self._models.path != self._recipe_model()

    def _recipe_model(self) -> Path:
        return Path(self._recipe.model).resolve()

    def use_recipe(self, recipe: Recipe) -> None:
        """Switch to another product's recipe: model, rules, source and the file Save writes.

        The model is loaded first, so a model that fails (ModelLoadError) leaves everything as
        it was; a running line goes on with the new source (restarted) and rules.
        """
        from app.station._session_parts import source_options

        old_name = self._recipe.name
        if Path(recipe.model).resolve() != self._models.path:
            self.load_model(recipe.model, reason=f"recipe {recipe.name} selected")
        self.set_rules(recipe.rules)
        spec = recipe.source.spec or self.source_spec
        self.open_source(spec, options=source_options(recipe))
        with self._lock:
            self._recipe = recipe
            self._recipe_path = recipe.path
        self.log_event("recipe", f"recipe {recipe.name} selected (was {old_name})")
        self.audit_record("recipe.select", target=recipe.name, old=old_name, new=recipe.name)

    def save_recipe(self) -> Recipe:
        """Write the current rules and model into the recipe file (atomic, version + 1).

        Raises
        ------
        RecipeError
            The session has no recipe file to write to.
        """
        if self._recipe_path is None:
            raise RecipeError("this recipe has no file; it cannot be saved")
        # the source chosen at the station (open_source) is saved too, not only rules and model
        source = replace(self._recipe.source, spec=getattr(self, "_spec", self._recipe.source.spec))
        updated = replace(self._recipe, rules=self._rules, model=self._models.path, source=source)
        saved = recipe_io.save_recipe(updated, self._recipe_path)
        with self._lock:
            self._recipe = saved
        self.log_event("recipe", f"recipe saved: {self._recipe_path.name} version {saved.version}")
        self.audit_record(
            "recipe.save", target=self._recipe_path.name, old=updated.version, new=saved.version
        )
        return saved

    def revert_recipe(self) -> Recipe:
        """Back to the rules and model of the recipe as last loaded/saved (re-judges, swaps)."""
        recipe = self._recipe
        if self._models.path != self._recipe_model():
            if self._models.previous_path == self._recipe_model():
                self.rollback_model()
            else:
                self.load_model(recipe.model)
        self.set_rules(recipe.rules)
        return recipe


def _close_quietly(engine: Engine) -> None:
    try:
        engine.close()
    except Exception:  # noqa: BLE001 - a failing close must not stop the rest of a shutdown
        log.exception("closing engine %r failed", engine)
