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
