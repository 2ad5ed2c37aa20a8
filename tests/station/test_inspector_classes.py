"""Defect classes in the judge, the recipe and the store: hand-built maps, exact expectations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from app.station.frame import Frame
from app.station.inspection import ClassRules, FrameResult, Rules
from app.station.inspector import binary_mask, blob_classes, class_mask, judge
from app.station.recipe import Recipe, RecipeError, load_recipe, rules_from_dict, save_recipe
from app.station.store import ResultsStore

NAMES = ("crack", "stain")


@pytest.fixture
def maps() -> tuple[np.ndarray, np.ndarray]:
    """Three blobs on a 20x30 map: a crack (12 px), a stain (4 px) and a second crack (2 px)."""
    p = np.zeros((20, 30), np.float32)
    cls = np.zeros((20, 30, 2), np.float32)
    cls[..., 1] = 1.0  # background pixels lean "stain": only blob pixels may matter
    p[2:5, 3:7] = 0.9
    cls[2:5, 3:7] = (0.8, 0.2)
    cls[2, 3] = (0.1, 0.9)  # one dissenting pixel: the blob's mean still says crack
    p[10:12, 20:22] = 0.7
    cls[10:12, 20:22] = (0.3, 0.7)
    p[15, 5:7] = 0.8
    cls[15, 5:7] = (0.6, 0.4)
    return p, cls


def test_every_blob_gets_its_class_and_confidence(maps: tuple[np.ndarray, np.ndarray]) -> None:
    p, cls = maps
    ins = judge(p, Rules(max_count=5), class_prob=cls, class_names=NAMES)
    assert ins.verdict == "PASS"
    assert [(d.area_px, d.class_name) for d in ins.defects] == [
        (12, "crack"), (4, "stain"), (2, "crack"),
    ]  # fmt: skip
    assert ins.defects[0].class_confidence == pytest.approx((11 * 0.8 + 0.1) / 12)
    assert ins.defects[1].class_confidence == pytest.approx(0.7)


def test_without_a_class_map_blobs_have_no_class(maps: tuple[np.ndarray, np.ndarray]) -> None:
    p, _ = maps
    ins = judge(p, Rules(max_count=5))
    assert {(d.class_name, d.class_confidence) for d in ins.defects} == {(None, None)}


def test_uint8_class_maps_read_as_probabilities(maps: tuple[np.ndarray, np.ndarray]) -> None:
    p, cls = maps
    q = np.round(cls * 255).astype(np.uint8)
    ins = judge(p, Rules(max_count=5), class_prob=q, class_names=NAMES)
    assert [d.class_name for d in ins.defects] == ["crack", "stain", "crack"]
    assert ins.defects[1].class_confidence == pytest.approx(0.7, abs=1 / 255)


def test_per_class_count_and_area_with_global_fallback(
    maps: tuple[np.ndarray, np.ndarray],
) -> None:
    p, cls = maps
    kw = {"class_prob": cls, "class_names": NAMES}
    # Cracks may number 2; the stain falls back to the global max_count of 0.
    rules = Rules(max_count=0, classes=(ClassRules("crack", max_count=2),))
    assert judge(p, rules, **kw).reasons == ("1 defect > max 0",)
    rules = Rules(max_count=5, classes=(ClassRules("crack", max_count=1),))
    assert judge(p, rules, **kw).reasons == ("2 crack defects > max 1",)
    rules = Rules(
        max_count=5,
        max_total_area_px=5,
        classes=(ClassRules("crack", max_total_area_px=13),),
    )
    # Cracks (14 px) break their own limit; the global total then sees the stain only (4 px).
    assert judge(p, rules, **kw).reasons == ("total crack area 14 px > max 13 px",)


def test_per_class_min_area_and_binary_mask(maps: tuple[np.ndarray, np.ndarray]) -> None:
    p, cls = maps
    rules = Rules(max_count=5, min_area_px=3, classes=(ClassRules("stain", min_area_px=5),))
    ins = judge(p, rules, class_prob=cls, class_names=NAMES)
    assert [(d.area_px, d.class_name) for d in ins.defects] == [(12, "crack")]
    mask = binary_mask(p, rules, defects_only=True, class_prob=cls, class_names=NAMES)
    assert int((mask == 255).sum()) == 12
    # A class min area below the global one lets small blobs of that class count.
    rules = Rules(max_count=5, min_area_px=3, classes=(ClassRules("crack", min_area_px=1),))
    areas = [d.area_px for d in judge(p, rules, class_prob=cls, class_names=NAMES).defects]
    assert areas == [12, 4, 2]


def test_always_ng_class(maps: tuple[np.ndarray, np.ndarray]) -> None:
    p, cls = maps
    rules = Rules(max_count=5, classes=(ClassRules("stain", always_ng=True),))
    ins = judge(p, rules, class_prob=cls, class_names=NAMES)
    assert ins.verdict == "NG" and ins.reasons == ("1 stain defect: class always NG",)
    # ... but only for defects the rules count (the stain is below this class's min area).
    rules = Rules(max_count=5, classes=(ClassRules("stain", always_ng=True, min_area_px=5),))
    assert judge(p, rules, class_prob=cls, class_names=NAMES).verdict == "PASS"


def test_class_mask_paints_each_blob_in_its_class(maps: tuple[np.ndarray, np.ndarray]) -> None:
    p, cls = maps
    painted = class_mask(p, Rules(max_count=5), cls, NAMES)
    assert painted[2, 3] == 1 and painted[3, 4] == 1  # the dissenting pixel takes its blob's
    assert painted[10, 20] == 2 and painted[15, 5] == 1 and painted[0, 0] == 0
    assert int((painted > 0).sum()) == 18


def test_bad_class_maps_are_refused(maps: tuple[np.ndarray, np.ndarray]) -> None:
    p, cls = maps
    with pytest.raises(ValueError, match="one channel per class name"):
        judge(p, Rules(), class_prob=cls, class_names=("a", "b", "c"))
    with pytest.raises(ValueError, match="class_names"):
        judge(p, Rules(), class_prob=cls)


def test_nan_class_probabilities_never_elect_a_class() -> None:
    labels = np.zeros((4, 4), np.int32)
    labels[1:3, 1:3] = 1
    cls = np.full((4, 4, 2), np.nan, np.float32)
    got = blob_classes(labels, 2, cls, NAMES)
    assert got.name(1) is None


RECIPE_RULES = """
threshold = 0.4
max_count = 0

[classes.crack]
always_ng = true

[classes.stain]
min_area_px = 50
max_count = 2
max_total_area_px = 500
"""


def test_recipe_class_rules_round_trip(tmp_path: Path) -> None:
    import tomllib

    rules = rules_from_dict(tomllib.loads(RECIPE_RULES), "r.toml: [rules]")
    assert rules.classes == (
        ClassRules("crack", always_ng=True),
        ClassRules("stain", min_area_px=50, max_count=2, max_total_area_px=500),
    )
    saved = save_recipe(Recipe(name="p", model=Path("m.onnx"), rules=rules), tmp_path / "p.toml")
    text = (tmp_path / "p.toml").read_text(encoding="utf-8")
    assert "[rules.classes.crack]" in text and "always_ng = true" in text
    assert load_recipe(saved.path).rules == rules  # type: ignore[arg-type]


def test_recipe_class_rule_errors_name_the_key() -> None:
    with pytest.raises(RecipeError, match=r"\[rules\.classes\.crack\]: unknown key 'max_cont'"):
        rules_from_dict({"classes": {"crack": {"max_cont": 1}}}, "r.toml: [rules]")
    with pytest.raises(RecipeError, match="'always_ng': must be true or false"):
        rules_from_dict({"classes": {"crack": {"always_ng": 1}}}, "r.toml: [rules]")
    with pytest.raises(RecipeError, match="'min_area_px': must be >= 0"):
        rules_from_dict({"classes": {"crack": {"min_area_px": -1}}}, "r.toml: [rules]")


def test_store_keeps_classes_filters_and_paretos_by_class(
    tmp_path: Path, maps: tuple[np.ndarray, np.ndarray]
) -> None:
    p, cls = maps
    rules = Rules(max_count=0)
    results = []
    for i, with_classes in enumerate((True, False)):
        kw = {"class_prob": cls, "class_names": NAMES} if with_classes else {}
        ins = judge(p, rules, frame_id=i, timestamp=1000.0 + i, **kw)
        frame = Frame(np.zeros((20, 30), np.uint8), i, 1000.0 + i, "test")
        results.append(FrameResult(frame=frame, prob=p, inspection=ins))
    with ResultsStore(tmp_path / "r.db", tmp_path / "archive") as store:
        for r in results:
            store.add(r)
        store.flush()
        rows = store.recent()
        classed = next(r for r in rows if r.frame_id == 0)
        assert [(d.class_name, d.class_confidence) for d in classed.defects] == [
            (d.class_name, pytest.approx(d.class_confidence)) for d in results[0].inspection.defects
        ]
        assert [r.frame_id for r in store.recent(defect_class="stain")] == [0]
        assert store.recent(defect_class="scratch") == []
        assert store.defect_pareto("class") == [("(no class)", 3), ("crack", 2), ("stain", 1)]


def test_a_v2_database_gains_the_class_columns(tmp_path: Path) -> None:
    from app.station import _store_schema as sch

    db = tmp_path / "old.db"
    conn = sqlite3.connect(db, isolation_level=None)
    v2 = sch.SCHEMA.replace(
        "zone          TEXT,\n    class_name    TEXT,               -- defect class (multi-class "
        "model), else NULL\n    class_confidence REAL             -- its mean class probability "
        "over the blob, else NULL",
        "zone          TEXT",
    )
    assert "class_name" not in v2  # the v2 layout really is without the columns
    conn.executescript(v2 + "\nPRAGMA user_version = 2;")
    conn.execute(
        "INSERT INTO inspections (frame_id, source, timestamp, verdict, reasons, n_defects, "
        "total_area_px, model_id, recipe_version, threshold, min_area_px, rules, timings) "
        "VALUES (1, 's', 5.0, 'NG', '[]', 1, 4, 'm', 1, 0.5, 0, '{}', '{}')"
    )
    conn.execute(
        "INSERT INTO defects (inspection_id, area_px, area_mm2, bbox, centroid, max_prob, "
        "mean_prob, zone) VALUES (1, 4, NULL, '[1, 2, 2, 2]', '[2.0, 3.0]', 0.9, 0.8, NULL)"
    )
    conn.close()
    with ResultsStore(db, tmp_path / "archive") as store:
        (row,) = store.recent()
        assert row.defects[0].area_px == 4 and row.defects[0].class_name is None
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == sch.DB_SCHEMA_VERSION == 3
    conn.close()
