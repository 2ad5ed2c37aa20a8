"""The model x backend combinations ``python -m bench engines`` can time, each opened lazily.

Every variant is opened as an :class:`engines.Engine` (``infer`` + ``card``) so one code path
(:func:`engines.predict_maps`) times and scores them all: the station's ONNX Runtime engine,
OpenCV's DNN module on the same ONNX file, TensorFlow (the baseline the issue measures against)
and TensorRT where a GPU exists. A variant that cannot run here is kept with the reason, so the
table says what was skipped and why instead of silently leaving a row out.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bench._machine import MODELS, relative
from engines import Engine, ModelCard, load_engine
from engines.card import load_card_for

BACKENDS = ("tensorflow", "onnxruntime", "opencv", "tensorrt")
# The committed DAGM Class1 models: the 16-filter one at half scale (FP32 / INT8 / FP16) and the
# 8-filter one at quarter scale the recipe runs (FP32 / INT8); each card reports its own accuracy.
DAGM_MODELS = (
    ("dagm-class1", "fp32"), ("dagm-class1-int8", "int8"), ("dagm-class1-fp16", "fp16"),
    ("dagm-class1-fast", "fp32"), ("dagm-class1-fast-int8", "int8"),
)  # fmt: skip


@dataclass
class Variant:
    """One row group of the table: a model on a backend (timed at every batch size)."""

    name: str
    backend: str
    model: str  # file (repository-relative) or what was built
    filters: int
    input: int  # model input side in px
    frame_scale: float
    precision: str
    weights: str  # "DAGM", "synthetic demo", "random"
    opener: Callable[[], Engine] | None = None
    skip: str | None = None  # why the variant did not run
    scored: bool = False  # accuracy on the DAGM validation split is meaningful
    extra: dict[str, Any] = field(default_factory=dict)


class CvDnnEngine:
    """OpenCV DNN on an ONNX file, behind the Engine protocol (CPU, its own kernels)."""

    backend = "opencv-dnn"

    def __init__(self, path: Path, card: ModelCard, threads: int | None = None) -> None:
        import cv2

        if threads:
            cv2.setNumThreads(threads)
        self.card = card
        self._net = cv2.dnn.readNetFromONNX(str(path))
        self._net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        self._net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)

    def infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        self._net.setInput(np.ascontiguousarray(batch, dtype=np.float32))
        return np.asarray(self._net.forward(), np.float32).reshape(batch.shape[:3] + (1,))

    def close(self) -> None:
        self._net = None


class TfEngine:
    """A Keras model called through one traced ``tf.function`` (no per-call Python overhead)."""

    backend = "tensorflow"

    def __init__(self, model: Any, card: ModelCard) -> None:
        import tensorflow as tf

        self.card = card
        spec = tf.TensorSpec((None, *card.input_shape), tf.float32)
        self._fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])

    def infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        return np.asarray(self._fn(np.ascontiguousarray(batch, np.float32)), np.float32)

    def close(self) -> None:
        self._fn = None


class RandomNets:
    """TinyUNets with random weights built by training/model.py (TensorFlow), cached per shape.

    The issue's baseline is TensorFlow-CPU running the 16-filter TinyUNet on a 512x512 frame;
    random weights run at the same speed as trained ones. The same nets exported to ONNX give
    speed rows for shapes no trained model exists for yet (e.g. an 8-filter student).
    """

    def __init__(self, threads: int | None) -> None:
        self._threads = threads
        self._models: dict[int, Any] = {}
        self._tmp = Path(tempfile.mkdtemp(prefix="bench-nets-"))

    def keras(self, filters: int) -> Any:
        if filters not in self._models:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            import keras
            import tensorflow as tf

            if self._threads and not self._models:
                tf.config.threading.set_intra_op_parallelism_threads(self._threads)
                tf.config.threading.set_inter_op_parallelism_threads(1)
            keras.utils.set_random_seed(0)
            from training.model import tiny_unet

            self._models[filters] = tiny_unet(1, filters)
        return self._models[filters]

    def tf_engine(self, filters: int, size: int) -> Engine:
        card = ModelCard(name=f"tf-tinyunet-f{filters}-{size}", input_height=size, input_width=size)
        return TfEngine(self.keras(filters), card)  # type: ignore[return-value]

    def onnx(self, filters: int, size: int, frame_scale: float) -> tuple[Path, ModelCard]:
        path = self._tmp / f"tinyunet-f{filters}-{size}.onnx"
        card = ModelCard(
            name=path.stem, input_height=size, input_width=size, frame_scale=frame_scale
        )
        if not path.is_file():
            from training.export import convert

            convert(self.keras(filters), path, input_shape=(size, size, 1))
        return path, card


def _ort(path: Path, card: ModelCard | None, threads: int | None) -> Callable[[], Engine]:
    return lambda: load_engine(path, card=card, threads=threads, check_golden=card is None)


def _cv(path: Path, threads: int | None) -> Callable[[], Engine]:
    return lambda: CvDnnEngine(path, load_card_for(path), threads)  # type: ignore[return-value]


def _trt(onnx: Path, out_dir: Path) -> Callable[[], Engine]:
    def open_() -> Engine:
        from engines.build import build_engine

        plan = out_dir / f"{onnx.stem}.engine"
        build_engine(onnx, plan, max_batch=16)
        return load_engine(plan)

    return open_


def tensorrt_unavailable() -> str | None:
    """Why TensorRT cannot run here (the engine's own messages), or None when it can."""
    from engines._tensorrt import gpu_description, import_cudart, import_tensorrt
    from engines.protocol import ModelLoadError

    try:
        import_tensorrt("tensorrt")
        gpu_description(import_cudart("cuda-python"), "CUDA device")
    except ModelLoadError as exc:
        return str(exc)
    except Exception as exc:  # a driver without a device raises the CUDA error itself
        return f"no usable CUDA device ({exc})"
    return None


def dagm_variants(backends: set[str], threads: int | None, trt_dir: Path) -> list[Variant]:
    """The bundled DAGM Class1 models (:data:`DAGM_MODELS`) and the demo model, per backend."""
    rows: list[Variant] = []
    trt_reason = tensorrt_unavailable() if "tensorrt" in backends else None
    files = [*DAGM_MODELS, ("demo", "fp32")]
    for stem, precision in files:
        path = MODELS / f"{stem}.onnx"
        if not path.is_file():
            continue
        card = load_card_for(path)
        filters = int(card.training.get("base_filters", 0) or 0)
        is_dagm = stem.startswith("dagm")
        common = dict(
            model=relative(path), filters=filters, input=card.input_height,
            frame_scale=card.frame_scale, precision=precision,
            weights="DAGM" if is_dagm else "synthetic demo", scored=is_dagm,
        )  # fmt: skip
        if "onnxruntime" in backends:
            rows.append(
                Variant(f"{stem} ORT", "onnxruntime", opener=_ort(path, None, threads), **common)
            )  # type: ignore[arg-type]
        if "opencv" in backends:
            rows.append(
                Variant(f"{stem} OpenCV DNN", "opencv-dnn", opener=_cv(path, threads), **common)
            )  # type: ignore[arg-type]
        if "tensorrt" in backends and is_dagm:
            rows.append(
                Variant(
                    f"{stem} TensorRT", "tensorrt", skip=trt_reason,
                    opener=None if trt_reason else _trt(path, trt_dir), **common,  # type: ignore[arg-type]
                )
            )  # fmt: skip
    return rows


def random_variants(
    backends: set[str], nets: RandomNets | None, shapes: list[tuple[int, int, float]],
    threads: int | None, tf_reason: str | None,
) -> list[Variant]:  # fmt: skip
    """TensorFlow baseline (TinyUNet-16 at 512) first, then ONNX Runtime on random-weight nets.

    ``shapes`` are ``(filters, input side, frame_scale)`` for the ONNX rows.
    """
    rows: list[Variant] = []
    base = dict(model="training/model.py tiny_unet (random weights)", precision="fp32",
                weights="random")  # fmt: skip
    if "tensorflow" in backends:
        rows.append(
            Variant(
                "TF TinyUNet-16 512 (baseline)", "tensorflow", filters=16, input=512,
                frame_scale=1.0, skip=tf_reason,
                opener=None if nets is None else (lambda: nets.tf_engine(16, 512)), **base,  # type: ignore[arg-type]
            )
        )  # fmt: skip
    if "onnxruntime" not in backends:
        return rows
    for filters, size, scale in shapes:

        def opener(f: int = filters, s: int = size, sc: float = scale) -> Engine:
            assert nets is not None
            path, card = nets.onnx(f, s, sc)
            return load_engine(path, card=card, threads=threads, check_golden=False)

        rows.append(
            Variant(
                f"TinyUNet-{filters} {size} x{scale:g} ORT (random)", "onnxruntime",
                filters=filters, input=size, frame_scale=scale, skip=tf_reason,
                opener=None if nets is None else opener, **base,  # type: ignore[arg-type]
            )
        )  # fmt: skip
    return rows


def tensorflow_unavailable() -> str | None:
    try:
        from importlib.util import find_spec

        if find_spec("tensorflow") is None or find_spec("tf2onnx") is None:
            return "TensorFlow / tf2onnx not installed (pip install -e '.[train]')"
    except ValueError as exc:
        return str(exc)
    return None
