"""Recipes: the demo loads, round trips, and every bad key gets an error naming file and key."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from app.station import recipe as recipe_mod
from app.station.access import verify_pin
from app.station.inspection import Rules, Zone
from app.station.recipe import (
    CameraSettings,
    Recipe,
    RecipeError,
    SourceSettings,
    demo_recipe_path,
    load_recipe,
    save_recipe,
)
from app.station.settings import Settings, SettingsError, load_settings, save_settings
from engines.card import load_card_for

FULL = """
schema_version = 1
name = "bracket"
version = 4
model = "models/unet.onnx"
pixel_size_mm = 0.02
dataset_dir = "datasets/bracket"
archive_ng = false
retention_rows = 500

[rules]
threshold = 0.35
min_area_px = 12
max_count = 1
max_total_area_px = 300

[[rules.zones]]
name = "seal"
kind = "critical"
polygon = [[0, 0], [10, 0], [10, 10.5]]
min_area_px = 4

[[rules.zones]]
name = "clamp"
kind = "exclude"
polygon = [[20, 20], [30, 20], [30, 30], [20, 30]]

[source]
spec = "folder:frames"
fps = 5
loop = false
mode = "triggered"

[camera]
width = 1024
height = 768
pixel_format = "Mono8"
exposure_us = 1500
gain_db = 2.5
trigger = "hardware"
"""


def write(tmp_path: Path, text: str, name: str = "r.toml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_full_recipe_loads(tmp_path: Path) -> None:
    r = load_recipe(write(tmp_path, FULL))
    assert r.name == "bracket" and r.version == 4 and r.schema_version == 1
    assert r.model == (tmp_path / "models" / "unet.onnx").resolve()
    assert r.pixel_size_mm == 0.02 and r.archive_ng is False and r.retention_rows == 500
    assert r.rules == Rules(
        threshold=0.35,
        min_area_px=12,
        max_count=1,
        max_total_area_px=300,
        zones=(
            Zone("seal", "critical", ((0.0, 0.0), (10.0, 0.0), (10.0, 10.5)), 4),
            Zone("clamp", "exclude", ((20.0, 20.0), (30.0, 20.0), (30.0, 30.0), (20.0, 30.0))),
        ),
    )
    assert r.source == SourceSettings(f"folder:{(tmp_path / 'frames').resolve()}", 5.0, False,
                                      "triggered")  # fmt: skip
    assert r.camera == CameraSettings(1024, 768, "Mono8", 1500.0, 2.5, "hardware")
    assert r.path == tmp_path / "r.toml"


def test_minimal_recipe_defaults(tmp_path: Path) -> None:
    r = load_recipe(write(tmp_path, 'name = "x"\nmodel = "/abs/m.onnx"\n'))
    assert r.model == Path("/abs/m.onnx") and r.rules == Rules() and r.version == 1
    assert r.camera == CameraSettings() and r.source == SourceSettings()
    assert r.pixel_size_mm is None and r.retention_rows is None and r.archive_ng is True


def test_save_round_trip_bumps_version_atomically(tmp_path: Path) -> None:
    r = load_recipe(write(tmp_path, FULL))
    out = tmp_path / "saved" / "bracket.toml"
    saved = save_recipe(r, out)
    assert saved.version == 5 and saved.path == out
    again = load_recipe(out)
    assert again == saved
    text = out.read_text()
    assert 'model = "../models/unet.onnx"' in text and 'spec = "folder:../frames"' in text
    assert not [p for p in out.parent.iterdir() if p.name != "bracket.toml"]  # no temp left
    save_recipe(again, out)
    assert load_recipe(out).version == 6


def test_save_far_away_writes_absolute_paths(tmp_path: Path) -> None:
    r = Recipe(name="x", model=tmp_path / "m.onnx", source=SourceSettings("genicam:SN1@/a.cti"))
    out = tmp_path / "a" / "b" / "c" / "x.toml"
    save_recipe(r, out)
    text = out.read_text()
    assert f'model = "{(tmp_path / "m.onnx").as_posix()}"' in text
    assert 'spec = "genicam:SN1@/a.cti"' in text
    assert load_recipe(out).model == tmp_path / "m.onnx"


def test_failed_save_keeps_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, FULL)
    before = path.read_text()

    def boom(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        save_recipe(load_recipe(path), path)
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.toml"]


def test_demo_recipe() -> None:
    path = demo_recipe_path()
    assert path.name == "demo.toml" and path.is_file()
    r = load_recipe(path)
    assert r.model == (path.parent.parent / "models" / "demo.onnx").resolve()
    assert r.source.spec == f"folder:{(path.parent.parent / 'samples').resolve()}"
    assert r.source.fps == 10.0 and r.source.loop and r.source.mode == "free-run"
    # the demo starts at the operating point its model was validated at
    card = load_card_for(r.model)
    assert (r.rules.threshold, r.rules.min_area_px) == (card.threshold, card.min_area_px)
    assert r.pixel_size_mm == 0.05
    assert not r.dataset_dir.is_absolute()  # lands in the writable data dir


def test_the_dagm_recipe_starts_at_its_model_operating_point() -> None:
    r = load_recipe(demo_recipe_path().with_name("dagm-class1.toml"))
    card = load_card_for(r.model)
    assert card.name.startswith("dagm-class1") and r.source.spec == ""  # images not bundled
    assert (r.rules.threshold, r.rules.min_area_px) == (card.threshold, card.min_area_px)


def test_the_dagm_recipe_runs_a_model_whose_card_reports_the_quality_check() -> None:
    """Issue 11: whatever the recipe runs is the model whose accuracy its card reports (measured
    on the held-out split; tests/training/test_dagm.py re-measures each committed model)."""
    r = load_recipe(demo_recipe_path().with_name("dagm-class1.toml"))
    card = load_card_for(r.model)
    m = card.metrics
    assert m["split"] == "test" and card.precision in ("fp32", "int8")
    assert (m["operating_point"]["recall"], m["operating_point"]["fp"]) == (1.0, 0)
    assert m["dice"] >= 0.85 and m["dice_unet_industrial"] >= 0.97


def test_dataset_path(tmp_path: Path) -> None:
    r = Recipe(name="x", model=Path("/m.onnx"), dataset_dir=Path("datasets/x"))
    assert r.dataset_path(tmp_path) == tmp_path / "datasets" / "x"
    r = replace(r, dataset_dir=tmp_path / "abs")
    assert r.dataset_path("/elsewhere") == tmp_path / "abs"


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        (("[rules]", "[rules]\ntreshold = 0.4"), r"\[rules\]: unknown key 'treshold'"),
        (('name = "bracket"', 'name = "bracket"\ncolour = 1'), "unknown key 'colour'"),
        (("threshold = 0.35", "threshold = 1.5"), r"key 'threshold': must be in \(0, 1\)"),
        (("threshold = 0.35", 'threshold = "high"'), "key 'threshold': must be a number"),
        (("min_area_px = 12", "min_area_px = -1"), "key 'min_area_px': must be >= 0"),
        (("min_area_px = 12", "min_area_px = 12.5"), "key 'min_area_px': must be an integer"),
        (("max_count = 1", "max_count = true"), "key 'max_count': must be an integer"),
        (("archive_ng = false", "archive_ng = 0"), "key 'archive_ng': must be true or false"),
        (
            ("polygon = [[0, 0], [10, 0], [10, 10.5]]", "polygon = [[0, 0], [10, 0]]"),
            r"zones\[0\]: key 'polygon': needs at least 3",
        ),
        (
            ("polygon = [[0, 0], [10, 0], [10, 10.5]]", "polygon = [[0, 0], [10, 0], [1]]"),
            r"point 2 must be \[x, y\]",
        ),
        (('kind = "critical"', 'kind = "vital"'), "key 'kind': must be one of"),
        (('name = "clamp"', 'name = "seal"'), "duplicate zone names"),
        (('mode = "triggered"', 'mode = "burst"'), r"\[source\]: key 'mode'"),
        (("fps = 5", "fps = -1"), "key 'fps': must be >= 0"),
        (('trigger = "hardware"', 'trigger = "on"'), r"\[camera\]: key 'trigger'"),
        (("width = 1024", "width = 0"), "key 'width': must be > 0"),
        (("pixel_size_mm = 0.02", "pixel_size_mm = 0"), "key 'pixel_size_mm': must be > 0"),
        (("retention_rows = 500", "retention_rows = 0"), "key 'retention_rows'"),
        (('model = "models/unet.onnx"', ""), "missing key 'model'"),
        (("schema_version = 1", "schema_version = 99"), "newer than this station"),
        (("[camera]", "[cam]"), "unknown key 'cam'"),
        (("version = 4", "version = 4 4"), "not valid TOML"),
    ],
)
def test_bad_recipes_name_file_and_key(tmp_path: Path, patch: tuple[str, str], match: str) -> None:
    old, new = patch
    assert old in FULL
    path = write(tmp_path, FULL.replace(old, new, 1), name="bad.toml")
    with pytest.raises(RecipeError, match=match) as info:
        load_recipe(path)
    assert str(path) in str(info.value)


def test_section_must_be_a_table(tmp_path: Path) -> None:
    p = write(tmp_path, 'name = "x"\nmodel = "m.onnx"\nrules = 3\n')
    with pytest.raises(RecipeError, match=r"\[rules\]: must be a table"):
        load_recipe(p)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "nope.toml")


def test_migration_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def rename_zone_table(d: dict) -> dict:  # a made-up v1 -> v2 change: [rules] was [judge]
        d["rules"] = d.pop("judge")
        return d

    monkeypatch.setattr(recipe_mod, "RECIPE_SCHEMA_VERSION", 2)
    monkeypatch.setitem(recipe_mod.MIGRATIONS, 1, rename_zone_table)
    p = write(
        tmp_path, 'schema_version = 1\nname = "x"\nmodel = "m.onnx"\n[judge]\nmax_count = 3\n'
    )
    r = load_recipe(p)
    assert r.rules.max_count == 3 and r.schema_version == 2


# -- settings ---------------------------------------------------------------------------------


def test_settings_defaults_follow_home(tmp_path: Path) -> None:
    s = load_settings(environ={"INSPECTION_STATION_HOME": str(tmp_path)})
    # no default PIN: the first engineer login sets one
    assert s == Settings("", tmp_path, tmp_path / "results.sqlite3", tmp_path / "archive")
    assert s.keep_last == 50 and s.recipe_path is None


def test_settings_default_without_home() -> None:
    s = load_settings(Path("/nonexistent/settings.toml"), environ={})
    assert s.data_dir == Path.home() / ".local" / "share" / "inspection-station"


def test_settings_file_and_relative_paths(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "settings.toml").write_text(
        'engineer_pin = "9876"\ndb_path = "db/r.sqlite3"\nkeep_last = 10\n'
        f'archive_dir = "{(tmp_path / "arch").as_posix()}"\nrecipe_path = "/r/x.toml"\n'
    )
    s = load_settings(environ={"INSPECTION_STATION_HOME": str(home)})
    # the clear-text PIN of an older file is migrated to its hash on load
    assert verify_pin("9876", s.engineer_pin) and s.keep_last == 10
    assert "9876" not in (home / "settings.toml").read_text()
    assert s.db_path == home / "db" / "r.sqlite3" and s.archive_dir == tmp_path / "arch"
    assert s.recipe_path == Path("/r/x.toml")
    out = save_settings(s, tmp_path / "copy.toml")
    assert load_settings(out, environ={}) == s


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("pin = '1'", "unknown key 'pin'"),
        ("keep_last = 0", "key 'keep_last': must be >= 1"),
        ("engineer_pin = 1234", "key 'engineer_pin': must be a string"),
        ("engineer_pin = ''", "must not be empty"),
        ("engineer_pin_hash = '1234'", "not an scrypt PIN record"),
        ("schema_version = 7", "newer"),
        ("keep_last = ", "not valid TOML"),
    ],
)
def test_bad_settings(tmp_path: Path, text: str, match: str) -> None:
    p = write(tmp_path, text, name="settings.toml")
    with pytest.raises(SettingsError, match=match) as info:
        load_settings(p, environ={})
    assert str(p) in str(info.value)


def test_a_model_override_with_another_operating_point_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``run --model`` keeps the recipe's rules; the log says when the model's card chose others."""
    from app.station.headless import prepare_recipe

    dagm = demo_recipe_path().with_name("dagm-class1.toml")
    models = demo_recipe_path().parent.parent / "models"
    settings = load_settings(environ={"INSPECTION_STATION_HOME": str(tmp_path)})
    with caplog.at_level("WARNING", logger="app.station.headless"):
        r, _ = prepare_recipe(dagm, source="folder:.", model=models / "dagm-class1-fast.onnx",
                              limit=None, settings=settings)  # fmt: skip
    assert r.rules.threshold == 0.8  # the recipe's rules still judge
    assert "dagm-class1-fast.onnx: its card's operating point (threshold 0.9" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="app.station.headless"):
        prepare_recipe(dagm, source="folder:.", model=models / "dagm-class1-int8.onnx",
                       limit=None, settings=settings)  # fmt: skip
    assert "operating point" not in caplog.text  # same threshold and minimum area
