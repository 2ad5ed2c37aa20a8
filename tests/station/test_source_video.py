"""The video source on a real MJPG AVI written with OpenCV."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.station.sources import SourceError, SourceOptions, VideoSource, open_source

N_FRAMES = 12
FPS = 25.0


@pytest.fixture(scope="module")
def avi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (64, 48))
    assert writer.isOpened(), "OpenCV cannot write MJPG AVI here"
    for i in range(N_FRAMES):
        frame = np.full((48, 64, 3), 20 * i, np.uint8)  # brightness encodes the frame number
        writer.write(frame)
    writer.release()
    return path


def brightness(image: np.ndarray) -> int:
    return round(float(image.mean()) / 20)


def test_reads_every_frame_back(avi: Path) -> None:
    src = open_source(f"video:{avi}")
    assert isinstance(src, VideoSource) and src.file_fps == pytest.approx(FPS)
    frames = list(src.frames())
    assert len(frames) == N_FRAMES == src.stats.delivered
    assert [brightness(f.image) for f in frames] == list(range(N_FRAMES))
    assert [f.metadata["position"] for f in frames] == list(range(N_FRAMES))
    for f in frames:
        assert f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8
        assert f.image.flags.c_contiguous and f.source == f"video:{avi}"


def test_loop_and_native_pacing(avi: Path) -> None:
    src = VideoSource(avi, options=SourceOptions(loop=True, native_fps=True))
    t0 = time.monotonic()
    got = []
    for f in src.frames():
        got.append(f)
        if len(got) == N_FRAMES + 4:
            break
    elapsed = time.monotonic() - t0
    src.close()
    assert [brightness(f.image) for f in got] == [*range(N_FRAMES), 0, 1, 2, 3]
    assert [f.frame_id for f in got] == list(range(N_FRAMES + 4))
    assert 0.5 <= elapsed <= 2.0, elapsed  # 15 periods of 40 ms


def test_close_from_another_thread(avi: Path) -> None:
    src = VideoSource(avi, options=SourceOptions(loop=True, fps=2))
    got = []
    worker = threading.Thread(target=lambda: got.extend(src.frames()))
    worker.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    src.close()
    worker.join(2)
    assert not worker.is_alive() and time.monotonic() - t0 < 0.3
    assert len(got) == 1


def test_bad_videos_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="video file not found"):
        open_source(f"video:{tmp_path / 'none.avi'}")
    junk = tmp_path / "junk.avi"
    junk.write_bytes(b"RIFF" + bytes(range(256)) * 8)
    with pytest.raises(SourceError, match="junk.avi"):
        open_source(f"video:{junk}")
    with pytest.raises(SourceError, match="cannot open video device 57"):
        open_source("video:57")
