"""ONNX export verified against Keras (and a broken export that must fail), INT8 / FP16 variants."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from engines import load_engine
from engines.card import ModelCard
from engines.selftest import DEFAULT_TOLERANCE

pytestmark = pytest.mark.training


def _val_tiles(run: Path, card: ModelCard) -> np.ndarray:
    import json

    from training.data import find_samples, load_split
    from training.data.loaders import select
    from training.export import real_tiles

    cfg = json.loads((run / "config.json").read_text())
    val = select(find_samples(cfg["data"]), load_split(run / "split.json").val)
    return real_tiles([s.image_path for s in val], card)


def test_round_trip_within_tolerance(tiny_run: Path, tmp_path: Path) -> None:
    import onnx

    from training.export import base_card, convert, load_run, verify

    cfg, model = load_run(tiny_run)
    card = base_card(cfg, tiny_run, "t", {})
    path = convert(model, tmp_path / "t.onnx", input_shape=card.input_shape)
    agreement = verify(path, model, _val_tiles(tiny_run, card))
    assert agreement["keras_max_abs_diff"] <= 1e-4
    proto = onnx.load(str(path))
    (inp,), (out,) = proto.graph.input, proto.graph.output
    assert (inp.name, out.name) == ("image", "probability")
    dims = inp.type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [64, 64, 1]
    assert {o.domain: o.version for o in proto.opset_import}[""] == 17
    # The station's own engine (card checks, session options, batching) against Keras.
    card.save(path.with_suffix(".json"))
    tiles = _val_tiles(tiny_run, card)
    engine = load_engine(path)
    try:
        station = engine.infer(tiles)
    finally:
        engine.close()
    keras = np.asarray(model(tiles, training=False), np.float32)
    assert engine.backend == "onnxruntime" and station.shape == keras.shape
    assert np.abs(station - keras).max() <= 1e-4


def test_a_broken_export_fails_verification(tiny_run: Path, tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    from training.export import ExportError, base_card, convert, load_run, verify

    cfg, model = load_run(tiny_run)
    card = base_card(cfg, tiny_run, "t", {})
    path = convert(model, tmp_path / "t.onnx", input_shape=card.input_shape)
    proto = onnx.load(str(path))
    biggest = max(proto.graph.initializer, key=lambda t: np.prod(t.dims))
    broken = numpy_helper.to_array(biggest) * 1.5  # a conversion bug in one weight tensor
    biggest.CopyFrom(numpy_helper.from_array(broken.astype(np.float32), biggest.name))
    onnx.save(proto, str(path))
    with pytest.raises(ExportError, match="disagrees with the Keras model"):
        verify(path, model, _val_tiles(tiny_run, card))


def test_export_run_deletes_a_model_that_fails(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import training.export as export

    real_convert = export.convert

    def bad_convert(model, path, **kw):  # noqa: ANN001, ANN003, ANN202
        import keras

        other = keras.models.clone_model(model)  # same graph, fresh random weights
        return real_convert(other, path, **kw)

    monkeypatch.setattr(export, "convert", bad_convert)
    out = tmp_path / "bad.onnx"
    with pytest.raises(export.ExportError):
        export.export_run(tiny_run, out, evaluate=False)
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_export_then_int8_and_fp16_variants(tiny_run: Path, tmp_path: Path) -> None:
    import json

    from training.export import export_run
    from training.quantize import quantize_model

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    result = export_run(run, tmp_path / "m.onnx", evaluate=True)
    card = ModelCard.load(tmp_path / "m.json")
    assert card.training["split_file"] == "m.split.json" and (tmp_path / "m.split.json").is_file()
    # The golden self-test is recorded from ONNX Runtime and survives evaluate's card update.
    assert card.golden["recorded_with"] == "onnxruntime fp32"
    assert card.golden["tolerance"] >= DEFAULT_TOLERANCE["fp32"]
    assert card.metrics["split"] == "test" and Path(result["report"]).is_file()
    data = json.loads((run / "config.json").read_text())["data"]
    for precision in ("int8", "fp16"):
        out = tmp_path / f"m-{precision}.onnx"
        quantize_model(tmp_path / "m.onnx", precision, data, out, calib_images=4)
        vcard = ModelCard.load(out.with_suffix(".json"))
        assert vcard.precision == precision and vcard.threshold == card.threshold
        assert {"fp32_max_abs_diff", "pixel_decision_flip_rate", "speedup_vs_fp32_cpu"} <= set(
            vcard.agreement
        )
        assert "ms_per_frame_cpu" in vcard.metrics["val"]
        # Its own golden: its own output, its precision's tolerance, not the FP32 one's.
        assert vcard.golden["recorded_with"] == f"onnxruntime {precision}"
        assert vcard.golden["tolerance"] >= DEFAULT_TOLERANCE[precision]
        assert vcard.golden["tolerance"] >= 10 * vcard.golden["kernel_spread"]
        engine = load_engine(out)
        probs = engine.infer(np.zeros((2, 64, 64, 1), np.float32))
        assert probs.shape == (2, 64, 64, 1) and probs.dtype == np.float32
        engine.close()


def test_golden_frames_put_defective_frames_first(synthetic_folder: Path) -> None:
    from training.data import find_samples
    from training.data.loaders import read_image
    from training.export import golden_frames

    samples = find_samples(synthetic_folder)
    frames = golden_frames(samples, limit=3)
    defective = [s for s in samples if s.defective]
    assert len(frames) == 3 and len(defective) >= 3
    for frame, sample in zip(frames, defective, strict=False):
        assert np.array_equal(frame, read_image(sample.image_path))


def test_an_exported_model_with_damaged_weights_is_refused_at_load(
    tiny_run: Path, tmp_path: Path
) -> None:
    import onnx
    from onnx import numpy_helper

    from engines.protocol import ModelLoadError
    from training.export import export_run

    out = tmp_path / "m.onnx"
    export_run(tiny_run, out, evaluate=False)
    load_engine(out).close()  # healthy as exported
    proto = onnx.load(str(out))
    biggest = max(proto.graph.initializer, key=lambda t: np.prod(t.dims))
    damaged = numpy_helper.to_array(biggest) * 1.1
    biggest.CopyFrom(numpy_helper.from_array(damaged.astype(np.float32), biggest.name))
    onnx.save(proto, str(out))
    with pytest.raises(ModelLoadError, match="golden self-test failed"):
        load_engine(out)


def test_evaluate_takes_another_split_file(tiny_run: Path, tmp_path: Path) -> None:
    """Two models are compared on one run's split: --split-file overrides the recorded one."""
    from training.data import load_split, save_split
    from training.data.split import Split
    from training.evaluate import evaluate_model

    data = json_config(tiny_run)["data"]
    own = load_split(tiny_run / "split.json")
    other = save_split(Split(train=own.test, val=own.val, test=own.train), tmp_path / "s.json")
    default = evaluate_model(tiny_run, data, out_dir=tmp_path / "a", examples=0)
    swapped = evaluate_model(tiny_run, data, out_dir=tmp_path / "b", examples=0, split_file=other)
    assert default["split"]["images"] == len(own.test)
    assert swapped["split"]["images"] == len(own.train) != len(own.test)
    with pytest.raises(FileNotFoundError, match="split file not found"):
        evaluate_model(tiny_run, data, out_dir=tmp_path / "c", split_file=tmp_path / "none.json")


def json_config(run: Path) -> dict:
    import json

    return json.loads((run / "config.json").read_text())


# --- Verification judges what the station decides (issue 9 item 4) ---------------------------


def _frames(run: Path) -> tuple[list[np.ndarray], ModelCard, object]:
    """The run's verification frames, its card and its float32 Keras model."""
    import json

    from training.data import find_samples, load_split
    from training.data.loaders import read_image, select
    from training.export import _verification_frames, base_card, load_run

    cfg, model = load_run(run)
    samples = find_samples(json.loads((run / "config.json").read_text())["data"])
    chosen = _verification_frames(select(samples, load_split(run / "split.json").val), samples)
    return [read_image(s.image_path) for s in chosen], base_card(cfg, run, "t", {}), model


def _keras_maps(run: Path) -> list[np.ndarray]:
    from training.export import keras_outputs
    from training.export_verify import frame_maps

    frames, card, model = _frames(run)
    return [p for p, _ in frame_maps(card, lambda b: keras_outputs(model, b), frames)]


def _shift_head(run: Path, where: str) -> float:
    """Move the model's decision boundary (the head's bias) so that the threshold 0.5 falls in
    the widest gap of the top 2 % of logits (``"gap"``: a robust model with a few defect
    blobs) or at the median logit (``"median"``: half the pixels on a knife's edge).
    Returns the smallest |p - 0.5| over the verification frames afterwards."""
    from training.export import load_run

    z = np.concatenate([np.log(p / (1 - p)).ravel() for p in _keras_maps(run)])
    if where == "median":
        q = float(np.median(z))
    else:
        top = np.sort(z[z >= np.quantile(z, 0.98)])
        i = int(np.argmax(np.diff(top)))
        q = float((top[i] + top[i + 1]) / 2)
    _, model = load_run(run)
    head = model.get_layer("probability")
    kernel, bias = head.get_weights()
    head.set_weights([kernel, bias - np.float32(q)])
    model.save(run / "checkpoints" / "best.keras")
    return float(min(np.abs(p - 0.5).min() for p in _keras_maps(run)))


def _perturbing_convert(monkeypatch: pytest.MonkeyPatch, relative: float) -> None:
    """After conversion, multiply every ONNX convolution weight by (1 + relative x N(0, 1)):
    what another kernel's rounding does, a little larger."""
    import onnx
    from onnx import numpy_helper

    import training.export as export

    real_convert = export.convert

    def convert(model, path, **kw):  # noqa: ANN001, ANN003, ANN202
        out = real_convert(model, path, **kw)
        proto = onnx.load(str(out))
        rng = np.random.default_rng(0)
        for t in proto.graph.initializer:
            w = numpy_helper.to_array(t)
            if w.dtype == np.float32 and w.ndim == 4:
                noisy = w * (1 + relative * rng.standard_normal(w.shape))
                t.CopyFrom(numpy_helper.from_array(noisy.astype(np.float32), t.name))
        onnx.save(proto, str(out))
        return out

    monkeypatch.setattr(export, "convert", convert)


def test_an_export_that_differs_slightly_but_decides_the_same_passes(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    from training.export import export_run

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    assert _shift_head(run, "gap") > 2e-3  # no pixel within reach of the perturbation
    _perturbing_convert(monkeypatch, 2e-4)
    out = tmp_path / "m.onnx"
    result = export_run(run, out, evaluate=False)
    card = ModelCard.load(out.with_suffix(".json"))
    # Beyond the old 1e-4 bound that refused a real 31-minute run, within the new one ...
    assert 1e-4 < card.agreement["keras_max_abs_diff"] <= 5e-3
    # ... and the station decides the same: no pixel flips, no verdict differs.
    assert card.agreement["pixels_flipped"] == 0 and card.agreement["verdicts_differ"] == 0
    assert result["verification"] == card.agreement["verification"] == "passed"
    report = json.loads((run / "export-verification.json").read_text())
    assert report["passed"] and report["decisions"]["frames"] >= 2
    assert any(_keras_maps(run)[i].max() >= 0.5 for i in range(2))  # there are defects to judge


def test_an_export_whose_decisions_differ_fails_with_figures_and_the_command(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import json

    from training.cli import main

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    _shift_head(run, "median")
    _perturbing_convert(monkeypatch, 2e-4)
    out = tmp_path / "m.onnx"
    capsys.readouterr()
    assert main(["export", "--run", str(run), "--out", str(out), "--progress", "none"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    report = json.loads((run / "export-verification.json").read_text())
    pixel, decisions = report["pixel"], report["decisions"]
    # Per pixel it is within bounds; what the station would decide is not.
    assert pixel["keras_max_abs_diff"] <= 5e-3 and pixel["keras_mean_abs_diff"] <= 1e-4
    flipped = decisions["pixels_flipped"] + decisions["pixels_on_edge"]
    assert flipped > decisions["frames"] and not report["passed"]
    assert f"of {decisions['pixels']} pixels flip" in err
    assert f"max |Δ| {pixel['keras_max_abs_diff']:.3g}" in err
    assert f"python -m training export --run {run} --out {out} --force" in err
    assert not out.exists() and not out.with_suffix(".json").exists()
    assert (run / "checkpoints" / "best.keras").is_file()  # the run keeps everything


def test_force_exports_anyway_and_the_card_says_so(
    tiny_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training.cli import main

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    _shift_head(run, "median")
    _perturbing_convert(monkeypatch, 2e-4)
    out = tmp_path / "m.onnx"
    args = ["export", "--run", str(run), "--out", str(out), "--progress", "none", "--force"]
    assert main(args) == 0
    card = ModelCard.load(out.with_suffix(".json"))
    assert card.agreement["verification"] == "overridden"
    assert "pixels flip" in card.agreement["override_reason"]
    assert card.golden["recorded_with"] == "onnxruntime fp32"  # a complete, loadable model
    load_engine(out).close()


def test_compare_decisions_names_flips_verdicts_and_classes() -> None:
    from training.export_verify import compare_decisions

    a = np.zeros((20, 20), np.float32)
    a[5:8, 5:8] = 0.9  # a 9 px blob
    b = a.copy()
    b[5, 5] = 0.49  # one pixel flips: the blob is 8 px, below a 9 px minimum area
    cls_a = np.zeros((20, 20, 2), np.float32)
    cls_a[..., 0] = 0.7
    cls_b = cls_a[..., ::-1].copy()  # the same blob, the other class
    keras = [(a, cls_a), (a, cls_a)]
    onnx = [(b, cls_a), (a, cls_b)]
    figures, problems = compare_decisions(keras, onnx, 0.5, 9, ["x.png", "y.png"], 0.0)
    assert figures["pixels_flipped"] == 1 and figures["verdicts_differ"] == ["x.png"]
    assert figures["blobs_differ"] == ["y.png"]
    assert any("1 of 800 pixels flip" in p for p in problems)  # 0.9 -> 0.49: far
    assert any("verdict differs on 1 of 2 frames (x.png)" in p for p in problems)
    same, none = compare_decisions(keras, keras, 0.5, 9, flip_rate=0.0)
    assert not none and same["pixels_flipped"] == 0


def test_a_pixel_on_the_threshold_may_change_side() -> None:
    """A Keras value within the tolerance of the threshold changes side under any correct
    conversion: counted, not refused; the same flip from a value far from it is refused."""
    from training.export_verify import compare_decisions

    a = np.zeros((20, 20), np.float32)
    a[5:10, 5:10] = 0.9
    a[0, 0] = 0.5001  # on the edge: above 0.5 by 1e-4
    b = a.copy()
    b[0, 0] = 0.4999
    figures, problems = compare_decisions([(a, None)], [(b, None)], 0.5, 9, flip_rate=0.0)
    assert not problems and (figures["pixels_flipped"], figures["pixels_on_edge"]) == (0, 1)
    a[0, 1], b[0, 1] = 0.5002, 0.4998  # a second edge pixel on the one frame: masks differ
    figures, problems = compare_decisions([(a, None)], [(b, None)], 0.5, 9, flip_rate=0.0)
    assert figures["pixels_on_edge"] == 2 and any("one per frame" in p for p in problems)
    b[0, 1] = 0.5002
    a[0, 0] = 0.6  # clearly above: now a real disagreement
    figures, problems = compare_decisions([(a, None)], [(b, None)], 0.5, 9, flip_rate=0.0)
    assert figures["pixels_flipped"] == 1 and any("farther than" in p for p in problems)


def test_a_run_whose_export_is_refused_keeps_everything_and_says_how_to_export(
    synthetic_folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    import json

    import training.export as export
    from training.cli import main

    real_convert = export.convert

    def bad_convert(model, path, **kw):  # noqa: ANN001, ANN003, ANN202
        import keras

        return real_convert(keras.models.clone_model(model), path, **kw)  # fresh weights

    monkeypatch.setattr(export, "convert", bad_convert)
    run = tmp_path / "run"
    args = ["train", "--data", str(synthetic_folder), "--out", str(run), "--epochs", "1"]
    args += ["--steps-per-epoch", "2", "--image-size", "64", "--base-filters", "4"]
    capsys.readouterr()
    assert main([*args, "--batch-size", "4", "--progress", "none", "--no-xla"]) == 2
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    assert line.startswith("python -m training train: error:") and "--force" in line
    assert "Traceback" not in err and "max |Δ|" in line
    summary = json.loads((run / "summary.json").read_text())
    assert "not exported" in summary["export_error"]
    assert (run / "checkpoints" / "best.keras").is_file() and (run / "history.json").is_file()
    assert not json.loads((run / "export-verification.json").read_text())["passed"]
    assert not (run / "model.onnx").exists()
