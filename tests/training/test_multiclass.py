"""Defect classes in training: class resolution, heads, loss, a tiny run through export, the report."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pytest

from training.class_metrics import blob_class_index, class_report
from training.cli import UsageError
from training.data.synthetic import generate
from training.losses import ClassLoss
from training.model import build_model, split_scores
from training.train import resolve_classes

NAMES = ["blob", "scratch"]


@pytest.fixture(scope="module")
def class_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes, trained for two tiny epochs and exported (ONNX + card + report)."""
    from training.progress import Progress
    from training.train import TrainConfig, train

    data = tmp_path_factory.mktemp("classes") / "data"
    generate(data, 24, size=(64, 64), defect_ratio=0.5, seed=1, class_masks=True, kinds=NAMES)
    run = tmp_path_factory.mktemp("class_run")
    cfg = TrainConfig(
        data=str(data), out=str(run), epochs=2, steps_per_epoch=3, image_size=64,
        base_filters=4, batch_size=4, xla=False, progress="none",
    )  # fmt: skip
    train(cfg, Progress("none"))
    return run


def test_resolve_classes() -> None:
    names, lut = resolve_classes("auto", NAMES)
    assert names == NAMES and list(lut[:3]) == [0, 1, 2]
    names, lut = resolve_classes("1", NAMES)
    assert names == ["defect"] and list(lut[:3]) == [0, 1, 1]
    assert resolve_classes("1", ["crack"])[0] == ["crack"]
    names, lut = resolve_classes("scratch, blob", NAMES)
    assert names == ["scratch", "blob"] and list(lut[:3]) == [0, 2, 1]
    names, lut = resolve_classes("crack,stain", ["class1", "class2"])
    assert names == ["crack", "stain"] and list(lut[:3]) == [0, 1, 2]
    with pytest.raises(UsageError, match="the data holds 2 class"):
        resolve_classes("3", NAMES)
    with pytest.raises(UsageError, match="the data holds 2 class"):
        resolve_classes("blob,crack", NAMES)
    with pytest.raises(UsageError, match="distinct"):
        resolve_classes("blob,blob", NAMES)


def test_generator_writes_the_chosen_kinds_as_classes(tmp_path: Path) -> None:
    from training.data.discovery import discover

    generate(tmp_path, 8, size=(32, 32), defect_ratio=0.5, class_masks=True, kinds=["spot", "blob"])
    ds = discover(tmp_path)
    assert ds.classes == ["spot", "blob"] and ds.mask_kind == "class_index"
    assert {c for s in ds.samples for c in s.classes} == {"spot", "blob"}
    with pytest.raises(ValueError, match="choose from"):
        generate(tmp_path / "x", 2, kinds=["stain"])  # type: ignore[list-item]


@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
def test_heads_give_a_defect_map_and_class_shares(head: str) -> None:
    model = build_model("tinyunet", base_filters=4, classes=3, class_head=head)  # type: ignore[arg-type]
    scores = np.asarray(model(np.random.default_rng(0).random((2, 32, 32, 1)), training=False))
    assert scores.shape == (2, 32, 32, 4 if head == "softmax" else 3)
    defect, share = (np.asarray(a) for a in split_scores(scores, 3, head))  # type: ignore[arg-type]
    assert defect.shape == (2, 32, 32, 1) and share.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(share.sum(-1), 1.0, atol=1e-5)
    expected = 1 - scores[..., :1] if head == "softmax" else scores.max(-1, keepdims=True)
    np.testing.assert_allclose(defect, expected, atol=1e-5)
    # Where no class is likely the shares are uniform, not a ratio of underflowing numbers
    # (which differed between Keras and ONNX Runtime by up to 1).
    tiny = np.full((1, 2, 2, scores.shape[-1]), 1e-30, np.float32)
    tiny[..., 1] = 3e-30
    if head == "softmax":
        tiny[..., 0] = 1.0
    _, share = split_scores(tiny, 3, head)  # type: ignore[arg-type]
    np.testing.assert_allclose(np.asarray(share), 1 / 3, atol=1e-5)


@pytest.mark.parametrize("head", ["softmax", "sigmoid"])
def test_class_loss_prefers_the_right_class(head: str) -> None:
    loss = keras.losses.deserialize(keras.losses.serialize(ClassLoss(2, head)))
    assert (loss.classes, loss.head) == (2, head)
    y = np.zeros((1, 8, 8, 1), np.float32)
    y[0, 2:5, 2:5] = 1.0
    y[0, 6:8, 6:8] = 2.0
    onehot = np.eye(3, dtype=np.float32)[y[..., 0].astype(int)]
    right = onehot if head == "softmax" else onehot[..., 1:]
    swapped = right.copy()
    swapped[..., -2:] = right[..., [-1, -2]]  # the two classes exchanged, defects in place
    good = float(loss(y, 0.9 * right + 0.05))
    bad = float(loss(y, 0.9 * swapped + 0.05))
    assert good < bad


def test_tiny_multiclass_run_exports_two_verified_outputs(class_run: Path) -> None:
    import onnx

    from engines import load_engine
    from engines.predict import predict_class_maps

    cfg = json.loads((class_run / "config.json").read_text(encoding="utf-8"))
    assert cfg["class_names"] == NAMES and cfg["class_head"] == "softmax"
    graph = onnx.load(str(class_run / "model.onnx")).graph
    assert [o.name for o in graph.output] == ["probability", "class_probability"]
    dims = [d.dim_value for d in graph.output[1].type.tensor_type.shape.dim]
    assert dims[1:] == [64, 64, 2]
    card = json.loads((class_run / "model.json").read_text(encoding="utf-8"))
    assert card["class_names"] == NAMES and len(card["class_colors"]) == 2
    assert card["class_output_name"] == "class_probability"
    assert card["agreement"]["class_max_abs_diff"] <= card["agreement"]["tolerance"]
    engine = load_engine(class_run / "model.onnx")
    ((prob, cls),) = predict_class_maps(engine, [np.full((70, 90), 128, np.uint8)])
    assert prob.shape == (70, 90) and cls is not None and cls.shape == (70, 90, 2)
    np.testing.assert_allclose(cls.sum(-1), 1.0, atol=1e-4)


def test_the_report_has_classes_per_class_and_confusion(class_run: Path) -> None:
    report = json.loads((class_run / "report" / "report.json").read_text(encoding="utf-8"))
    assert report["classes"] == NAMES
    assert set(report["per_class"]) == set(NAMES)
    for m in report["per_class"].values():
        assert set(m) == {"dice", "iou", "images", "found", "missed"}
        assert m["images"] >= 1 and m["found"] + m["missed"] >= m["images"]
    assert set(report["class_confusion"]) == {*NAMES, "none"}
    assert "image_level" in report and "ap" in report  # image-level metrics as before
    assert "## Defect classes" in (class_run / "report" / "report.md").read_text(encoding="utf-8")


def test_a_wrong_class_output_fails_verification(class_run: Path, tmp_path: Path) -> None:
    from training.export import ExportError, convert, load_run, verify

    cfg, model = load_run(class_run)
    tiles = np.random.default_rng(0).random((2, 64, 64, 1)).astype(np.float32)
    path = convert(model, tmp_path / "m.onnx", input_shape=(64, 64, 1), classes=2)
    assert verify(path, model, tiles, classes=2)["class_max_abs_diff"] < 1e-4
    # The two class channels of the head exchanged: the defect map (their sum) is unchanged,
    # the class output is not, and only the class check can notice.
    head = model.get_layer("class_scores")
    kernel, bias = head.get_weights()
    head.set_weights([kernel[..., [0, 2, 1]], bias[[0, 2, 1]]])
    with pytest.raises(ExportError, match="class probabilities disagree"):
        verify(path, model, tiles, classes=2)


def test_blob_classes_agree_with_the_station() -> None:
    from app.station.inspector import blob_classes

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 6, (40, 50)).astype(np.int32)
    cmap = rng.random((40, 50, 3)).astype(np.float32)
    cmap[labels == 5] = 0.0  # a blob without any class probability
    station = blob_classes(labels, 6, cmap, ("a", "b", "c"))
    np.testing.assert_array_equal(blob_class_index(labels, 6, cmap), station.index)
    assert station.index[5] == -1


def test_class_report_counts_exactly() -> None:
    truth = np.zeros((20, 20), np.uint8)
    truth[2:6, 2:6] = 1  # a blob defect ...
    truth[10:12, 2:12] = 2  # ... a scratch ...
    truth[15:18, 15:18] = 1  # ... and a blob the model misses
    prob = np.zeros((20, 20), np.float32)
    prob[2:6, 2:6] = 0.9
    prob[10:12, 2:12] = 0.9
    prob[0, 18:20] = 0.9  # a false alarm
    cmap = np.zeros((20, 20, 2), np.float32)
    cmap[..., 0] = 1.0
    cmap[10:12, 2:12] = (0.2, 0.8)
    cmap[2:6, 2:6] = (0.3, 0.7)  # the blob is taken for a scratch
    got = class_report([prob], [cmap], [truth], NAMES, NAMES, threshold=0.5)
    blob, scratch = got["per_class"]["blob"], got["per_class"]["scratch"]
    assert (blob["images"], blob["found"], blob["missed"], blob["dice"]) == (1, 1, 1, 0.0)
    assert scratch["found"] == 1 and scratch["missed"] == 0
    assert scratch["dice"] == pytest.approx(2 * 20 / (20 + 36))  # both blobs predicted scratch
    assert got["class_confusion"] == {
        "blob": {"blob": 0, "scratch": 1, "missed": 1},
        "scratch": {"blob": 0, "scratch": 1, "missed": 0},
        "none": {"blob": 1, "scratch": 0, "missed": 0},
    }
    # A one-class model: every predicted blob is its one class; Dice counts any prediction.
    one = class_report([prob], [None], [truth], NAMES, ["defect"], threshold=0.5)
    assert one["per_class"]["scratch"]["dice"] == pytest.approx(2 * 20 / (20 + 38))
    assert one["class_confusion"]["blob"] == {"defect": 1, "missed": 1}


def test_cli_names_the_classes_the_data_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from training.cli import main

    data = tmp_path / "data"
    generate(data, 8, size=(32, 32), defect_ratio=0.5, class_masks=True, kinds=NAMES)
    code = main(["train", "--data", str(data), "--out", str(tmp_path / "run"), "--classes", "3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "--classes 3: the data holds 2 class(es): blob, scratch" in err[0]


@pytest.mark.parametrize(("classes", "head"), [(1, "softmax"), (4, "softmax"), (4, "sigmoid")])
def test_an_untrained_network_starts_at_the_defect_prior(classes: int, head: str) -> None:
    """The output bias puts the untrained defect probability at the data's defect pixel share
    (a zero bias starts at 0.5 and collapsed tiny-defect training to 'nothing anywhere')."""
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).random((2, 64, 64, 1), dtype=np.float32)
    last = {}
    for prior in (None, 0.002):
        model = build_model("tinyunet", base_filters=4, classes=classes, class_head=head,
                            prior=prior)  # fmt: skip
        model.layers[-1].kernel.assign(np.zeros(model.layers[-1].kernel.shape, np.float32))
        defect, _ = split_scores(model(x, training=False), classes, head)  # type: ignore[arg-type]  # literal heads
        last[prior] = float(np.mean(np.asarray(defect)))
    assert last[0.002] == pytest.approx(0.002, rel=0.05)
    assert last[None] > 0.4  # Keras' zero bias: a coin toss on every pixel
