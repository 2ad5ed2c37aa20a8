"""The one small interface every inference backend implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from engines.card import ModelCard


class ModelLoadError(RuntimeError):
    """A model cannot be used: missing library, corrupt or mismatched file. Names the file."""


class BackendUnavailable(ModelLoadError):
    """The backend's library (or device) is absent on this machine; says what to install."""


@runtime_checkable
class Engine(Protocol):
    """``infer(N x H x W x C float32 in [0,1]) -> N x H x W x 1 float32 probabilities``.

    ``H, W, C`` are the card's input shape. Implementations are not thread-safe: one engine is
    driven by one worker thread.
    """

    card: ModelCard
    backend: str  # "onnxruntime" | "tensorrt"

    def infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]: ...

    def close(self) -> None: ...
