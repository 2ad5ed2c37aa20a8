"""Dataset discovery: every layout built in a temporary folder, classes, splits, problems.

No TensorFlow: the station imports :mod:`training.data.discovery`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from training.data import DatasetError, discover, find_samples, make_split
from training.data.synthetic import DEFECT_KINDS, generate, make_sample

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
MAGNETIC = SHARED / "magnetic-tile"
DAGM = SHARED / "dagm2007" / "Class1"


def _write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


def _pair(seed: int, h: int = 40, w: int = 48, kind: str | None = "blob") -> tuple:
    return make_sample(np.random.default_rng(seed), (h, w), kind)  # type: ignore[arg-type]


# 16 images, 8 defective: the four kinds twice each, in rotation.
@pytest.mark.parametrize(
    ("synth", "layout", "classes", "split_given"),
    [
        ("folder", "parallel", ["defect"], False),
        ("flat", "beside", ["defect"], False),
        ("dagm", "dagm", ["defect"], False),
        ("nested", "beside", ["defect"], False),
        ("classes", "class_folders", sorted(DEFECT_KINDS), False),
        ("split", "parallel", ["defect"], True),
        ("mvtec", "mvtec", sorted(DEFECT_KINDS), True),
    ],
)
def test_each_layout_is_detected(
    tmp_path: Path, synth: str, layout: str, classes: list[str], split_given: bool
) -> None:
    layout_arg: Any = synth
    generate(tmp_path, 16, size=(40, 56), defect_ratio=0.5, seed=1, layout=layout_arg)
    ds = discover(tmp_path)
    assert ds.layout == layout
    assert len(ds.samples) == 16 and sum(s.defective for s in ds.samples) == 8
    assert ds.classes == classes
    assert ds.split_given is split_given
    assert ds.problems == []
    summary = ds.summary()
    assert {c["name"]: c["images"] for c in summary["classes"]} == {
        c: 8 // len(classes) for c in classes
    }
    assert all(c["pixels"] > 0 for c in summary["classes"])
    assert summary["image_sizes"]["most_common"] == [[56, 40, 16]]
    for s in ds.samples:
        assert s.shape == (40, 56)
        assert s.defective == bool(s.classes) == bool(s.labels().any())


def test_nested_parts_with_label_suffix(tmp_path: Path) -> None:
    """KolektorSDD: a folder per part, PartK.jpg beside PartK_label.bmp; folders are no classes."""
    generate(tmp_path, 12, size=(40, 32), defect_ratio=0.5, seed=2, layout="nested")
    ds = discover(tmp_path)
    names = [s.name for s in ds.samples]
    assert names[:2] == ["kos01/Part0.jpg", "kos01/Part1.jpg"] and len(names) == 12
    assert all(
        s.mask_path is not None and s.mask_path.name.endswith("_label.bmp") for s in ds.samples
    )
    assert ds.classes == ["defect"] and ds.mask_kind == "binary"
    # Training reads the same nested folder: no flattening.
    assert [s.name for s in find_samples(tmp_path)] == names


def test_parallel_trees_with_the_datas_split_used_as_is(tmp_path: Path) -> None:
    for i, (part, kind) in enumerate(
        [("train", "blob"), ("train", None), ("train", "spot"), ("val", "blob"), ("val", None),
         ("test", "crack"), ("test", None)]
    ):  # fmt: skip
        image, mask = _pair(i, kind=kind)
        _write(tmp_path / "img_dir" / part / "sub" / f"{i}.png", image)
        if kind:
            _write(tmp_path / "ann_dir" / part / "sub" / f"{i}.png", mask)
    ds = discover(tmp_path)
    assert ds.layout == "parallel" and ds.split_given
    assert {s.name: s.split for s in ds.samples}["img_dir/val/sub/3.png"] == "val"
    split = make_split(ds.samples, seed=5)
    assert split.info["source"] == "data"
    assert split.train == [
        "img_dir/train/sub/0.png",
        "img_dir/train/sub/1.png",
        "img_dir/train/sub/2.png",
    ]
    assert split.test == ["img_dir/test/sub/5.png", "img_dir/test/sub/6.png"]
    assert split.info["val"] == {"images": 2, "defective": 1, "classes": {"defect": 1}}


def test_split_folders_above_images_and_groundtruth(tmp_path: Path) -> None:
    for part in ("train", "test"):
        for i in range(4):
            image, mask = _pair(i, kind="blob" if i % 2 else None)
            _write(tmp_path / part / "Images" / f"{i}.bmp", image)
            if i % 2:
                _write(tmp_path / part / "GroundTruth" / f"{i}_mask.png", mask)
    ds = discover(tmp_path)
    assert ds.layout == "parallel" and len(ds.samples) == 8 and ds.split_given
    assert sum(s.defective for s in ds.samples) == 4
    assert any("no validation split" in n for n in ds.notes)
    split = make_split(ds.samples, seed=0)
    assert split.info["source"].startswith("data (validation carved from train")
    assert split.val and set(split.val) <= {s.name for s in ds.samples if s.split == "train"}
    assert sorted(split.train + split.val) == sorted(
        s.name for s in ds.samples if s.split == "train"
    )
    assert split.test == sorted(s.name for s in ds.samples if s.split == "test")


def test_mvtec_classes_and_anomaly_split_note(tmp_path: Path) -> None:
    generate(tmp_path / "tile", 12, size=(32, 32), defect_ratio=0.5, seed=3, layout="mvtec")
    generate(tmp_path / "wood", 8, size=(32, 32), defect_ratio=0.5, seed=4, layout="mvtec")
    one = discover(tmp_path / "tile")
    assert one.layout == "mvtec" and "blob" in one.classes
    assert {s.split for s in one.samples} == {"train", "test"}
    assert all(not s.defective for s in one.samples if s.split == "train")
    assert any("anomaly-detection split" in n for n in one.notes)
    both = discover(tmp_path)
    assert both.layout == "mvtec" and len(both.samples) == 20
    assert "tile/blob" in both.classes and "wood/blob" in both.classes


def test_class_folders_and_their_problems(tmp_path: Path) -> None:
    for i in range(3):
        for folder, kind in (("MT_Crack", "crack"), ("MT_Blowhole", "spot"), ("MT_Free", None)):
            image, mask = _pair(i, kind=kind)
            _write(tmp_path / folder / "Imgs" / f"{folder}{i}.jpg", image)
            _write(tmp_path / folder / "Imgs" / f"{folder}{i}.png", mask)
    # An empty mask in a defect folder, a defect in the defect-free folder, a mask alone.
    image, mask = _pair(9, kind="blob")
    _write(tmp_path / "MT_Crack" / "Imgs" / "empty.jpg", image)
    _write(tmp_path / "MT_Crack" / "Imgs" / "empty.png", np.zeros_like(mask))
    _write(tmp_path / "MT_Free" / "Imgs" / "oops.jpg", image)
    _write(tmp_path / "MT_Free" / "Imgs" / "oops.png", mask)
    _write(tmp_path / "MT_Crack" / "Imgs" / "alone_label.png", mask)
    ds = discover(tmp_path)
    assert ds.layout == "class_folders"
    assert ds.classes == ["MT_Blowhole", "MT_Crack"]
    assert len(ds.samples) == 9 and sum(s.defective for s in ds.samples) == 6
    crack = next(s for s in ds.samples if s.name == "MT_Crack/Imgs/MT_Crack0.jpg")
    assert crack.classes == ("MT_Crack",) and crack.foreground == 2
    assert set(np.unique(crack.labels())) == {0, 2}
    kinds = {p.kind: p.file for p in ds.problems}
    assert kinds == {
        "empty_mask": "MT_Crack/Imgs/empty.png",
        "defect_in_free": "MT_Free/Imgs/oops.png",
        "mask_without_image": "MT_Crack/Imgs/alone_label.png",
    }
    assert not ds.blocking
    # A seeded split keeps every class in every part.
    split = make_split(ds.samples, seed=0)
    for part in ("train", "val", "test"):
        assert split.info[part]["classes"] == {"MT_Blowhole": 1, "MT_Crack": 1}
    # Forced to "beside", the folders only group images: one class.
    assert discover(tmp_path, layout="beside").classes == ["defect"]


def test_class_index_masks_with_class_names(tmp_path: Path) -> None:
    generate(tmp_path, 16, size=(40, 40), defect_ratio=0.5, seed=6, class_masks=True)
    ds = discover(tmp_path)
    assert ds.mask_kind == "class_index"
    assert ds.classes == list(DEFECT_KINDS)  # from classes.txt
    for s in ds.samples:
        if s.defective:
            ids = set(np.unique(s.labels())) - {0}
            assert [ds.classes[i - 1] for i in ids] == list(s.classes)
    (tmp_path / "classes.txt").unlink()
    assert discover(tmp_path).classes == ["class1", "class2", "class3", "class4"]


def test_blocking_problems_stop_training_with_the_file_named(tmp_path: Path) -> None:
    image, mask = _pair(0)
    _write(tmp_path / "a.png", image)
    _write(tmp_path / "a_mask.png", cv2.resize(mask, (24, 20)))
    _write(tmp_path / "b.png", image)
    (tmp_path / "c.png").write_bytes(b"broken")
    ds = discover(tmp_path)
    assert [s.name for s in ds.samples] == ["b.png"]
    assert {p.kind: p.file for p in ds.blocking} == {
        "size_mismatch": "a_mask.png",
        "unreadable_image": "c.png",
    }
    with pytest.raises(
        DatasetError, match=r"a_mask\.png: mask is 24x20 but its image is 48x40.*1 more"
    ):
        find_samples(tmp_path)


def test_orphan_masks_and_ambiguous_stems_are_reported(tmp_path: Path) -> None:
    image, mask = _pair(0)
    _write(tmp_path / "images" / "a" / "x.png", image)
    _write(tmp_path / "masks" / "a" / "x.png", mask)
    _write(tmp_path / "masks" / "a" / "gone.png", mask)
    _write(tmp_path / "beside" / "y.jpg", image)
    _write(tmp_path / "beside" / "y.bmp", image)
    _write(tmp_path / "beside" / "y_label.png", mask)
    tree = discover(tmp_path)
    assert tree.layout == "parallel" and [s.name for s in tree.samples] == ["images/a/x.png"]
    (orphan,) = tree.problems
    assert orphan.kind == "mask_without_image" and orphan.file == "masks/a/gone.png"
    assert "no a/gone.* in the image folder" in orphan.message and not orphan.blocking
    near = discover(tmp_path / "beside")
    (sample,) = near.samples
    assert sample.image_path.name == "y.jpg" and sample.mask_path.name == "y_label.png"  # type: ignore[union-attr]
    assert [(p.kind, p.file) for p in near.problems] == [("ambiguous", "y.bmp")]


def test_grey_colour_8_16_bit_images_of_any_aspect(tmp_path: Path) -> None:
    image, mask = _pair(0, h=30, w=90)
    _write(tmp_path / "wide.png", (image.astype(np.uint16) * 257).astype(np.uint16))
    _write(tmp_path / "wide_mask.png", mask)
    tall, _ = _pair(1, h=70, w=20, kind=None)
    _write(tmp_path / "tall.jpg", np.dstack([tall] * 3))
    ds = discover(tmp_path, verify=True)
    summary = ds.summary()
    assert summary["image_kinds"] == {"grey 16-bit": 1, "colour 8-bit": 1}
    assert summary["image_sizes"]["smallest"] == [20, 70]
    assert summary["image_sizes"]["largest"] == [90, 30]
    assert [s.defective for s in ds.samples] == [False, True]


def test_truncated_image_is_found_when_verifying(tmp_path: Path) -> None:
    image, _ = _pair(0)
    data = cv2.imencode(".png", image)[1].tobytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    _write(tmp_path / "ok.png", image)
    assert len(discover(tmp_path).samples) == 2  # the header alone looks fine
    ds = discover(tmp_path, verify=True)
    assert [p.file for p in ds.blocking] == ["cut.png"]


def test_explicit_masks_folder_and_images_folder_given_directly(tmp_path: Path) -> None:
    generate(tmp_path / "ds", 8, size=(32, 32), defect_ratio=0.5, seed=7)
    direct = discover(tmp_path / "ds" / "images")  # --data DATASET/images: masks/ beside it
    assert direct.layout == "parallel" and sum(s.defective for s in direct.samples) == 4
    assert direct.samples[0].name == "0001.png"
    given = discover(tmp_path / "ds" / "images", masks=tmp_path / "ds" / "masks")
    assert [s.mask_path for s in given.samples] == [s.mask_path for s in direct.samples]


def test_forced_layouts_that_do_not_fit_are_clear_errors(tmp_path: Path) -> None:
    generate(tmp_path, 4, size=(32, 32), defect_ratio=0.5, seed=8, layout="flat")
    with pytest.raises(DatasetError, match="no image and mask folders side by side"):
        discover(tmp_path, layout="parallel")
    with pytest.raises(DatasetError, match="Labels.txt"):
        discover(tmp_path, layout="dagm")
    with pytest.raises(DatasetError, match="no class folders"):
        discover(tmp_path, layout="class_folders")
    with pytest.raises(DatasetError, match="dataset folder not found"):
        discover(tmp_path / "nope")


def test_dagm_train_and_test_folders_are_the_datas_split(tmp_path: Path) -> None:
    generate(tmp_path / "Train", 8, size=(32, 32), defect_ratio=0.5, seed=9, layout="dagm")
    generate(tmp_path / "Test", 6, size=(32, 32), defect_ratio=0.5, seed=10, layout="dagm")
    ds = discover(tmp_path)
    assert ds.layout == "dagm" and ds.split_given
    split = make_split(ds.samples)
    assert split.test == sorted(s.name for s in ds.samples if s.name.startswith("Test/"))
    assert split.val and all(n.startswith("Train/") for n in split.train + split.val)
    only_test = discover(tmp_path / "Test")
    assert not only_test.split_given and make_split(only_test.samples).info["source"] == "seeded"


def test_discovery_imports_no_tensorflow() -> None:
    code = (
        "import sys, training.data.discovery;"
        "bad = [m for m in ('tensorflow', 'keras', 'tf2onnx') if m in sys.modules];"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.skipif(not MAGNETIC.is_dir(), reason=f"Magnetic-tile data not found at {MAGNETIC}")
def test_real_magnetic_tile_is_read_as_published() -> None:
    ds = discover(MAGNETIC)
    assert ds.layout == "class_folders" and ds.mask_kind == "soft"
    assert ds.classes == ["MT_Blowhole", "MT_Break", "MT_Crack", "MT_Fray", "MT_Uneven"]
    summary = ds.summary()
    assert {c["name"]: c["images"] for c in summary["classes"]} == {
        "MT_Blowhole": 115, "MT_Break": 85, "MT_Crack": 57, "MT_Fray": 32, "MT_Uneven": 99,
    }  # fmt: skip
    assert summary["defect_free"] == 952
    # Four MT_Uneven images have all-zero masks: reported, not trained on.
    assert [p.kind for p in ds.problems] == ["empty_mask"] * 4
    assert all(p.file.startswith("MT_Uneven/Imgs/") for p in ds.problems)
    assert all(s.image_path.suffix == ".jpg" for s in ds.samples)
    assert all(s.mask_path is not None and s.mask_path.suffix == ".png" for s in ds.samples)


@pytest.mark.skipif(not DAGM.is_dir(), reason=f"DAGM 2007 Class1 not found at {DAGM}")
def test_real_dagm_class1() -> None:
    ds = discover(DAGM)
    assert ds.layout == "dagm" and len(ds.samples) == 575
    assert sum(s.defective for s in ds.samples) == 71 and not ds.problems
    assert not ds.split_given  # only Test/ is present: a seeded split is made


def test_classes_txt_makes_a_single_painted_class_class_index(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    img = np.full((16, 16), 90, np.uint8)
    mask = np.zeros((16, 16), np.uint8)
    mask[4:8, 4:8] = 1  # only class 1 painted so far
    cv2.imwrite(str(tmp_path / "images" / "a.png"), img)
    cv2.imwrite(str(tmp_path / "masks" / "a.png"), mask)
    (tmp_path / "classes.txt").write_text("background\ncrack\nstain\n")
    ds = discover(tmp_path)
    assert ds.classes[:2] == ["crack", "stain"]
    assert [list(s.classes) for s in ds.samples] == [["crack"]]
