"""Source specs and options: parsing, validation, and clear errors for bad ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.station.sources import (
    CameraSettings,
    SourceError,
    SourceOptions,
    SourceSpec,
    open_source,
    parse_spec,
)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("folder:/data/line1", SourceSpec("folder", "/data/line1")),
        ("video:3", SourceSpec("video", "3")),
        ("video:/v/a b.avi", SourceSpec("video", "/v/a b.avi")),
        ("genicam:SN1234", SourceSpec("genicam", "SN1234")),
        ("genicam:2@/opt/x@y/cam.cti", SourceSpec("genicam", "2", "/opt/x@y/cam.cti")),
        ("genicam:", SourceSpec("genicam", "0")),
        ("GenICam:dev", SourceSpec("genicam", "dev")),
    ],
)
def test_parse_spec(spec: str, expected: SourceSpec) -> None:
    assert parse_spec(spec) == expected


def test_spec_round_trips_to_text() -> None:
    assert str(parse_spec("genicam:2@/opt/cam.cti")) == "genicam:2@/opt/cam.cti"


def test_folder_path_expands_home() -> None:
    assert parse_spec("folder:~/x").target == str(Path.home() / "x")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "expected folder:PATH, genicam:DEVICE"),
        ("/data/images", "expected folder:PATH"),
        ("usb:0", "unknown kind 'usb'"),
        ("folder:", "folder: needs a PATH"),
        ("video:", "video: needs a file PATH or a device INDEX"),
        ("genicam:0@", "nothing after '@'"),
    ],
)
def test_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        open_source(spec)


def test_options_validate() -> None:
    with pytest.raises(ValueError, match="fps must be >= 0"):
        SourceOptions(fps=-1)
    with pytest.raises(ValueError, match="mode must be"):
        SourceOptions(mode="burst")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="fetch_timeout_s must be > 0"):
        SourceOptions(fetch_timeout_s=0)
    with pytest.raises(ValueError, match="camera width must be a positive integer"):
        CameraSettings(width=0)
    with pytest.raises(ValueError, match="camera trigger must be one of off, software, hardware"):
        CameraSettings(trigger="line1")  # type: ignore[arg-type]
    opts = SourceOptions(ctis=["a.cti"])  # type: ignore[arg-type]  # as TOML would give it
    assert opts.ctis == ("a.cti",) and hash(opts)
