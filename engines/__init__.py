"""Inference engines behind one small protocol, plus preprocessing, tiling and scoring.

``load_engine`` picks the backend by file type and imports it only then (a registry of module
names, not of imported modules), so ``import engines`` works on a machine without TensorRT, CUDA
or even ONNX Runtime; a missing library surfaces as :class:`BackendUnavailable` when a model of
that kind is loaded.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from engines.card import CardError, ModelCard, card_path_for, load_card_for
from engines.predict import predict_map, predict_maps
from engines.preprocess import to_model_input
from engines.protocol import BackendUnavailable, Engine, ModelLoadError
from engines.selftest import check_engine, output_fault

__all__ = [
    "BackendUnavailable",
    "CardError",
    "Engine",
    "ModelCard",
    "ModelLoadError",
    "backend_for",
    "card_path_for",
    "load_card_for",
    "load_engine",
    "output_fault",
    "predict_map",
    "predict_maps",
    "to_model_input",
]

# suffix -> module that provides ``open_engine(path, card, *, providers, threads)``
_BACKENDS: dict[str, str] = {
    ".onnx": "engines._onnxruntime",
    ".engine": "engines._tensorrt",
    ".plan": "engines._tensorrt",
}


def backend_for(path: str | os.PathLike[str]) -> str:
    """Name of the backend that runs ``path`` ("onnxruntime" or "tensorrt").

    Raises
    ------
    ModelLoadError
        For a suffix no backend handles.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in _BACKENDS:
        known = ", ".join(sorted(_BACKENDS))
        raise ModelLoadError(f"{path}: unknown model type {suffix!r} (expected one of {known})")
    return _BACKENDS[suffix].removeprefix("engines._")


def load_engine(
    path: str | os.PathLike[str],
    *,
    card: ModelCard | None = None,
    providers: list[str] | None = None,
    threads: int | None = None,
    check_golden: bool = True,
) -> Engine:
    """Open a model file with the backend its type calls for.

    Parameters
    ----------
    path
        ``.onnx`` (ONNX Runtime) or ``.engine`` / ``.plan`` (TensorRT).
    card
        The model card; default: read from :func:`~engines.card.card_path_for` (``model.json``).
    providers
        ONNX Runtime execution providers, in priority order (default: CUDA when present, CPU).
        Ignored by TensorRT.
    threads
        ONNX Runtime intra-op threads (default: ``$INSPECTION_ORT_THREADS`` or physical cores).
        Ignored by TensorRT.
    check_golden
        Run the card's golden self-test (default). Off only for (re)recording the golden.

    Returns
    -------
    Engine
        Loaded, checked against the card, probed with one inference, and passed the card's
        golden self-test (:mod:`engines.selftest`; a card without one loads with a warning).

    Raises
    ------
    ModelLoadError
        Missing file, unknown type, missing/bad card, corrupt model, or input/output shape,
        channels or names that differ from the card, output that is not finite or outside
        [0, 1], or a golden self-test that fails. The message starts with the file path.
    BackendUnavailable
        The backend's library or device is absent (subclass of ModelLoadError); the message says
        what to install.
    """
    path = Path(path)
    backend_for(path)  # raises the "unknown model type" error first
    module_name = _BACKENDS[path.suffix.lower()]
    if not path.is_file():
        raise ModelLoadError(f"{path}: model file not found")
    if card is None:
        try:
            card = load_card_for(path)
        except CardError as exc:
            raise ModelLoadError(f"{path}: {exc}") from None
    module = importlib.import_module(module_name)
    engine = module.open_engine(path, card, providers=providers, threads=threads)
    if not check_golden:
        return engine
    try:
        check_engine(engine, str(path))
    except BaseException:
        engine.close()  # a refused engine must not hold its session or GPU memory
        raise
    return engine
