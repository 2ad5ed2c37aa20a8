"""Real harvesters acquisition from the Viky GenTL simulator shipped in the ``genicam`` wheel.

Viky: 3 virtual devices (ids VikyTL_DEV_red/green/blue, serials 0/1/2), Width/Height 100-800,
PixelFormat RGBa8 or Mono8, AcquisitionFrameRate 1-200; no exposure, gain or trigger nodes.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from app.station.frame import Frame
from app.station.sources import (
    CameraSettings,
    GenICamSource,
    SourceError,
    SourceOptions,
    default_ctis,
    list_devices,
    open_source,
)
from app.station.sources import devices as devices_module

pytestmark = [
    pytest.mark.camera,
    pytest.mark.skipif(
        not default_ctis(), reason="viky.cti not found in the installed 'genicam' package"
    ),
]

FAST = SourceOptions(fps=200, fetch_timeout_s=2, reconnect_timeout_s=3)


def options(**camera: object) -> SourceOptions:
    return SourceOptions(
        fps=200, fetch_timeout_s=2, reconnect_timeout_s=3, camera=CameraSettings(**camera)
    )


def take(src: GenICamSource, n: int, timeout: float = 10.0) -> list[Frame]:
    frames: list[Frame] = []
    t0 = time.monotonic()
    for f in src.frames():
        frames.append(f)
        if len(frames) >= n or time.monotonic() - t0 > timeout:
            break
    return frames


@pytest.fixture(autouse=True)
def _no_gentl_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The tests rely on the Viky fallback, not on whatever producers this machine has installed.
    monkeypatch.delenv(devices_module.GENTL_PATH_VAR, raising=False)


def test_lists_the_three_viky_devices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    devices = list_devices()
    assert [d.id for d in devices] == ["VikyTL_DEV_red", "VikyTL_DEV_green", "VikyTL_DEV_blue"]
    assert [d.serial for d in devices] == ["0", "1", "2"]
    assert [d.index for d in devices] == [0, 1, 2]
    assert {d.model for d in devices} == {"Viky"}
    assert all(Path(d.cti).name == "viky.cti" for d in devices)
    # The standard discovery: a folder in GENICAM_GENTL64_PATH holding the .cti.
    (tmp_path / "viky.cti").symlink_to(default_ctis()[0])
    monkeypatch.setenv(devices_module.GENTL_PATH_VAR, str(tmp_path))
    assert devices_module.env_ctis() == (tmp_path / "viky.cti",)
    assert len(list_devices()) == 3


def test_mono8_acquisition_with_size() -> None:
    src = open_source(
        "genicam:VikyTL_DEV_green", settings=options(pixel_format="Mono8", width=320, height=240)
    )
    try:
        assert src.unsupported_settings == {}  # nothing requested that Viky lacks ...
        # ... yet the controls it lacks are known, requested or not (the GUI greys them out)
        assert set(src.missing_controls) == {"exposure_us", "gain_db", "trigger"}
        frames = take(src, 50)
    finally:
        src.close()
    assert len(frames) == 50 and src.stats.delivered == 50
    for f in frames:
        assert f.image.shape == (240, 320) and f.image.dtype == np.uint8
        assert f.image.flags.c_contiguous and not f.image.flags.writeable
        assert f.metadata["pixel_format"] == "Mono8" and f.metadata["device"] == "VikyTL_DEV_green"
    assert [f.frame_id for f in frames] == list(range(50))
    # Each frame owns its pixels (no view of a re-queued driver buffer): the scene moves.
    assert len({f.image.tobytes() for f in frames}) > 10
    assert src.acquirer is None  # close() released the device


def test_rgba8_acquisition_by_serial_becomes_bgr() -> None:
    src = open_source("genicam:2", settings=options(pixel_format="RGBa8", width=200, height=100))
    try:
        frames = take(src, 50)
    finally:
        src.close()
    assert src.device_info is not None and src.device_info.id == "VikyTL_DEV_blue"
    assert len(frames) == 50
    for f in frames:
        assert f.image.shape == (100, 200, 3) and f.image.dtype == np.uint8
        assert f.image.flags.c_contiguous


def test_missing_nodes_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="app.station.sources"):
        src = GenICamSource(
            "VikyTL_DEV_red", options=options(exposure_us=500, gain_db=3.0, trigger="software")
        )
    try:
        assert set(src.unsupported_settings) == {"exposure_us", "gain_db", "trigger"}
        assert "ExposureTime" in src.unsupported_settings["exposure_us"]
        assert src.triggered  # the recipe asked for triggered parts: never drop them
        assert len(take(src, 5)) == 5  # Viky free-runs anyway
    finally:
        src.close()
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "exposure_us not applied" in logged and "trigger not applied" in logged


def test_refused_settings_and_unknown_device_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"Width=801 is outside its range \[100, 800\]"):
        GenICamSource(0, options=options(width=801))
    with pytest.raises(SourceError, match="pixel format BayerRG8 is not supported"):
        GenICamSource(0, options=options(pixel_format="BayerRG8"))
    with pytest.raises(SourceError, match="'SN999' not found .* VikyTL_DEV_red"):
        open_source("genicam:SN999")
    with pytest.raises(SourceError, match="CTI file\\) not found"):
        open_source("genicam:0@/nowhere/x.cti")
    broken = tmp_path / "broken.cti"
    broken.write_text("not a shared library")
    with pytest.raises(SourceError, match="no loadable GenTL producer among: .*broken.cti"):
        list_devices([broken])
    assert len(list_devices()) == 3  # the failures released the producers


def test_stop_and_start_again() -> None:
    src = GenICamSource("0", options=options(pixel_format="Mono8", width=100, height=100))
    try:
        first = take(src, 10)
        second = take(src, 10)  # the consumer stopped iterating: acquisition stopped, device kept
        src.close()
        assert src.acquirer is None
        src.open()  # reopened: settings applied again
        third = take(src, 10)
    finally:
        src.close()
    ids = [f.frame_id for f in first + second + third]
    assert ids == list(range(30))
    assert third[0].image.shape == (100, 100)


def test_acquirer_destroyed_mid_stream_reconnects(caplog: pytest.LogCaptureFixture) -> None:
    src = GenICamSource("1", options=options(pixel_format="Mono8", width=160, height=120))
    frames: list[Frame] = []
    killer = threading.Thread(target=lambda: src.acquirer.destroy())
    try:
        with caplog.at_level(logging.ERROR, logger="app.station.sources"):
            t0 = time.monotonic()
            for f in src.frames():
                frames.append(f)
                if len(frames) == 20:
                    killer.start()  # the camera vanishes under the acquisition thread
                if (src.stats.reconnects and len(frames) >= 60) or time.monotonic() - t0 > 10:
                    break
    finally:
        killer.join()
        src.close()
    assert src.stats.reconnects == 1
    assert len(frames) >= 60  # frames flow again after the reconnect
    assert frames[-1].image.shape == (120, 160)  # settings re-applied on the new acquirer
    assert [f.frame_id for f in frames] == list(range(len(frames)))
    assert any("camera lost" in e for e in src.stats.errors)
    assert any("camera lost" in r.getMessage() for r in caplog.records)


def test_gives_up_when_the_camera_does_not_come_back(monkeypatch: pytest.MonkeyPatch) -> None:
    src = GenICamSource("0", options=SourceOptions(fps=200, reconnect_timeout_s=0.5))

    def gone(key: str, ctis: tuple[str, ...]) -> object:
        raise SourceError(f"GenICam device {key!r} not found")

    t0 = time.monotonic()
    with pytest.raises(SourceError, match=r"not reopened within 0.5 s .*not found"):
        for i, _ in enumerate(src.frames()):
            if i == 5:
                monkeypatch.setattr(devices_module._HUB, "open", gone)
                src.acquirer.destroy()
    assert time.monotonic() - t0 < 3
    monkeypatch.undo()
    src.close()
    assert src.stats.reconnects == 0 and len(list_devices()) == 3


def test_close_from_another_thread_and_two_cameras_at_once() -> None:
    red = GenICamSource("VikyTL_DEV_red", options=FAST)
    blue = GenICamSource("VikyTL_DEV_blue", options=FAST)
    got: list[Frame] = []
    worker = threading.Thread(target=lambda: got.extend(red.frames()))
    worker.start()
    try:
        assert len(take(blue, 10)) == 10  # both stream from the one shared Harvester
        time.sleep(0.2)
        t0 = time.monotonic()
        red.close()
        worker.join(2)
        assert not worker.is_alive() and time.monotonic() - t0 < 0.5
        assert got and red.acquirer is None
    finally:
        red.close()
        blue.close()
    assert len(list_devices()) == 3


def test_free_run_silence_counts_as_loss() -> None:
    # 1 frame/s against a 0.3 s fetch timeout: the camera looks gone and is reopened.
    # (Viky takes up to a frame period to stop, so a reopen here takes about 0.7 s.)
    src = GenICamSource("0", options=SourceOptions(fps=1, fetch_timeout_s=0.3))

    def close_after_reconnect() -> None:
        deadline = time.monotonic() + 5
        while not src.stats.reconnects and time.monotonic() < deadline:
            time.sleep(0.02)
        src.close()

    closer = threading.Thread(target=close_after_reconnect)
    closer.start()
    list(src.frames())
    closer.join()
    assert src.stats.reconnects >= 1
    assert any("no frame for" in e for e in src.stats.errors)
    assert src.acquirer is None
