"""GUI fixtures: a tiny real ONNX model, generated frames, and a main-window factory.

The model is ``sigmoid(K * (x - 0.5))`` on a 1-channel 32 x 32 input: bright pixels are defects,
with a probability that rises smoothly with brightness, so moving the threshold really changes
which blobs count. Built with onnx.helper, its card written with engines.card.ModelCard: it runs
through exactly the same load_engine / predict path as the demo model.
"""

from __future__ import annotations

import dataclasses
import gc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from app.station.inspection import Rules
from app.station.recipe import Recipe, SourceSettings
from app.station.settings import Settings
from tests.tiny_models import sigmoid_model
from tests.ui.setup_panels import make_panels  # noqa: F401 (fixture: the setup panels alone)


@pytest.fixture(autouse=True)
def _delete_widgets_now() -> Iterator[None]:
    """Flush the deleteLater() of this test's widgets before the next test starts.

    pytest-qt closes widgets with deleteLater() and nothing runs those deletions until some later
    test spins an event loop; pyqtgraph items then die in the middle of that test (test_live.py
    counts references to True around its signals and sees them drop).
    """
    yield
    from PySide6.QtCore import QEvent
    from PySide6.QtWidgets import QApplication

    if QApplication.instance() is not None:
        QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()


TILE = 32
K = 12.0  # steepness: background 0.2 -> p 0.03, blob 0.75 -> p 0.95, faint blob 0.6 -> p 0.77
FRAME = 96


def build_model(path: Path) -> Path:
    return sigmoid_model(path, tile=TILE, gain=K)


def make_frame(rng: np.random.Generator, blob: float | None, radius: int = 7) -> np.ndarray:
    """A grey frame (0.2) with noise and, when ``blob`` is given, a disc of that brightness."""
    img = np.full((FRAME, FRAME), 0.2, np.float32) + rng.normal(0, 0.01, (FRAME, FRAME))
    if blob is not None:
        cy, cx = rng.integers(radius + 4, FRAME - radius - 4, size=2)
        cv2.circle(img, (int(cx), int(cy)), radius, float(blob), -1)
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def write_frames(folder: Path, n: int, *, seed: int = 0, masks: bool = False) -> Path:
    """``n`` frames; every other one has a blob (brightness alternating 0.75 / 0.6).

    With ``masks`` the images+masks layout (``images/``, ``masks/``) for validation.
    """
    rng = np.random.default_rng(seed)
    images = folder / "images" if masks else folder
    images.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        blob = (0.75 if i % 4 == 1 else 0.6) if i % 2 else None
        img = make_frame(rng, blob)
        cv2.imwrite(str(images / f"{i:04d}.png"), img)
        if masks and blob is not None:
            (folder / "masks").mkdir(exist_ok=True)
            cv2.imwrite(
                str(folder / "masks" / f"{i:04d}.png"), np.where(img > 120, 255, 0).astype(np.uint8)
            )
    return folder


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture
def frames_dir(tmp_path: Path) -> Path:
    return write_frames(tmp_path / "frames", 8)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # No PIN is set by default; the tests unlock with this one (hashed by EngineerAccess).
    return dataclasses.replace(Settings.defaults(tmp_path / "data"), engineer_pin="1234")


@pytest.fixture
def recipe(tmp_path: Path, tiny_model: Path, frames_dir: Path) -> Recipe:
    return Recipe(
        name="ui-test",
        model=tiny_model,
        rules=Rules(threshold=0.5, min_area_px=10, max_count=0),
        pixel_size_mm=0.05,
        source=SourceSettings(spec=f"folder:{frames_dir}", fps=60.0, loop=True),
        dataset_dir=tmp_path / "dataset",
        archive_ng=False,
        path=tmp_path / "recipe.toml",
    )


@pytest.fixture
def make_main_window(
    qtbot: Any, recipe: Recipe, settings: Settings
) -> Iterator[Callable[..., Any]]:
    """``make_main_window(unlocked=False, **recipe_changes) -> MainWindow`` on the tiny model.

    Teardown closes the window, detaches the bridge and closes the session (joins its threads),
    and fails the test if a session thread is still alive.
    """
    from dataclasses import replace

    from app.station.recipe import save_recipe
    from app.station.session import InspectionSession
    from app.ui.bridge import SessionBridge
    from app.ui.main_window import MainWindow

    made: list[tuple[Any, Any, Any]] = []

    def factory(*, unlocked: bool = False, **changes: Any) -> MainWindow:
        r = replace(recipe, **changes)
        r = save_recipe(r, r.path)  # a real file, so "save to recipe" has somewhere to write
        session = InspectionSession(r, recipe_path=r.path, settings=settings)
        bridge = SessionBridge(session)
        window = MainWindow(session, bridge, settings)
        # pytest-qt closes the window first at teardown, maybe with the line running: no question
        window.ask_before_close = False
        qtbot.addWidget(window)
        made.append((session, bridge, window))
        if unlocked:
            assert window.lock.unlock(settings.engineer_pin)
        window.show()
        return window

    yield factory
    for session, bridge, window in made:
        from shiboken6 import isValid

        if isValid(window):  # pytest-qt may have closed and deleted it already
            window.close()
        bridge.detach()
        session.close()
        assert not session.running
