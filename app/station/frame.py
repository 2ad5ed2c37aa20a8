"""A frame as it travels from a source to the inspector. Immutable once emitted."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Frame:
    """One acquired image.

    ``image`` is H x W (grey) or H x W x 3 (BGR, OpenCV order), uint8 or uint16, C-contiguous and
    owned by the frame (sources copy borrowed camera buffers before building it). Nobody writes to
    it after construction: the array is made read-only.
    """

    image: NDArray[np.uint8] | NDArray[np.uint16]
    frame_id: int
    timestamp: float  # time.time() at acquisition
    source: str  # e.g. "folder:/data/line1" or "genicam:SN1234"
    metadata: dict[str, Any] = field(default_factory=dict)  # path, camera counters, trigger ...

    def __post_init__(self) -> None:
        img = self.image
        if img.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"frame image dtype {img.dtype} is not uint8 or uint16")
        if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
            raise ValueError(f"frame image shape {img.shape} is not HxW or HxWx3")
        img.flags.writeable = False
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    @classmethod
    def unreadable(
        cls, frame_id: int, timestamp: float, source: str, reason: str, metadata: dict[str, Any]
    ) -> Frame:
        """A frame that was acquired but could not be read: it ends as an ERROR verdict.

        Its image is empty (0 x 0) so it still travels the pipeline in order and is counted.
        """
        return cls(
            image=np.zeros((0, 0), np.uint8),
            frame_id=frame_id,
            timestamp=timestamp,
            source=source,
            metadata={**metadata, "error": reason},
        )

    @property
    def readable(self) -> bool:
        return self.image.size > 0 and "error" not in self.metadata

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])
