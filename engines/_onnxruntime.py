"""ONNX Runtime backend: CPU everywhere, the CUDA execution provider first when it is present.

``onnxruntime`` is imported inside functions only, so importing this module never fails; a
missing library surfaces as :class:`~engines.protocol.BackendUnavailable` at load time.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engines.card import ModelCard
from engines.options import ort_session_options
from engines.protocol import BackendUnavailable, ModelLoadError
from engines.selftest import output_fault

BACKEND = "onnxruntime"
PIP_HINT = "pip install onnxruntime (or onnxruntime-gpu for the CUDA provider)"


def _import_ort(path: Path) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailable(
            f"{path}: ONNX Runtime is not installed ({exc}); {PIP_HINT}"
        ) from None
    return ort


def default_providers(ort: Any = None) -> list[str]:
    """``CUDAExecutionProvider`` first when this onnxruntime build has it, then the CPU."""
    if ort is None:
        import onnxruntime

        ort = onnxruntime
    available = ort.get_available_providers()
    order = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return [p for p in order if p in available] or ["CPUExecutionProvider"]


def _dims(shape: list[Any]) -> str:
    return "x".join(
        str(d) if isinstance(d, int) else "N" if i == 0 else "?" for i, d in enumerate(shape)
    )


def _check_io(path: Path, session: Any, card: ModelCard) -> int | None:
    """Compare the graph's I/O with the card; return a fixed batch size, or None if dynamic."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1:
        names = [i.name for i in inputs]
        raise ModelLoadError(f"{path}: expected one input, the model has {len(inputs)} ({names})")
    inp = inputs[0]
    if inp.name != card.input_name:
        raise ModelLoadError(
            f"{path}: input is named {inp.name!r} but the card says {card.input_name!r}"
        )
    if inp.type != "tensor(float)":
        raise ModelLoadError(f"{path}: input type is {inp.type}, expected tensor(float) (float32)")
    shape = list(inp.shape)
    expected = (card.input_height, card.input_width, card.channels)
    if len(shape) != 4:
        raise ModelLoadError(
            f"{path}: input {inp.name!r} has rank {len(shape)} ({_dims(shape)}), expected NxHxWxC"
        )
    for axis, want, what in zip(shape[1:], expected, ("height", "width", "channels"), strict=True):
        if isinstance(axis, int) and axis != want:
            raise ModelLoadError(
                f"{path}: input shape {_dims(shape)} does not match the card's "
                f"{card.input_height}x{card.input_width}x{card.channels} ({what} {axis} != {want})"
            )
    by_name = {o.name: o for o in outputs}
    if card.output_name not in by_name:
        raise ModelLoadError(
            f"{path}: no output named {card.output_name!r} (the model has {sorted(by_name)})"
        )
    out_shape = list(by_name[card.output_name].shape)
    if len(out_shape) != 4 or (isinstance(out_shape[3], int) and out_shape[3] != 1):
        raise ModelLoadError(
            f"{path}: output {card.output_name!r} has shape {_dims(out_shape)}, expected NxHxWx1"
        )
    if card.class_output_name:  # a multi-class model: N x H x W x K class probabilities
        k = len(card.class_names)
        if card.class_output_name not in by_name:
            raise ModelLoadError(
                f"{path}: no class output {card.class_output_name!r} (the model has "
                f"{sorted(by_name)}); the card names {k} classes"
            )
        cls_shape = list(by_name[card.class_output_name].shape)
        if len(cls_shape) != 4 or (isinstance(cls_shape[3], int) and cls_shape[3] != k):
            raise ModelLoadError(
                f"{path}: class output {card.class_output_name!r} has shape "
                f"{_dims(cls_shape)}, expected NxHxWx{k} (one channel per card class name)"
            )
    batch = shape[0]
    return batch if isinstance(batch, int) and batch > 0 else None


class OnnxRuntimeEngine:
    """:class:`~engines.protocol.Engine` over an ``onnxruntime.InferenceSession``.

    Parameters
    ----------
    path
        The ``.onnx`` file.
    card
        Its model card (already loaded).
    providers
        Execution providers in priority order; default :func:`default_providers`.
    threads
        Intra-op threads; default from :func:`engines.options.ort_threads`.
    session_options
        An ``onnxruntime.SessionOptions`` to use instead of the station's
        (:func:`engines.options.ort_session_options`); ``threads`` is then ignored. For
        benchmarks of other settings (``python -m bench routes``).

    Raises
    ------
    ModelLoadError
        Missing, corrupt or card-mismatched file (the message names the file).
    BackendUnavailable
        ``onnxruntime`` is not installed.
    """

    backend = BACKEND

    def __init__(
        self,
        path: str | Path,
        card: ModelCard,
        *,
        providers: list[str] | None = None,
        threads: int | None = None,
        session_options: Any = None,
    ) -> None:
        self.path = Path(path)
        self.card = card
        ort = _import_ort(self.path)
        if not self.path.is_file():
            raise ModelLoadError(f"{self.path}: model file not found")
        try:
            options = (
                session_options if session_options is not None else ort_session_options(threads)
            )
        except ValueError as exc:
            raise ModelLoadError(f"{self.path}: {exc}") from None
        chosen = list(providers) if providers else default_providers(ort)
        try:
            self._session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=chosen
            )
        except Exception as exc:  # onnxruntime raises its own pybind error types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelLoadError(f"{self.path}: not a loadable ONNX model ({first})") from None
        self.providers: list[str] = list(self._session.get_providers())
        self._fixed_batch = _check_io(self.path, self._session, card)
        self._output_index = [o.name for o in self._session.get_outputs()].index(card.output_name)
        self._probe()

    def _probe(self) -> None:
        """Run one zero tile: shapes the graph only reveals at run time fail here, not later."""
        probe = np.zeros((1, *self.card.input_shape), dtype=np.float32)
        try:
            out = self.infer(probe)  # through infer: a fixed-batch graph is padded there
        except Exception as exc:
            raise ModelLoadError(f"{self.path}: a test inference failed ({exc})") from None
        want = (1, self.card.input_height, self.card.input_width, 1)
        if out.shape != want:
            raise ModelLoadError(
                f"{self.path}: output shape {'x'.join(map(str, out.shape))} for one input tile, "
                f"expected {'x'.join(map(str, want))}"
            )
        fault = output_fault(out)  # a NaN-producing graph fails here even without a golden
        if fault is not None:
            raise ModelLoadError(f"{self.path}: a test inference on a blank tile: {fault}")

    def _run(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        outs = self._session.run([self.card.output_name], {self.card.input_name: batch})
        return np.asarray(outs[0], dtype=np.float32)

    def _run_classes(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        # Both outputs in one run, concatenated on the channel axis (defect, then K classes), so
        # the fixed-batch chunking of infer() serves this path unchanged.
        names = [self.card.output_name, self.card.class_output_name]
        prob, cls = self._session.run(names, {self.card.input_name: batch})
        return np.concatenate([np.asarray(prob, np.float32), np.asarray(cls, np.float32)], -1)

    def infer_classes(
        self, batch: NDArray[np.float32]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """``(N x H x W x 1 defect probabilities, N x H x W x K class probabilities)`` of a
        multi-class model (card ``class_output_name``); see :func:`engines.predict_class_maps`."""
        if not self.card.class_output_name:
            raise ValueError(f"{self.path}: the card names no class output")
        both = self._chunked(batch, self._run_classes)
        return both[..., :1], both[..., 1:]

    def infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """``N x H x W x C`` float32 in [0, 1] -> ``N x H x W x 1`` float32 probabilities."""
        return self._chunked(batch, self._run)

    def _chunked(
        self, batch: NDArray[np.float32], run: Callable[[NDArray[np.float32]], NDArray[np.float32]]
    ) -> NDArray[np.float32]:
        if self._session is None:
            raise RuntimeError(f"{self.path}: engine is closed")
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1:] != self.card.input_shape:
            raise ValueError(
                f"batch shape {batch.shape} does not match Nx{self.card.input_height}"
                f"x{self.card.input_width}x{self.card.channels}"
            )
        step = self._fixed_batch
        if step is None or batch.shape[0] == step:
            return run(batch)
        # A graph exported with a fixed batch is fed in chunks of that size (last one padded).
        outs = []
        for start in range(0, batch.shape[0], step):
            chunk = batch[start : start + step]
            n = chunk.shape[0]
            if n < step:
                chunk = np.concatenate([chunk, np.zeros((step - n, *chunk.shape[1:]), np.float32)])
            outs.append(run(chunk)[:n])
        return np.concatenate(outs)

    def close(self) -> None:
        """Release the session (its memory arena); the engine is unusable afterwards."""
        self._session = None

    def __repr__(self) -> str:
        return f"OnnxRuntimeEngine({str(self.path)!r}, providers={self.providers})"


def open_engine(
    path: Path, card: ModelCard, *, providers: list[str] | None = None, threads: int | None = None
) -> OnnxRuntimeEngine:
    """Registry entry point used by :func:`engines.load_engine`."""
    return OnnxRuntimeEngine(path, card, providers=providers, threads=threads)
