"""Every way a model file can be unusable gives ModelLoadError naming the file and the problem."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import engines
from engines.card import ModelCard, card_path_for
from engines.protocol import BackendUnavailable, ModelLoadError


def _load_error(path: Path, **kwargs: object) -> str:
    with pytest.raises(ModelLoadError) as info:
        engines.load_engine(path, **kwargs)  # type: ignore[arg-type]
    message = str(info.value)
    assert path.name in message, message
    return message


def test_missing_file(tmp_path: Path) -> None:
    assert "not found" in _load_error(tmp_path / "absent.onnx")


def test_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"x")
    assert "unknown model type" in _load_error(path)


def test_missing_card(tmp_path: Path, mean_model: Path) -> None:
    path = tmp_path / "nocard.onnx"
    path.write_bytes(mean_model.read_bytes())
    assert "card not found" in _load_error(path)


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    ModelCard(name="c", input_height=32, input_width=32).save(card_path_for(path))
    assert "not a loadable ONNX model" in _load_error(path)


def test_truncated_file(tmp_path: Path, conv_model: Path) -> None:
    path = tmp_path / "truncated.onnx"
    path.write_bytes(conv_model.read_bytes()[:150])
    ModelCard(name="t", input_height=32, input_width=32).save(card_path_for(path))
    _load_error(path)


def test_card_input_size_differs(mean_model: Path) -> None:
    card = ModelCard(name="m", input_height=64, input_width=64)
    message = _load_error(mean_model, card=card)
    assert "64x64x1" in message and "height 32 != 64" in message


def test_card_channels_differ(mean_model: Path) -> None:
    card = ModelCard(name="m", input_height=32, input_width=32, channels=3)
    assert "channels 1 != 3" in _load_error(mean_model, card=card)


def test_card_input_name_differs(mean_model: Path) -> None:
    card = ModelCard(name="m", input_height=32, input_width=32, input_name="input_1")
    assert "'input_1'" in _load_error(mean_model, card=card)


def test_card_output_name_differs(mean_model: Path) -> None:
    card = ModelCard(name="m", input_height=32, input_width=32, output_name="mask")
    assert "no output named 'mask'" in _load_error(mean_model, card=card)


def test_output_with_two_channels(model_factory: Callable[..., Path]) -> None:
    path = model_factory("two.onnx", out_channels=2)
    assert "expected NxHxWx1" in _load_error(path)


def test_bad_thread_setting(mean_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INSPECTION_ORT_THREADS", "many")
    assert "INSPECTION_ORT_THREADS" in _load_error(mean_model)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="tensorrt present")
def test_engine_without_tensorrt_says_what_to_install(tmp_path: Path) -> None:
    path = tmp_path / "model.engine"
    path.write_bytes(b"plan")
    ModelCard(name="e", input_height=32, input_width=32).save(card_path_for(path))
    with pytest.raises(BackendUnavailable, match="pip install") as info:
        engines.load_engine(path)
    assert "model.engine" in str(info.value)


def test_fixed_batch_model_is_fed_in_chunks(model_factory: Callable[..., Path]) -> None:
    engine = engines.load_engine(model_factory("fixed.onnx", batch=2))
    batch = np.random.default_rng(0).random((5, 32, 32, 1), dtype=np.float32)
    np.testing.assert_allclose(engine.infer(batch), batch, atol=1e-6)


def test_colour_model_averages_channels(model_factory: Callable[..., Path]) -> None:
    engine = engines.load_engine(model_factory("rgb.onnx", c=3))
    assert engine.card.channels == 3
    batch = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    np.testing.assert_allclose(engine.infer(batch), batch.mean(axis=3, keepdims=True), atol=1e-6)


def test_import_engines_does_not_import_backends() -> None:
    import subprocess
    import sys

    code = (
        "import sys, engines, engines.predict, engines.scoring, engines.build;"
        "heavy = [m for m in ('onnxruntime', 'tensorrt', 'cuda') if m in sys.modules];"
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(("shift", "refused"), [(0.005, False), (0.05, True)])
def test_a_tensorrt_engine_runs_the_golden_with_the_gpu_floor(
    tmp_path: Path, mean_model: Path, monkeypatch: pytest.MonkeyPatch, shift: float, refused: bool
) -> None:
    """The fake TensorRT engine (output = input) against a golden recorded by ONNX Runtime on
    the same identity model, its mean shifted: 0.005 is inside the 0.01 GPU floor (a CPU model
    would be refused at 1e-4), 0.05 is not."""
    import sys

    import engines._tensorrt as trt_backend
    from engines import selftest
    from tests.engines import fake_tensorrt

    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt)
    monkeypatch.setattr(trt_backend, "import_cudart", lambda path: fake_tensorrt.FakeCudart())
    onnx_copy = tmp_path / "mean.onnx"
    onnx_copy.write_bytes(mean_model.read_bytes())
    ModelCard.load(card_path_for(mean_model)).save(card_path_for(onnx_copy))
    frame = np.random.default_rng(1).integers(0, 255, (40, 40), dtype=np.uint8)
    selftest.record_golden(onnx_copy, [frame])
    card = ModelCard.load(card_path_for(onnx_copy))
    golden = {**card.golden, "output_digest": dict(card.golden["output_digest"])}
    golden["output_digest"]["mean"] += shift
    plan = fake_tensorrt.write_plan(tmp_path / "mean.engine", hwc=(32, 32, 1))
    card.with_updates(golden=golden).save(card_path_for(plan))
    if refused:
        message = _load_error(plan)
        assert "golden self-test failed: mean difference 0.05 > tolerance 0.01" in message
    else:
        engines.load_engine(plan).close()


def test_weights_damaged_on_disk_are_refused(tmp_path: Path) -> None:
    """Bytes of the demo U-Net's largest weight tensor overwritten in the file itself: the
    protobuf still parses and ONNX Runtime still loads it, so only the output can tell."""
    import onnx
    from onnx import numpy_helper

    root = Path(__file__).resolve().parents[2] / "resources" / "models"
    data = bytearray((root / "demo.onnx").read_bytes())
    proto = onnx.load(str(root / "demo.onnx"))
    biggest = max(proto.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    raw = numpy_helper.to_array(biggest).astype("<f4").tobytes()
    start = bytes(data).find(raw[:256])
    assert start > 0, "the tensor's bytes are stored raw in the file"
    rng = np.random.default_rng(0)
    for offset in range(start + 1024, start + 1024 + 4096, 64):  # 4 bytes in every 64
        data[offset : offset + 4] = rng.bytes(4)
    path = tmp_path / "demo.onnx"
    path.write_bytes(bytes(data))
    ModelCard.load(root / "demo.json").save(card_path_for(path))
    message = _load_error(path)
    assert "golden self-test failed" in message or "blank tile" in message, message
