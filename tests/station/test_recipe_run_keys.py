"""The recipe keys of the operator's screen: ``autostart`` and ``ng_hold_s``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from app.station.recipe import RecipeError, demo_recipe_path, load_recipe, save_recipe


def test_demo_starts_by_itself_and_holds_ng_two_seconds() -> None:
    demo = load_recipe(demo_recipe_path())
    assert demo.autostart is True
    assert demo.ng_hold_s == 2.0


def test_keys_round_trip_and_default_off(tmp_path: Path) -> None:
    demo = load_recipe(demo_recipe_path())
    saved = save_recipe(replace(demo, autostart=False, ng_hold_s=5.5), tmp_path / "r.toml")
    again = load_recipe(saved.path)
    assert (again.autostart, again.ng_hold_s) == (False, 5.5)
    text = (tmp_path / "r.toml").read_text()
    minimal = "\n".join(
        line for line in text.splitlines() if not line.startswith(("autostart", "ng_hold_s"))
    )
    (tmp_path / "m.toml").write_text(minimal)
    plain = load_recipe(tmp_path / "m.toml")
    assert (plain.autostart, plain.ng_hold_s) == (False, 2.0)  # a real line starts on purpose


@pytest.mark.parametrize(
    ("line", "match"), [("ng_hold_s = -1", ">= 0"), ('autostart = "yes"', "autostart")]
)
def test_bad_values_are_refused_with_the_key(tmp_path: Path, line: str, match: str) -> None:
    text = demo_recipe_path().read_text().replace("autostart = true", line)
    path = tmp_path / "recipes" / "bad.toml"
    path.parent.mkdir()
    path.write_text(text)
    with pytest.raises(RecipeError, match=match):
        load_recipe(path)
