"""TensorRT backend (optional extra ``gpu``): a serialised ``.engine`` / ``.plan`` on one CUDA GPU.

TensorRT 10+/11 named-tensor API (``num_io_tensors``, ``set_input_shape``, ``set_tensor_address``,
``execute_async_v3``); CUDA memory and the stream come from NVIDIA's ``cuda-python``
(``cuda.bindings.runtime``), which installs from a wheel where pycuda would need a toolkit to
compile. Buffers are allocated once for the profile's largest batch: pinned host memory (so the
copies are truly asynchronous) and device memory, driven as copy-in / execute / copy-out on one
stream with a single synchronisation per chunk.

``tensorrt`` and ``cuda`` are imported inside functions only: importing this module never fails.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engines.card import ModelCard
from engines.protocol import BackendUnavailable, ModelLoadError
from engines.selftest import output_fault

BACKEND = "tensorrt"
PIP_HINT = (
    "pip install 'inspection-station[gpu]' (tensorrt>=10 from NVIDIA's package index and "
    "cuda-python); on a machine without an NVIDIA GPU use the .onnx model instead"
)


class CudaError(RuntimeError):
    """A CUDA runtime call failed; the message has the call, the error name and its text."""


def import_tensorrt(path: Path | str) -> Any:
    """``import tensorrt`` or :class:`BackendUnavailable` naming ``path`` and what to install."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailable(f"{path}: TensorRT is not installed ({exc}); {PIP_HINT}") from None
    return trt


def import_cudart(path: Path | str) -> Any:
    """``cuda.bindings.runtime`` or :class:`BackendUnavailable`."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError as exc:
        raise BackendUnavailable(
            f"{path}: cuda-python is not installed ({exc}); {PIP_HINT}"
        ) from None
    return cudart


def cuda_check(cudart: Any, result: Any, call: str) -> Any:
    """Unpack a cuda-python ``(error, *values)`` tuple; raise :class:`CudaError` on failure."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != cudart.cudaError_t.cudaSuccess:
        _, name = cudart.cudaGetErrorName(err)
        _, text = cudart.cudaGetErrorString(err)
        raise CudaError(f"{call} failed: {name.decode()} ({text.decode()})")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def gpu_description(cudart: Any, path: Path | str) -> str:
    """Name and compute capability of the current CUDA device, e.g. ``"NVIDIA L4 (sm 8.9)"``.

    Raises
    ------
    BackendUnavailable
        No driver, no device, or the driver is too old for this cuda-python.
    """
    try:
        count = cuda_check(cudart, cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
        if not count:
            raise CudaError("cudaGetDeviceCount found 0 devices")
        device = cuda_check(cudart, cudart.cudaGetDevice(), "cudaGetDevice")
        props = cuda_check(
            cudart, cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties"
        )
    except CudaError as exc:
        raise BackendUnavailable(
            f"{path}: no usable CUDA GPU ({exc}); TensorRT engines need an NVIDIA GPU and driver, "
            "use the .onnx model with ONNX Runtime on this machine"
        ) from None
    name = (
        props.name.split(b"\x00", 1)[0].decode(errors="replace")  # a C char[256]
        if isinstance(props.name, bytes)
        else str(props.name)
    )
    return f"{name} (sm {props.major}.{props.minor})"


def make_logger(trt: Any) -> Any:
    """A ``trt.ILogger`` that keeps warnings and errors, so failures can quote TensorRT's reason."""

    class _RecordingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[str] = []
            sev = trt.ILogger.Severity
            self._keep = {sev.INTERNAL_ERROR, sev.ERROR, sev.WARNING}

        def log(self, severity: Any, msg: str) -> None:
            if severity in self._keep:
                self.messages.append(str(msg))

        def last(self, default: str = "no message from TensorRT") -> str:
            return self.messages[-1] if self.messages else default

    return _RecordingLogger()


class _Buffer:
    """One pinned host array + one device allocation of the same byte size."""

    def __init__(self, cudart: Any, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._cudart = cudart
        self.nbytes = int(np.prod(shape)) * dtype.itemsize
        self.host_ptr = cuda_check(cudart, cudart.cudaMallocHost(self.nbytes), "cudaMallocHost")
        self.device_ptr = 0
        try:
            self.device_ptr = cuda_check(cudart, cudart.cudaMalloc(self.nbytes), "cudaMalloc")
        except CudaError:
            cudart.cudaFreeHost(self.host_ptr)
            raise
        c_type = np.ctypeslib.as_ctypes_type(dtype)
        raw = ctypes.cast(int(self.host_ptr), ctypes.POINTER(c_type))
        # A numpy view of the pinned memory; None once freed, so a late use cannot touch it.
        self.host: NDArray[Any] | None = np.ctypeslib.as_array(raw, shape=shape)

    def array(self) -> NDArray[Any]:
        """The pinned host memory as a numpy view; RuntimeError once freed."""
        if self.host is None:
            raise RuntimeError("TensorRT host buffer used after it was freed")
        return self.host

    def free(self) -> None:
        # Errors on free are not actionable at shutdown; the process is releasing them anyway.
        if self.device_ptr:
            self._cudart.cudaFree(self.device_ptr)
            self.device_ptr = 0
        if self.host_ptr:
            self.host = None
            self._cudart.cudaFreeHost(self.host_ptr)
            self.host_ptr = 0


def _shape(dims: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in dims)


class TensorRTEngine:
    """:class:`~engines.protocol.Engine` over a deserialised TensorRT engine.

    Parameters
    ----------
    path
        ``.engine`` / ``.plan`` built by ``python -m engines build`` (or trtexec) for this GPU and
        TensorRT version.
    card
        The model card (input/output names and shape are checked against the engine).

    Raises
    ------
    BackendUnavailable
        tensorrt or cuda-python missing, or no CUDA device.
    ModelLoadError
        Missing file, deserialisation failure (other GPU / TensorRT version, corrupt file), or
        I/O names, shapes or types that differ from the card.
    """

    backend = BACKEND

    def __init__(self, path: str | Path, card: ModelCard) -> None:
        self.path = Path(path)
        self.card = card
        self._buffers: list[_Buffer] = []
        self._stream: Any = None
        self._context: Any = None
        self._cls: _Buffer | None = None  # the class output of a multi-class model
        trt = import_tensorrt(self.path)
        self._cudart = cudart = import_cudart(self.path)
        if not self.path.is_file():
            raise ModelLoadError(f"{self.path}: model file not found")
        self.gpu = gpu_description(cudart, self.path)
        self.trt_version = str(trt.__version__)
        self._logger = make_logger(trt)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise ModelLoadError(
                f"{self.path}: TensorRT {self.trt_version} cannot deserialise this engine on "
                f"{self.gpu} ({self._logger.last()}). An engine runs only on the GPU model and "
                "TensorRT version it was built with, and the file may be corrupt; rebuild it here "
                f"with `python -m engines build --onnx MODEL.onnx --out {self.path.name}`"
            )
        try:
            self._setup(trt)
            self._probe()
        except BaseException:
            self.close()
            raise

    def _setup(self, trt: Any) -> None:
        engine, card, path = self._engine, self.card, self.path
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if inputs != [card.input_name]:
            raise ModelLoadError(
                f"{path}: engine inputs {inputs}, the card expects [{card.input_name!r}]"
            )
        if card.output_name not in outputs:
            raise ModelLoadError(
                f"{path}: no output named {card.output_name!r} (engine has {outputs})"
            )
        io = [card.input_name, card.output_name]
        if card.class_output_name:  # a multi-class model: N x H x W x K class probabilities
            k = len(card.class_names)
            if card.class_output_name not in outputs:
                raise ModelLoadError(
                    f"{path}: no class output {card.class_output_name!r} (engine has {outputs}); "
                    f"the card names {k} classes"
                )
            cls_shape = _shape(engine.get_tensor_shape(card.class_output_name))
            if len(cls_shape) != 4 or cls_shape[1:] != (card.input_height, card.input_width, k):
                raise ModelLoadError(
                    f"{path}: class output {card.class_output_name!r} has shape {cls_shape}, "
                    f"expected (N, {card.input_height}, {card.input_width}, {k}): one channel "
                    "per card class name"
                )
            io.append(card.class_output_name)
        for name in io:
            dtype = engine.get_tensor_dtype(name)
            if dtype != trt.DataType.FLOAT:
                raise ModelLoadError(f"{path}: tensor {name!r} is {dtype}, expected float32 I/O")
        in_shape = _shape(engine.get_tensor_shape(card.input_name))
        if len(in_shape) != 4 or in_shape[1:] != card.input_shape:
            raise ModelLoadError(
                f"{path}: engine input shape {in_shape} does not match the card's "
                f"(N, {card.input_height}, {card.input_width}, {card.channels})"
            )
        out_shape = _shape(engine.get_tensor_shape(card.output_name))
        if len(out_shape) != 4 or out_shape[1:] != (card.input_height, card.input_width, 1):
            raise ModelLoadError(f"{path}: engine output shape {out_shape}, expected (N, H, W, 1)")
        if in_shape[0] == -1:
            lo, _opt, hi = (_shape(s) for s in engine.get_tensor_profile_shape(card.input_name, 0))
            self.min_batch, self.max_batch = lo[0], hi[0]
        else:
            self.min_batch = self.max_batch = in_shape[0]
        context = engine.create_execution_context()
        if context is None:
            raise ModelLoadError(
                f"{path}: cannot create an execution context on {self.gpu} "
                f"(out of GPU memory? {self._logger.last()})"
            )
        self._context = context
        cudart = self._cudart
        try:
            self._stream = cuda_check(cudart, cudart.cudaStreamCreate(), "cudaStreamCreate")
            for name in names:
                shape = list(_shape(engine.get_tensor_shape(name)))
                if shape and shape[0] == -1:
                    shape[0] = self.max_batch
                if any(d < 0 for d in shape):
                    raise ModelLoadError(
                        f"{path}: tensor {name!r} has dynamic dims {shape} besides batch"
                    )
                buf = _Buffer(
                    cudart, tuple(shape), np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
                )
                self._buffers.append(buf)
                if not context.set_tensor_address(name, int(buf.device_ptr)):
                    raise ModelLoadError(f"{path}: set_tensor_address({name!r}) failed")
                if name == card.input_name:
                    self._in = buf
                elif name == card.output_name:
                    self._out = buf
                elif name == card.class_output_name:
                    self._cls = buf
        except CudaError as exc:
            raise ModelLoadError(
                f"{path}: allocating buffers on {self.gpu} failed ({exc})"
            ) from None

    def _probe(self) -> None:
        outs = self._chunked(
            np.zeros((1, *self.card.input_shape), dtype=np.float32), classes=self._cls is not None
        )
        out = outs[0]
        if out.shape != (1, self.card.input_height, self.card.input_width, 1):
            raise ModelLoadError(f"{self.path}: output shape {out.shape} for one tile")
        # a NaN-producing graph fails here even without a golden
        fault = next((f for f in map(output_fault, outs) if f is not None), None)
        if fault is not None:
            raise ModelLoadError(f"{self.path}: a test inference on a blank tile: {fault}")

    def _run_chunk(
        self, chunk: NDArray[np.float32], classes: bool = False
    ) -> list[NDArray[np.float32]]:
        """The defect probabilities of ``chunk`` (and its class probabilities with ``classes``);
        only the outputs asked for are copied back from the GPU."""
        cudart, ctx, card = self._cudart, self._context, self.card
        n = chunk.shape[0]
        run_n = max(n, self.min_batch)  # a profile minimum above 1 is met by zero padding
        self._in.array()[:n] = chunk
        if run_n > n:
            self._in.array()[n:run_n] = 0.0
        if not ctx.set_input_shape(card.input_name, (run_n, *card.input_shape)):
            raise RuntimeError(
                f"{self.path}: batch {run_n} is outside the engine's profile "
                f"[{self.min_batch}, {self.max_batch}]"
            )
        item_in = self._in.nbytes // self.max_batch
        wanted = [self._out] + ([self._cls] if classes and self._cls is not None else [])
        h2d = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        d2h = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        cuda_check(
            cudart,
            cudart.cudaMemcpyAsync(
                self._in.device_ptr, self._in.host_ptr, item_in * run_n, h2d, self._stream
            ),
            "H2D copy",
        )
        if not ctx.execute_async_v3(int(self._stream)):
            raise RuntimeError(f"{self.path}: execute_async_v3 failed ({self._logger.last()})")
        for out in wanted:
            item_out = out.nbytes // self.max_batch
            cuda_check(
                cudart,
                cudart.cudaMemcpyAsync(
                    out.host_ptr, out.device_ptr, item_out * run_n, d2h, self._stream
                ),
                "D2H copy",
            )
        cuda_check(cudart, cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        # copies out of the reused buffers
        return [np.array(out.array()[:n], dtype=np.float32) for out in wanted]

    def infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """``N x H x W x C`` float32 in [0, 1] -> ``N x H x W x 1``; N above the profile's
        maximum is run in chunks."""
        return self._chunked(batch, classes=False)[0]

    def infer_classes(
        self, batch: NDArray[np.float32]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        """``(N x H x W x 1 defect probabilities, N x H x W x K class probabilities)`` of a
        multi-class model (card ``class_output_name``); see :func:`engines.predict_class_maps`."""
        if not self.card.class_output_name:
            raise ValueError(f"{self.path}: the card names no class output")
        prob, cls = self._chunked(batch, classes=True)
        return prob, cls

    def _chunked(self, batch: NDArray[np.float32], classes: bool) -> list[NDArray[np.float32]]:
        if self._context is None:
            raise RuntimeError(f"{self.path}: engine is closed")
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4 or batch.shape[1:] != self.card.input_shape:
            raise ValueError(
                f"batch shape {batch.shape} does not match Nx{self.card.input_height}"
                f"x{self.card.input_width}x{self.card.channels}"
            )
        parts = [
            self._run_chunk(batch[i : i + self.max_batch], classes)
            for i in range(0, batch.shape[0], self.max_batch)
        ]
        if not parts:
            h, w = self.card.input_height, self.card.input_width
            k = len(self.card.class_names)
            empty = [np.zeros((0, h, w, 1), np.float32)]
            return empty + ([np.zeros((0, h, w, k), np.float32)] if classes else [])
        return [np.concatenate(outs) for outs in zip(*parts, strict=True)]

    def close(self) -> None:
        """Free GPU and pinned memory and the stream; safe to call twice."""
        for buf in self._buffers:
            buf.free()
        self._buffers = []
        self._cls = None
        if self._stream is not None:
            self._cudart.cudaStreamDestroy(self._stream)
            self._stream = None
        self._context = None  # the context must go before the engine that owns it
        self._engine = None

    def __repr__(self) -> str:
        return f"TensorRTEngine({str(self.path)!r}, gpu={getattr(self, 'gpu', '?')!r})"


def open_engine(
    path: Path, card: ModelCard, *, providers: list[str] | None = None, threads: int | None = None
) -> TensorRTEngine:
    """Registry entry point used by :func:`engines.load_engine` (providers/threads: ONNX only)."""
    return TensorRTEngine(path, card)
