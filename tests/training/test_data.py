"""Dataset loaders in every layout, splits, batches and the generator (no TensorFlow needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from training.data import DatasetError, find_samples, load_split, make_split, save_split
from training.data.batches import BatchSampler, load_arrays
from training.data.synthetic import DEFECT_KINDS, generate, make_sample

pytestmark = pytest.mark.training


def _write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


def _pair(rng: np.random.Generator, h: int = 40, w: int = 48) -> tuple[np.ndarray, np.ndarray]:
    image, mask = make_sample(rng, (h, w), "blob")
    return image, mask


def test_images_and_masks_sibling_folder(synthetic_folder: Path) -> None:
    samples = find_samples(synthetic_folder)
    assert len(samples) == 16
    assert sum(s.defective for s in samples) == 4
    assert all(s.name.startswith("images/") for s in samples)
    for s in samples:
        assert (s.mask_path is not None) == s.defective


def test_mask_beside_image_with_suffix_and_other_extension(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image, mask = _pair(rng)
    _write(tmp_path / "a.png", image)
    _write(tmp_path / "a_mask.png", mask)
    _write(tmp_path / "b.bmp", image)
    _write(tmp_path / "b_label.png", mask)
    _write(tmp_path / "c.jpg", image)
    _write(tmp_path / "c.png", mask)  # same stem, other extension: the PNG is the mask
    _write(tmp_path / "d.png", image)  # no mask: defect-free
    samples = {s.name: s for s in find_samples(tmp_path)}
    assert sorted(samples) == ["a.png", "b.bmp", "c.jpg", "d.png"]
    assert samples["a.png"].mask_path == tmp_path / "a_mask.png"
    assert samples["b.bmp"].mask_path == tmp_path / "b_label.png"
    assert samples["c.jpg"].mask_path == tmp_path / "c.png"
    flags = [samples[n].defective for n in ("a.png", "b.bmp", "c.jpg", "d.png")]
    assert flags == [True, True, True, False]


def test_masks_option_colour_and_16_bit(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    image, mask = _pair(rng)
    colour = np.dstack([image, image, image])
    _write(tmp_path / "imgs" / "x.png", colour)
    _write(tmp_path / "imgs" / "y.png", image.astype(np.uint16) * 257)
    _write(tmp_path / "labels" / "x.png", mask)
    samples = find_samples(tmp_path / "imgs", masks=tmp_path / "labels")
    assert [s.defective for s in samples] == [True, False]
    arrays = load_arrays(samples, channels=1, scale=0.5)
    assert arrays.images[0].shape == (20, 24, 1) and arrays.images[1].dtype == np.float32
    assert 0.0 <= arrays.images[1].min() and arrays.images[1].max() <= 1.0
    assert arrays.defective.tolist() == [True, False]


def test_mask_of_other_size_is_a_clear_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    image, mask = _pair(rng)
    _write(tmp_path / "images" / "p.png", image)
    _write(tmp_path / "masks" / "p.png", cv2.resize(mask, (24, 20)))
    with pytest.raises(DatasetError, match=r"p\.png: mask is 24x20 but its image is 48x40"):
        find_samples(tmp_path)


def test_dagm_layout(tmp_path: Path) -> None:
    generate(
        tmp_path / "Class9" / "Train", 8, size=(48, 48), defect_ratio=0.25, seed=4, layout="dagm"
    )
    generate(
        tmp_path / "Class9" / "Test", 6, size=(48, 48), defect_ratio=0.5, seed=5, layout="dagm"
    )
    one = find_samples(tmp_path / "Class9" / "Test")
    assert len(one) == 6 and sum(s.defective for s in one) == 3
    assert all(s.mask_path is None or s.mask_path.parent.name == "Label" for s in one)
    both = find_samples(tmp_path / "Class9")
    assert len(both) == 14 and both[0].name.startswith("Train/")


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        find_samples(tmp_path / "nope")
    with pytest.raises(DatasetError, match="no images"):
        find_samples(tmp_path)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"broken\.png: not a readable image"):
        load_arrays(find_samples(tmp_path), channels=1, scale=1.0)


def test_split_is_seeded_stratified_and_round_trips(synthetic_folder: Path, tmp_path: Path) -> None:
    samples = find_samples(synthetic_folder)
    a, b = make_split(samples, seed=7), make_split(samples, seed=7)
    assert a.to_dict() == b.to_dict()
    assert make_split(samples, seed=8).train != a.train
    assert a.info["train"]["defective"] >= 1 and a.info["val"]["defective"] >= 1
    assert a.info["test"]["defective"] >= 1
    names = a.train + a.val + a.test
    assert sorted(names) == sorted(s.name for s in samples)
    loaded = load_split(save_split(a, tmp_path / "split.json"))
    assert loaded.test == a.test and loaded.seed == 7


def test_batches_have_the_defect_share_and_input_size(synthetic_folder: Path) -> None:
    arrays = load_arrays(find_samples(synthetic_folder), channels=1, scale=1.0)
    sampler = BatchSampler(arrays, input_size=(32, 32), batch_size=10, defect_share=0.4)
    x, y = sampler.batch(np.random.default_rng(0))
    assert x.shape == (10, 32, 32, 1) and y.shape == (10, 32, 32, 1)
    assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert sampler.n_defective == 4
    big = BatchSampler(arrays, input_size=(96, 96), batch_size=2)  # larger than the images
    assert big.batch(np.random.default_rng(1))[0].shape == (2, 96, 96, 1)


def test_generator_kinds_and_no_tensorflow_import(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    for kind in DEFECT_KINDS:
        image, mask = make_sample(rng, (64, 64), kind)
        assert image.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
    image, mask = make_sample(rng, (64, 64), None)
    assert not mask.any()
    # The kinds are the classes: class-index masks carry 1 + the kind's index, named in classes.txt.
    generate(tmp_path / "cls", 8, size=(32, 32), defect_ratio=1.0, seed=0, class_masks=True)
    ids = {
        int(cv2.imread(str(p), cv2.IMREAD_UNCHANGED).max())
        for p in (tmp_path / "cls" / "masks").iterdir()
    }
    assert ids == {1, 2, 3, 4}
    assert (tmp_path / "cls" / "classes.txt").read_text().split() == ["background", *DEFECT_KINDS]
    code = (
        "import sys, training, training.data, training.data.synthetic as s;"
        f"s.generate({str(tmp_path)!r}, 4, size=(32, 32), seed=0);"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TF imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert len(list((tmp_path / "images").glob("*.png"))) == 4
