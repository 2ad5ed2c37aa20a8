"""The TensorRT backend and builder driven through a fake tensorrt / cudart (no GPU needed).

These prove our own logic around the library: pinned/device buffers, chunking above the
profile's max batch, padding below its min, the error messages, freeing everything on close,
and the build CLI writing the engine, the timing cache and the card with the agreement.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import engines
import engines._tensorrt as trt_backend
from engines.build import BuildError, build_engine
from engines.card import ModelCard, card_path_for
from engines.predict import predict_class_maps
from engines.protocol import BackendUnavailable, ModelLoadError
from tests.engines import fake_tensorrt
from tests.engines.fake_tensorrt import FakeCudart, write_plan

CARD = ModelCard(name="mean", input_height=32, input_width=32, channels=1)


@pytest.fixture
def cudart(monkeypatch: pytest.MonkeyPatch) -> FakeCudart:
    fake = FakeCudart()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt)
    monkeypatch.setattr(trt_backend, "import_cudart", lambda path: fake)
    return fake


def _plan(tmp_path: Path, card: ModelCard = CARD, **kwargs: object) -> Path:
    path = write_plan(tmp_path / "mean.engine", hwc=(32, 32, 1), **kwargs)  # type: ignore[arg-type]
    card.save(card_path_for(path))
    return path


def test_infer_chunks_pads_and_frees(cudart: FakeCudart, tmp_path: Path) -> None:
    engine = engines.load_engine(_plan(tmp_path, lo=2, hi=8))
    assert engine.backend == "tensorrt" and isinstance(engine, engines.Engine)
    assert "Fake GPU 9000 (sm 8.9)" in repr(engine)
    context = fake_tensorrt.Runtime.last_engine.contexts[-1]
    batch = np.random.default_rng(0).random((19, 32, 32, 1), dtype=np.float32)
    out = engine.infer(batch)
    np.testing.assert_allclose(out, batch, atol=1e-7)
    # probe (1 -> padded to the profile min 2), then 19 = 8 + 8 + 3
    assert context.executed_batches == [2, 8, 8, 3]
    h2d = [n for kind, n in cudart.copies if kind == 1]
    assert h2d[-3:] == [8 * 32 * 32 * 4, 8 * 32 * 32 * 4, 3 * 32 * 32 * 4]
    prob = engines.predict_map(engine, np.full((50, 70), 128, np.uint8))
    np.testing.assert_allclose(prob, 128 / 255, atol=1e-6)
    assert len(cudart.live) == 4 and cudart.streams == 1  # 2 tensors x (pinned + device)
    engine.close()
    engine.close()
    assert cudart.live == {} and cudart.streams == 0
    with pytest.raises(RuntimeError, match="closed"):
        engine.infer(batch)


def test_deserialisation_failure_names_file_version_and_gpu(
    cudart: FakeCudart, tmp_path: Path
) -> None:
    path = tmp_path / "other-gpu.plan"
    path.write_bytes(b"\x00garbage")
    CARD.save(card_path_for(path))
    with pytest.raises(ModelLoadError) as info:
        engines.load_engine(path)
    message = str(info.value)
    for part in (
        "other-gpu.plan",
        "TensorRT 10.99.0-fake",
        "Fake GPU 9000",
        "magic tag",
        "rebuild",
    ):
        assert part in message, message


def test_engine_that_disagrees_with_card(cudart: FakeCudart, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"mean\.engine: engine input shape"):
        engines.load_engine(_plan(tmp_path, card=CARD.with_updates(input_height=64)))
    with pytest.raises(ModelLoadError, match=r"engine inputs \['input_1'\]"):
        engines.load_engine(_plan(tmp_path, input_name="input_1"))
    assert cudart.live == {}  # nothing leaked by the failed loads


def test_no_gpu_is_backend_unavailable(cudart: FakeCudart, tmp_path: Path) -> None:
    cudart.devices = 0
    with pytest.raises(BackendUnavailable, match="cudaErrorNoDevice.*use the .onnx model"):
        engines.load_engine(_plan(tmp_path))


def test_build_writes_engine_cache_and_card(
    cudart: FakeCudart, mean_model: Path, tmp_path: Path
) -> None:
    out, cache = tmp_path / "mean.engine", tmp_path / "timing.cache"
    result = build_engine(
        mean_model, out, min_batch=1, opt_batch=2, max_batch=4, timing_cache=cache
    )
    assert out.is_file() and cache.read_bytes() == b"fresh-cache+tuned"
    assert fake_tensorrt.Builder.network_flags[-1] == 1 << 5  # strongly typed network
    saved = json.loads(card_path_for(out).read_text())
    agreement = saved["agreement"]
    assert agreement["tensorrt_max_abs_diff"] == result.max_abs_diff < 1e-6
    assert agreement["tensorrt_batch_profile"] == [1, 2, 4]
    assert (
        agreement["tensorrt_gpu"] == "Fake GPU 9000 (sm 8.9)" and agreement["tensorrt_samples"] > 0
    )
    assert saved["input_height"] == 32 and saved["name"] == "mean"
    engine = engines.load_engine(out)
    assert engine.card.agreement["tensorrt_version"] == "10.99.0-fake"
    engine.close()


def test_build_reports_parse_errors(cudart: FakeCudart, tmp_path: Path) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    CARD.save(card_path_for(bad))
    with pytest.raises(BuildError, match=r"bad\.onnx: the TensorRT ONNX parser rejected the model"):
        build_engine(bad, tmp_path / "bad.engine")


def test_build_cli_success_prints_json(
    cudart: FakeCudart, mean_model: Path, tmp_path: Path, capsys
) -> None:  # noqa: ANN001
    from engines.__main__ import main

    out = tmp_path / "cli.engine"
    assert main(["build", "--onnx", str(mean_model), "--out", str(out), "--max-batch", "4"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["engine"] == str(out) and summary["max_abs_diff"] < 1e-6


CLASS_CARD = CARD.with_updates(
    class_names=("crack", "stain", "spot"), class_output_name="class_probability"
)


def test_class_output_reaches_the_judge(cudart: FakeCudart, tmp_path: Path) -> None:
    """A multi-class engine: infer_classes gives both outputs, infer copies back only the
    defect map, and predict_class_maps stitches the class map as with ONNX Runtime."""
    path = _plan(tmp_path, card=CLASS_CARD, hi=4, class_output_name="class_probability",
                 classes=3)  # fmt: skip
    engine = engines.load_engine(path)
    batch = np.random.default_rng(1).random((6, 32, 32, 1), dtype=np.float32)
    d2h = len([1 for kind, _ in cudart.copies if kind == 2])
    prob, cls = engine.infer_classes(batch)
    assert prob.shape == (6, 32, 32, 1) and cls.shape == (6, 32, 32, 3)
    np.testing.assert_allclose(cls[..., 0], batch[..., 0], atol=1e-7)
    np.testing.assert_allclose(cls.sum(axis=-1), 1.0, atol=1e-6)
    assert len([1 for kind, _ in cudart.copies if kind == 2]) - d2h == 2 * 2  # 2 chunks x 2
    d2h = len([1 for kind, _ in cudart.copies if kind == 2])
    np.testing.assert_allclose(engine.infer(batch), prob)
    assert len([1 for kind, _ in cudart.copies if kind == 2]) - d2h == 2  # the defect map only
    ((frame_prob, frame_cls),) = predict_class_maps(engine, [np.full((40, 50), 51, np.uint8)])
    assert frame_cls is not None and frame_cls.shape == (40, 50, 3)
    np.testing.assert_allclose(frame_cls[..., 0], 0.2, atol=1e-6)
    np.testing.assert_allclose(frame_prob, 0.2, atol=1e-6)
    engine.close()
    assert cudart.live == {}


def test_class_output_missing_or_of_another_width_is_refused(
    cudart: FakeCudart, tmp_path: Path
) -> None:
    with pytest.raises(ModelLoadError, match=r"no class output 'class_probability'.*3 classes"):
        engines.load_engine(_plan(tmp_path, card=CLASS_CARD))
    with pytest.raises(ModelLoadError, match=r"expected \(N, 32, 32, 3\)"):
        engines.load_engine(_plan(tmp_path, card=CLASS_CARD,
                                  class_output_name="class_probability", classes=2))  # fmt: skip
    assert cudart.live == {}


def test_build_of_a_class_model_keeps_and_verifies_the_class_output(
    cudart: FakeCudart, tmp_path: Path
) -> None:
    from tests.engines.test_multiclass_predict import make_class_model

    onnx_path = make_class_model(tmp_path / "classes.onnx")
    result = build_engine(onnx_path, tmp_path / "classes.engine", max_batch=4)
    assert result.max_abs_diff < 1e-6  # defect and class maps both compared
    engine = engines.load_engine(result.engine_path)
    assert engine.card.class_output_name == "class_probability"
    _, cls = engine.infer_classes(np.full((1, 32, 32, 1), 0.25, np.float32))
    np.testing.assert_allclose(cls[0, 0, 0], [0.25, 0.75, 0.0], atol=1e-7)
    engine.close()
