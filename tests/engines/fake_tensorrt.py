"""A tiny stand-in for ``tensorrt`` and ``cuda.bindings.runtime``, for machines with no GPU.

It implements only what engines/_tensorrt.py and engines/build.py call, with the documented
semantics (named I/O tensors, profile bounds, ``(error, value)`` tuples from cudart), and "runs"
the channel-mean network of ``conftest.make_mean_model`` on host memory. It proves the backend's
own logic (buffers, chunking, padding, error paths, card writing), not TensorRT itself: the real
library runs in the ``gpu``-marked contract test.
"""

from __future__ import annotations

import ctypes
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import onnx

__version__ = "10.99.0-fake"
MAGIC = b"FAKEPLAN"


class ILogger:
    class Severity:
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = range(5)

    def __init__(self) -> None:
        pass


TensorIOMode = SimpleNamespace(INPUT="input", OUTPUT="output")
DataType = SimpleNamespace(FLOAT="float32", HALF="float16")
NetworkDefinitionCreationFlag = SimpleNamespace(STRONGLY_TYPED=5)
MemoryPoolType = SimpleNamespace(WORKSPACE="workspace")


def nptype(dtype: str) -> type:
    return np.dtype(dtype).type


class _Context:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec, self.addresses, self.shape = spec, {}, None
        self.executed_batches: list[int] = []

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        ok = name == self.spec["input"] and self.spec["min"] <= shape[0] <= self.spec["max"]
        self.shape = tuple(shape) if ok else None
        return ok

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = address
        return True

    def execute_async_v3(self, stream: int) -> bool:
        assert isinstance(stream, int)
        n, h, w, c = self.shape
        src = (ctypes.c_float * (n * h * w * c)).from_address(self.addresses[self.spec["input"]])
        dst = (ctypes.c_float * (n * h * w)).from_address(self.addresses[self.spec["output"]])
        x = np.frombuffer(src, dtype=np.float32).reshape(n, h, w, c)
        mean = x.mean(axis=3)
        np.frombuffer(dst, dtype=np.float32)[:] = mean.ravel()
        if self.spec.get("class_output"):  # (mean, 1 - mean, 0, ...): test_multiclass_predict's
            k = self.spec["classes"]
            cls_address = self.addresses[self.spec["class_output"]]
            cls = (ctypes.c_float * (n * h * w * k)).from_address(cls_address)
            probs = np.zeros((n, h, w, k), np.float32)
            probs[..., 0] = mean
            probs[..., 1] = 1.0 - mean
            np.frombuffer(cls, dtype=np.float32)[:] = probs.ravel()
        self.executed_batches.append(n)
        return True


class _Engine:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.names = [spec["input"], spec["output"]] + (
            [spec["class_output"]] if spec.get("class_output") else []
        )
        self.num_io_tensors = len(self.names)
        self.contexts: list[_Context] = []

    def get_tensor_name(self, i: int) -> str:
        return self.names[i]

    def get_tensor_mode(self, name: str) -> str:
        return TensorIOMode.INPUT if name == self.spec["input"] else TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str) -> str:
        return DataType.FLOAT

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        h, w, c = self.spec["hwc"]
        if name == self.spec.get("class_output"):
            return (-1, h, w, self.spec["classes"])
        return (-1, h, w, c) if name == self.spec["input"] else (-1, h, w, 1)

    def get_tensor_profile_shape(self, name: str, profile: int) -> list[tuple[int, ...]]:
        h, w, c = self.spec["hwc"]
        return [(self.spec[k], h, w, c) for k in ("min", "opt", "max")]

    def create_execution_context(self) -> _Context:
        self.contexts.append(_Context(self.spec))
        return self.contexts[-1]


class Runtime:
    last_engine: _Engine | None = None

    def __init__(self, logger: ILogger) -> None:
        self.logger = logger

    def deserialize_cuda_engine(self, data: bytes) -> _Engine | None:
        if not data.startswith(MAGIC):
            self.logger.log(
                ILogger.Severity.ERROR, "IRuntime::deserializeCudaEngine: magic tag mismatch"
            )
            return None
        Runtime.last_engine = _Engine(json.loads(data[len(MAGIC) :]))
        return Runtime.last_engine


class _Network:
    def __init__(self) -> None:
        self.inputs: list[Any] = []
        self.output_name = ""
        self.class_output: tuple[str, int] | None = None

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    def get_input(self, i: int) -> Any:
        return self.inputs[i]


class OnnxParser:
    def __init__(self, network: _Network, logger: ILogger) -> None:
        self.network, self.errors = network, []

    @property
    def num_errors(self) -> int:
        return len(self.errors)

    def get_error(self, i: int) -> Any:
        return self.errors[i]

    def parse_from_file(self, path: str) -> bool:
        try:
            model = onnx.load(path)
        except Exception as exc:  # what the real parser reports for a non-ONNX file
            text = f"failed to parse: {exc}"
            self.errors.append(SimpleNamespace(node=lambda: -1, desc=lambda: text))
            return False
        (inp,) = model.graph.input
        dims = [d.dim_value if d.dim_value else -1 for d in inp.type.tensor_type.shape.dim]
        self.network.inputs.append(SimpleNamespace(name=inp.name, shape=tuple(dims)))
        self.network.output_name = model.graph.output[0].name
        for extra in model.graph.output[1:]:  # a multi-class model's class output
            dims = [d.dim_value for d in extra.type.tensor_type.shape.dim]
            self.network.class_output = (extra.name, dims[-1])
        return True


class _Cache:
    def __init__(self, data: bytes) -> None:
        self.data = data or b"fresh-cache"

    def serialize(self) -> bytes:
        return self.data + b"+tuned"


class _Config:
    def __init__(self) -> None:
        self.profiles: list[dict[str, Any]] = []
        self.cache: _Cache | None = None

    def create_timing_cache(self, data: bytes) -> _Cache:
        return _Cache(data)

    def set_timing_cache(self, cache: _Cache, ignore_mismatch: bool) -> bool:
        self.cache = cache
        return True

    def get_timing_cache(self) -> _Cache | None:
        return self.cache

    def set_memory_pool_limit(self, pool: str, size: int) -> None:
        self.workspace = size

    def add_optimization_profile(self, profile: dict[str, Any]) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1


class Builder:
    network_flags: list[int] = []

    def __init__(self, logger: ILogger) -> None:
        self.logger = logger

    def create_network(self, flags: int) -> _Network:
        Builder.network_flags.append(flags)
        return _Network()

    def create_builder_config(self) -> _Config:
        return _Config()

    def create_optimization_profile(self) -> dict[str, Any]:
        profile: dict[str, Any] = {}
        profile_obj = SimpleNamespace(
            set_shape=lambda name, lo, opt, hi: profile.update(name=name, shapes=(lo, opt, hi))
        )
        profile_obj.data = profile
        return profile_obj

    def build_serialized_network(self, network: _Network, config: _Config) -> bytes:
        lo, opt, hi = config.profiles[0].data["shapes"]
        spec = {
            "input": network.inputs[0].name,
            "output": network.output_name,
            "hwc": list(lo[1:]),
            "min": lo[0],
            "opt": opt[0],
            "max": hi[0],
        }
        if network.class_output is not None:
            spec["class_output"], spec["classes"] = network.class_output
        return MAGIC + json.dumps(spec).encode()


class FakeCudart:
    """``cuda.bindings.runtime`` subset: host memory stands in for device memory."""

    cudaError_t = SimpleNamespace(cudaSuccess=0, cudaErrorMemoryAllocation=2)
    cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)

    def __init__(self, devices: int = 1) -> None:
        self.devices = devices
        self.live: dict[int, Any] = {}
        self.copies: list[tuple[int, int]] = []  # (kind, bytes)
        self.streams = 0

    def cudaGetErrorName(self, err: int) -> tuple[int, bytes]:
        return 0, b"cudaErrorNoDevice" if err == 100 else b"cudaErrorMemoryAllocation"

    def cudaGetErrorString(self, err: int) -> tuple[int, bytes]:
        return 0, b"no CUDA-capable device is detected" if err == 100 else b"out of memory"

    def cudaGetDeviceCount(self) -> tuple[int, int | None]:
        return (0, self.devices) if self.devices else (100, None)

    def cudaGetDevice(self) -> tuple[int, int]:
        return 0, 0

    def cudaGetDeviceProperties(self, device: int) -> tuple[int, Any]:
        return 0, SimpleNamespace(name=b"Fake GPU 9000", major=8, minor=9)

    def _alloc(self, size: int) -> tuple[int, int]:
        buf = ctypes.create_string_buffer(size)
        self.live[ctypes.addressof(buf)] = buf
        return 0, ctypes.addressof(buf)

    cudaMalloc = cudaMallocHost = _alloc

    def _free(self, ptr: int) -> tuple[int]:
        del self.live[int(ptr)]
        return (0,)

    cudaFree = cudaFreeHost = _free

    def cudaMemcpyAsync(self, dst: int, src: int, count: int, kind: int, stream: int) -> tuple[int]:
        ctypes.memmove(int(dst), int(src), count)
        self.copies.append((kind, count))
        return (0,)

    def cudaStreamCreate(self) -> tuple[int, int]:
        self.streams += 1
        return 0, 42

    def cudaStreamSynchronize(self, stream: int) -> tuple[int]:
        return (0,)

    def cudaStreamDestroy(self, stream: int) -> tuple[int]:
        self.streams -= 1
        return (0,)


def write_plan(
    path: Path,
    *,
    hwc: tuple[int, int, int],
    lo: int = 1,
    opt: int = 4,
    hi: int = 8,
    input_name: str = "image",
    output_name: str = "probability",
    class_output_name: str = "",
    classes: int = 0,
) -> Path:
    spec: dict[str, Any] = {
        "input": input_name,
        "output": output_name,
        "hwc": list(hwc),
        "min": lo,
        "opt": opt,
        "max": hi,
    }
    if class_output_name:
        spec.update(class_output=class_output_name, classes=classes)
    path.write_bytes(MAGIC + json.dumps(spec).encode())
    return path
