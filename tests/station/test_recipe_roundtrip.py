"""Recipes round-trip: saving keeps the file's comments and layout and stores the source;
the recent-recipes list behind File → Open recipe."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from app.station.inspection import Rules, Zone
from app.station.recent_recipes import RecentRecipes
from app.station.recipe import demo_recipe_path, load_recipe, save_recipe

DEMO = demo_recipe_path()


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """The bundled demo recipe (with its comments) and what it points at, copied."""
    root = tmp_path / "resources"
    shutil.copytree(DEMO.parent.parent / "models", root / "models")
    shutil.copytree(DEMO.parent.parent / "samples", root / "samples")
    (root / "recipes").mkdir()
    return Path(shutil.copy(DEMO, root / "recipes" / "demo.toml"))


def test_saving_keeps_comments_and_layout_and_stores_the_source(demo: Path) -> None:
    before = demo.read_text(encoding="utf-8")
    comments = [line for line in before.splitlines() if line.lstrip().startswith("#")]
    assert len(comments) >= 5
    recipe = load_recipe(demo)
    zone = Zone("seal", "critical", ((0.0, 0.0), (10.0, 0.0), (10.0, 10.0)), min_area_px=4)
    changed = replace(
        recipe,
        rules=Rules(threshold=0.75, min_area_px=6000, max_count=1, zones=(zone,)),
        source=replace(recipe.source, spec=f"folder:{demo.parent.parent / 'samples'}", fps=5.0),
    )
    saved = save_recipe(changed, demo)
    after = demo.read_text(encoding="utf-8")
    for line in comments:
        assert line in after, f"comment lost: {line}"
    # the keys keep their order: model before pixel_size_mm before [rules] before [source]
    order = [after.index(k) for k in ("\nmodel =", "\npixel_size_mm", "[rules]", "[source]")]
    assert order == sorted(order)
    again = load_recipe(demo)
    assert again == saved and again.version == recipe.version + 1
    assert again.rules.min_area_px == 6000 and again.rules.zones == (zone,)
    assert again.source.spec == f"folder:{demo.parent.parent / 'samples'}"
    assert 'spec = "folder:../samples"' in after  # written relative, as the file had it

    # an unchanged save changes nothing but the version line
    save_recipe(again, demo)
    diff = [
        (a, b)
        for a, b in zip(after.splitlines(), demo.read_text().splitlines(), strict=True)
        if a != b
    ]
    assert diff == [(f"version = {again.version}", f"version = {again.version + 1}")]


def test_a_removed_limit_leaves_the_file_and_a_broken_file_is_written_fresh(
    demo: Path,
) -> None:
    recipe = load_recipe(demo)
    save_recipe(replace(recipe, rules=replace(recipe.rules, max_total_area_px=900)), demo)
    assert "max_total_area_px = 900" in demo.read_text()
    save_recipe(load_recipe(demo), demo)  # unchanged: stays
    limited = load_recipe(demo)
    save_recipe(replace(limited, rules=replace(limited.rules, max_total_area_px=None)), demo)
    assert "max_total_area_px" not in demo.read_text()

    demo.write_text("this is [ not toml", encoding="utf-8")
    fresh = save_recipe(recipe, demo)
    assert load_recipe(demo) == fresh


def test_recent_recipes_newest_first_dropping_missing(tmp_path: Path) -> None:
    files = []
    for name in ("a", "b", "c"):
        f = tmp_path / f"{name}.toml"
        f.write_text("")
        files.append(f)
    recent = RecentRecipes(tmp_path / "data", limit=2)
    assert recent.paths() == []
    for f in files:
        recent.add(f)
    assert recent.paths() == [files[2].resolve(), files[1].resolve()]  # limit 2
    recent.add(files[1])
    assert RecentRecipes(tmp_path / "data").paths()[0] == files[1].resolve()  # persisted
    files[2].unlink()
    assert recent.paths() == [files[1].resolve()]
    recent.remove(files[1])
    assert recent.paths() == []
    recent.file.write_text("{not json", encoding="utf-8")
    assert recent.paths() == []  # a damaged list is an empty one, not a crash
    recent.add(files[0])
    assert recent.paths() == [files[0].resolve()]
