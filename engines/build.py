"""Build a TensorRT engine from an ONNX model, check it against ONNX Runtime, write its card.

Strongly typed network: the precision is whatever the ONNX file says (FP32; FP16 converted with
float32 I/O; INT8 as explicit Q/DQ), which is the only way TensorRT 11 accepts, and works the same
on TensorRT 10. No FP16/INT8 builder flags, no calibrator. One optimisation profile covers the
batch range the station uses; a timing cache makes rebuilds on the same GPU fast.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from engines.card import CardError, ModelCard, card_path_for, load_card_for
from engines.protocol import ModelLoadError

IMAGE_SUFFIXES = {".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff"}
DEFAULT_TOLERANCE = 0.05  # max |Δ| in probability units between TensorRT and ONNX Runtime


class BuildError(RuntimeError):
    """Building or checking the engine failed (the message says which step and why)."""


@dataclass(frozen=True)
class BuildResult:
    """What :func:`build_engine` produced."""

    engine_path: Path
    card_path: Path
    card: ModelCard
    max_abs_diff: float


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the engine ships like any other file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_samples_dir() -> Path | None:
    """The bundled ``resources/samples`` folder, when the package is installed with it."""
    try:
        from importlib.resources import files

        folder = Path(str(files("resources") / "samples"))
    except (ImportError, TypeError):
        return None
    return folder if folder.is_dir() else None


def sample_images(
    card: ModelCard, folder: Path | None = None, *, limit: int = 8, seed: int = 0
) -> list[NDArray]:
    """Images to compare the two runtimes on: up to ``limit`` files from ``folder``, else
    seeded smooth-noise frames 1.5x the model input (so tiling and stitching are exercised)."""
    images: list[NDArray] = []
    if folder is not None and folder.is_dir():
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
                if image is not None:
                    images.append(image)
            if len(images) >= limit:
                break
    if images:
        return images
    rng = np.random.default_rng(seed)
    h, w = (
        round(card.input_height * 1.5 / card.frame_scale),
        round(card.input_width * 1.5 / card.frame_scale),
    )
    for _ in range(min(limit, 4)):
        noise = rng.random((h, w, card.channels), dtype=np.float32)
        images.append(cv2.GaussianBlur(noise, (0, 0), 3.0))
    return images


def _parse(trt: Any, network: Any, logger: Any, onnx_path: Path) -> None:
    parser = trt.OnnxParser(network, logger)
    # parse_from_file (not parse(bytes)) so weights stored as external data next to the file load
    if not parser.parse_from_file(str(onnx_path)):
        errors = []
        for i in range(parser.num_errors):
            err = parser.get_error(i)
            errors.append(f"node {err.node()}: {err.desc()}")
        detail = "; ".join(errors) or logger.last()
        raise BuildError(f"{onnx_path}: the TensorRT ONNX parser rejected the model: {detail}")


def _load_timing_cache(config: Any, path: Path | None) -> Any:
    data = path.read_bytes() if path is not None and path.is_file() else b""
    cache = config.create_timing_cache(data)
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        # A cache from another GPU or TensorRT version is useless, not fatal: start an empty one.
        cache = config.create_timing_cache(b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def build_serialized(
    onnx_path: Path,
    card: ModelCard,
    *,
    min_batch: int,
    opt_batch: int,
    max_batch: int,
    timing_cache: Path | None = None,
    workspace_mb: int | None = None,
) -> tuple[bytes, str, str]:
    """Parse and build; returns ``(plan bytes, tensorrt version, gpu description)``.

    Raises
    ------
    BackendUnavailable
        No tensorrt / cuda-python / GPU.
    BuildError
        Parse or build failure, or an ONNX input that disagrees with the card.
    """
    from engines._tensorrt import gpu_description, import_cudart, import_tensorrt, make_logger

    trt = import_tensorrt(onnx_path)
    gpu = gpu_description(import_cudart(onnx_path), onnx_path)
    logger = make_logger(trt)
    builder = trt.Builder(logger)
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(0 if strongly_typed is None else 1 << int(strongly_typed))
    _parse(trt, network, logger, onnx_path)

    if network.num_inputs != 1:
        raise BuildError(f"{onnx_path}: expected one input, the network has {network.num_inputs}")
    inp = network.get_input(0)
    shape = tuple(int(d) for d in inp.shape)
    if inp.name != card.input_name or len(shape) != 4 or shape[1:] != card.input_shape:
        raise BuildError(
            f"{onnx_path}: input {inp.name!r} {shape} does not match the card "
            f"({card.input_name!r}, N x {card.input_height} x {card.input_width} x {card.channels})"
        )
    config = builder.create_builder_config()
    if workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    cache = _load_timing_cache(config, timing_cache)
    profile = builder.create_optimization_profile()
    dims = card.input_shape
    profile.set_shape(inp.name, (min_batch, *dims), (opt_batch, *dims), (max_batch, *dims))
    config.add_optimization_profile(profile)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise BuildError(
            f"{onnx_path}: TensorRT could not build an engine on {gpu}: {logger.last()}"
        )
    if timing_cache is not None:
        # the builder extends the cache it was given; read it back from the config as NVIDIA's
        # samples do, in case the binding hands out a different wrapper object
        tuned = config.get_timing_cache() or cache
        _atomic_write(timing_cache, bytes(tuned.serialize()))
    return bytes(plan), str(trt.__version__), gpu


def compare_engines(
    reference: Any, candidate: Any, images: Sequence[NDArray], *, max_batch: int
) -> float:
    """Max |Δ| between the two engines' full-resolution maps on ``images``: the defect maps
    and, for a multi-class model, the class maps."""
    from engines.predict import predict_class_maps

    ref = predict_class_maps(reference, images, max_batch=max_batch)
    got = predict_class_maps(candidate, images, max_batch=max_batch)
    diffs = []
    for (a, a_cls), (b, b_cls) in zip(ref, got, strict=True):
        diffs.append(np.max(np.abs(a - b)))
        if (a_cls is None) != (b_cls is None):
            raise BuildError("one engine gives a class map, the other none")
        if a_cls is not None and b_cls is not None:
            diffs.append(np.max(np.abs(a_cls - b_cls)))
    return float(max(diffs))


def build_engine(
    onnx_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    min_batch: int = 1,
    opt_batch: int = 4,
    max_batch: int = 16,
    timing_cache: str | os.PathLike[str] | None = None,
    samples: str | os.PathLike[str] | None = None,
    workspace_mb: int | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> BuildResult:
    """Build ``out_path`` from ``onnx_path``, verify it, and write its card beside it.

    Parameters
    ----------
    onnx_path
        ONNX model with its card (``MODEL.json``) beside it.
    out_path
        ``.engine`` / ``.plan`` to write (atomically).
    min_batch, opt_batch, max_batch
        The optimisation profile's batch range (``1 <= min <= opt <= max``).
    timing_cache
        File to load the timing cache from (if it exists) and save it to.
    samples
        Folder of images for the agreement check (default: bundled samples, else synthetic).
    workspace_mb
        Builder workspace limit; default TensorRT's (the device's memory).
    tolerance
        Largest acceptable max |Δ| against ONNX Runtime.

    Returns
    -------
    BuildResult
        Paths, the engine's card (the ONNX card plus ``agreement.tensorrt_*``) and max |Δ|.

    Raises
    ------
    BackendUnavailable
        tensorrt, cuda-python or a CUDA GPU is absent.
    BuildError
        Bad arguments, unusable ONNX/card, parse/build failure, or disagreement above tolerance.
    """
    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise BuildError(f"need 1 <= min ({min_batch}) <= opt ({opt_batch}) <= max ({max_batch})")
    if out_path.suffix.lower() not in (".engine", ".plan"):
        raise BuildError(f"{out_path}: the output must end in .engine or .plan")
    if not onnx_path.is_file():
        raise BuildError(f"{onnx_path}: ONNX model not found")
    try:
        card = load_card_for(onnx_path)
    except CardError as exc:
        raise BuildError(f"{onnx_path}: {exc}") from None

    cache = Path(timing_cache) if timing_cache is not None else None
    plan, trt_version, gpu = build_serialized(
        onnx_path,
        card,
        min_batch=min_batch,
        opt_batch=opt_batch,
        max_batch=max_batch,
        timing_cache=cache,
        workspace_mb=workspace_mb,
    )
    _atomic_write(out_path, plan)

    from engines._onnxruntime import OnnxRuntimeEngine
    from engines._tensorrt import TensorRTEngine

    folder = Path(samples) if samples is not None else default_samples_dir()
    images = sample_images(card, folder)
    try:
        reference = OnnxRuntimeEngine(onnx_path, card)
        candidate = TensorRTEngine(out_path, card)
    except ModelLoadError as exc:
        raise BuildError(f"{out_path}: built, but it cannot be loaded back: {exc}") from None
    try:
        diff = compare_engines(reference, candidate, images, max_batch=max_batch)
    finally:
        candidate.close()
        reference.close()

    agreement = dict(card.agreement)
    agreement.update(
        tensorrt_max_abs_diff=diff,
        tensorrt_samples=len(images),
        tensorrt_version=trt_version,
        tensorrt_gpu=gpu,
        tensorrt_batch_profile=[min_batch, opt_batch, max_batch],
        tensorrt_engine=out_path.name,
    )
    engine_card = card.with_updates(agreement=agreement)
    card_path = engine_card.save(card_path_for(out_path))
    if diff > tolerance:
        raise BuildError(
            f"{out_path}: TensorRT disagrees with ONNX Runtime by max |Δ| = {diff:.3g} "
            f"> tolerance {tolerance:g} on {len(images)} sample images (recorded in {card_path})"
        )
    return BuildResult(out_path, card_path, engine_card, diff)
