"""Fixtures for the plant outputs: free loopback ports and a real station on the demo recipe."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from app.station.recipe import SourceSettings, demo_recipe_path, load_recipe, save_recipe
from app.station.session import InspectionSession
from app.station.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
SAMPLES = ROOT / "resources" / "samples"


def free_port() -> int:
    """A TCP port free on loopback right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_recipes(folder: Path, outputs: dict[str, object] | None = None) -> Path:
    """``demo.toml`` (the bundled demo on resources/samples, triggered, no pacing) and
    ``strict.toml`` (the same with threshold 0.5) in ``folder``; returns demo's path."""
    folder.mkdir(parents=True, exist_ok=True)
    demo = load_recipe(demo_recipe_path())
    source = SourceSettings(spec=f"folder:{SAMPLES}", fps=0.0, loop=False, mode="triggered")
    demo = replace(demo, source=source, outputs=dict(outputs or {}))
    strict = replace(demo, name="strict", rules=replace(demo.rules, threshold=0.5))
    save_recipe(strict, folder / "strict.toml")
    return save_recipe(demo, folder / "demo.toml").path or folder / "demo.toml"


@pytest.fixture
def station(tmp_path: Path) -> Iterator[InspectionSession]:
    """The real session on the demo recipe (a folder of the bundled sample frames)."""
    path = write_recipes(tmp_path / "recipes")
    settings = Settings.defaults(tmp_path / "data")
    session = InspectionSession(load_recipe(path), recipe_path=path, settings=settings)
    try:
        yield session
    finally:
        session.close()
