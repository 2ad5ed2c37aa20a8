"""One contract test, run against every backend (TensorRT only where it and a GPU exist)."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import engines
from engines.protocol import BackendUnavailable, Engine
from tests.engines.conftest import conv_reference


def _tensorrt_skip_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "tensorrt is not installed (optional extra 'gpu': pip install 'inspection-station[gpu]')"
    from engines._tensorrt import gpu_description, import_cudart

    try:
        gpu_description(import_cudart("probe"), "probe")
    except BackendUnavailable as exc:
        return f"no CUDA device: {exc}"
    return None


def _open_onnxruntime(onnx_path: Path, tmp_path: Path) -> Engine:
    return engines.load_engine(onnx_path)


def _open_tensorrt(onnx_path: Path, tmp_path: Path) -> Engine:
    reason = _tensorrt_skip_reason()
    if reason:
        pytest.skip(reason)
    from engines.build import build_engine

    out = tmp_path / onnx_path.with_suffix(".engine").name
    result = build_engine(onnx_path, out, min_batch=1, opt_batch=4, max_batch=8)
    assert result.card.agreement["tensorrt_max_abs_diff"] <= 1e-3
    return engines.load_engine(out)


BACKENDS: list = [
    pytest.param("onnxruntime", _open_onnxruntime, id="onnxruntime"),
    pytest.param("tensorrt", _open_tensorrt, id="tensorrt", marks=pytest.mark.gpu),
]


@pytest.mark.parametrize(("backend", "opener"), BACKENDS)
def test_engine_contract(
    backend: str,
    opener: Callable[[Path, Path], Engine],
    conv_model: Path,
    mean_model: Path,
    tmp_path: Path,
) -> None:
    engine = opener(conv_model, tmp_path)
    try:
        assert isinstance(engine, Engine)
        assert engine.backend == backend
        assert engine.card.input_shape == (32, 32, 1)
        rng = np.random.default_rng(1)
        # 1, a few, and more than the TensorRT profile's max batch (8): chunking must be invisible
        for n in (1, 3, 20):
            batch = rng.random((n, 32, 32, 1), dtype=np.float32)
            out = engine.infer(batch)
            assert out.shape == (n, 32, 32, 1)
            assert out.dtype == np.float32
            np.testing.assert_allclose(out, conv_reference(batch), atol=1e-3)
        with pytest.raises(ValueError, match="does not match"):
            engine.infer(np.zeros((1, 16, 16, 1), np.float32))
        frame = (rng.random((70, 45)) * 255).astype(np.uint8)
        prob = engines.predict_map(engine, frame)
        assert prob.shape == (70, 45)
        assert 0.0 <= float(prob.min()) and float(prob.max()) <= 1.0
    finally:
        engine.close()
    engine.close()  # closing twice is harmless
    with pytest.raises(RuntimeError, match="closed"):
        engine.infer(np.zeros((1, 32, 32, 1), np.float32))

    identity = opener(mean_model, tmp_path)
    try:
        frame = (rng.random((100, 77)) * 65535).astype(np.uint16)
        np.testing.assert_allclose(engines.predict_map(identity, frame), frame / 65535.0, atol=1e-5)
    finally:
        identity.close()
