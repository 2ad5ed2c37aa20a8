"""The folder source on real files: good, broken and huge images, pacing, loop, watch, close."""

from __future__ import annotations

import logging
import struct
import threading
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.station.frame import Frame
from app.station.sources import FolderSource, SourceError, SourceOptions, open_source
from app.station.sources.folder import natural_key


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height and whose data is a stub."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + b"\x00" * 64
    )


def write(path: Path, image: np.ndarray) -> Path:
    ok, data = cv2.imencode(path.suffix, image)
    assert ok
    path.write_bytes(data.tobytes())
    return path


@pytest.fixture()
def mixed(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 255, (30, 40), dtype=np.uint8)
    colour = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    write(tmp_path / "01_grey.png", grey)
    write(tmp_path / "02_colour.jpg", colour)
    write(tmp_path / "03_deep.png", (rng.integers(0, 60000, (30, 40))).astype(np.uint16))
    rgba = np.dstack([colour, np.full((30, 40), 7, np.uint8)])
    write(tmp_path / "04_rgba.png", rgba)
    (tmp_path / "05_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8)
    (tmp_path / "06_empty.bmp").write_bytes(b"")
    (tmp_path / "07_huge.png").write_bytes(png_claiming(200_000, 150_000))
    jpg = cv2.imencode(".jpg", colour)[1].tobytes()
    (tmp_path / "08_truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    write(tmp_path / "09_ünïcödé.png", grey)
    write(tmp_path / "10_grey.tif", grey)
    write(tmp_path / "11_UPPER.PNG", grey)
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_mixed_folder_delivers_good_and_marks_bad_with_reasons(
    mixed: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = open_source(f"folder:{mixed}")
    with caplog.at_level(logging.WARNING, logger="app.station.sources"):
        everything = list(src.frames())

    # Unreadable files come through as unreadable frames (they end as ERROR verdicts).
    bad = {f.metadata["file"]: f.metadata["error"] for f in everything if not f.readable}
    assert sorted(bad) == ["05_corrupt.png", "06_empty.bmp", "07_huge.png", "08_truncated.jpg"]
    assert all(f.image.size == 0 for f in everything if not f.readable)
    assert [f.frame_id for f in everything] == list(range(11))
    frames = [f for f in everything if f.readable]
    names = [Path(f.metadata["path"]).name for f in frames]
    assert names == [
        "01_grey.png",
        "02_colour.jpg",
        "03_deep.png",
        "04_rgba.png",
        "09_ünïcödé.png",
        "10_grey.tif",
        "11_UPPER.PNG",
    ]
    by_name = dict(zip(names, frames, strict=True))
    assert by_name["01_grey.png"].image.shape == (30, 40)
    assert by_name["02_colour.jpg"].image.shape == (30, 40, 3)
    deep = by_name["03_deep.png"].image
    assert deep.dtype == np.uint16 and deep.max() > 255
    rgba = by_name["04_rgba.png"].image
    assert rgba.shape == (30, 40, 3) and rgba.dtype == np.uint8  # alpha dropped
    for f in frames:
        assert f.image.flags.c_contiguous and not f.image.flags.writeable
        assert f.image.dtype in (np.uint8, np.uint16)
    assert src.stats.delivered == 7
    assert src.stats.skipped == 0  # nothing vanished: the four bad files are ERROR frames
    errors = "\n".join(src.stats.errors)
    assert "05_corrupt.png: not a readable image" in errors
    assert "06_empty.bmp: empty file (0 bytes)" in errors
    assert "07_huge.png: image too large (200000 x 150000" in errors
    assert "08_truncated.jpg: truncated JPEG" in errors
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 4


def test_low_pixel_limit_refuses_normal_images(mixed: Path) -> None:
    src = FolderSource(mixed, options=SourceOptions(max_pixels=1000))
    frames = list(src.frames())
    assert len(frames) == 11 and not any(f.readable for f in frames)
    assert src.stats.delivered == 0
    assert sum("too large (40 x 30 = 0.0012 megapixels" in e for e in src.stats.errors) == 8


def test_natural_sort() -> None:
    names = ["img10.png", "img2.png", "IMG1.png", "img2b.png", "a.png"]
    assert sorted((Path(n) for n in names), key=natural_key) == [
        Path(n) for n in ["a.png", "IMG1.png", "img2.png", "img2b.png", "img10.png"]
    ]


@pytest.fixture()
def three(tmp_path: Path) -> Path:
    for i in range(3):
        write(tmp_path / f"f{i}.png", np.full((8, 8), i, np.uint8))
    return tmp_path


def test_loop_repeats_and_ids_keep_increasing(three: Path) -> None:
    src = FolderSource(three, options=SourceOptions(loop=True))
    frames: list[Frame] = []
    for f in src.frames():
        frames.append(f)
        if len(frames) == 7:
            src.close()
    assert [int(f.image[0, 0]) for f in frames] == [0, 1, 2, 0, 1, 2, 0]
    assert [f.frame_id for f in frames] == list(range(7))


def test_pacing_at_fps_and_as_fast_as_possible(three: Path) -> None:
    def time_frames(fps: float | None, n: int) -> float:
        src = FolderSource(three, options=SourceOptions(loop=True, fps=fps))
        t0 = time.monotonic()
        for i, _ in enumerate(src.frames(), 1):
            if i == n:
                break
        src.close()
        return time.monotonic() - t0

    paced = time_frames(20, 11)  # 10 periods of 50 ms
    assert 0.4 <= paced <= 1.5, paced
    assert time_frames(None, 30) < 0.5


def test_close_from_another_thread_stops_promptly(three: Path) -> None:
    src = FolderSource(three, options=SourceOptions(loop=True, fps=1))  # 1 s between frames
    got: list[Frame] = []
    first = threading.Event()

    def consume() -> None:
        for f in src.frames():
            got.append(f)
            first.set()

    worker = threading.Thread(target=consume)
    worker.start()
    assert first.wait(2)
    t0 = time.monotonic()
    src.close()
    worker.join(2)
    assert not worker.is_alive()
    assert time.monotonic() - t0 < 0.3
    assert len(got) == 1
    # open() re-arms: the folder plays again from the start.
    src.open()
    again = next(iter(src.frames()))
    assert int(again.image[0, 0]) == 0 and again.frame_id == 1


def test_watch_picks_up_new_files(three: Path) -> None:
    src = FolderSource(three, options=SourceOptions(watch=True, watch_poll_s=0.05))
    got: list[Frame] = []
    worker = threading.Thread(target=lambda: got.extend(src.frames()))
    worker.start()
    deadline = time.monotonic() + 3
    while len(got) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(got) == 3
    write(three / "f3.png", np.full((8, 8), 3, np.uint8))
    (three / "f4.png").write_bytes(b"")  # an empty file that stays empty: one ERROR frame
    while len(got) < 5 and time.monotonic() < deadline + 3:
        time.sleep(0.02)
    time.sleep(0.2)  # a few more polls: the empty file must not come again
    src.close()
    worker.join(1)
    assert not worker.is_alive()
    assert [int(f.image[0, 0]) for f in got if f.readable] == [0, 1, 2, 3]
    assert [f.metadata["file"] for f in got if not f.readable] == ["f4.png"]
    assert "f4.png: empty file" in src.stats.errors[-1]


def test_bad_folders_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="image folder not found"):
        open_source(f"folder:{tmp_path / 'missing'}")
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(SourceError, match="no images in"):
        open_source(f"folder:{tmp_path}")
    # watching an empty folder is fine: files will arrive
    FolderSource(tmp_path, options=SourceOptions(watch=True)).close()


def test_loop_over_only_unreadable_files_stops(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"junk")
    src = FolderSource(tmp_path, options=SourceOptions(loop=True))
    frames = list(src.frames())
    assert [(f.metadata["file"], f.readable) for f in frames] == [("a.png", False)]
    assert "no readable images" in src.stats.errors[-1]


def test_a_looping_folder_reports_a_bad_file_once_and_retries_it_when_rewritten(
    three: Path,
) -> None:
    bad = three / "f1b.png"
    bad.write_bytes(b"junk")
    src = FolderSource(three, options=SourceOptions(loop=True))
    frames: list[Frame] = []
    for f in src.frames():
        frames.append(f)
        if len(frames) == 9:  # three passes over the three good files
            break
    assert src.stats.skipped == 1
    write(bad, np.full((8, 8), 7, np.uint8))  # repaired: a new size, so it is read again
    values = []
    for f in src.frames():
        values.append(int(f.image[0, 0]) if f.readable else -1)
        if len(values) == 4:
            break
    assert 7 in values and src.stats.skipped == 1
    assert frames[0].metadata["read_ms"] >= 0.0  # read time, not the pacing sleep
