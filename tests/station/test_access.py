"""Engineer access: scrypt PIN records, back-off after wrong PINs, 0600 settings, set-pin CLI."""

from __future__ import annotations

import io
import logging
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from app.station.access import (
    EngineerAccess,
    PinError,
    hash_pin,
    is_pin_hash,
    pin_problem,
    verify_pin,
)
from app.station.settings import Settings, load_settings, save_pin_record, save_settings

ROOT = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_hash_is_salted_and_verifies() -> None:
    a, b = hash_pin("4711"), hash_pin("4711")
    assert a != b  # a fresh salt per PIN
    assert a.startswith("scrypt$16384$8$1$") and "4711" not in a
    assert verify_pin("4711", a) and verify_pin("4711", b)
    assert not verify_pin("4712", a) and not verify_pin("", a)
    assert is_pin_hash(a) and not is_pin_hash("4711")


@pytest.mark.parametrize(
    "record",
    [
        "scrypt$16384$8$1$abc",  # too few fields
        "bcrypt$16384$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==",
        "scrypt$1000$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==",  # N not a power of two
        "scrypt$4194304$8$1$AAAAAAAAAAA=$AAAAAAAAAAAAAAAAAAAAAA==",  # N too costly
        "scrypt$16384$8$1$!!!$AAAAAAAAAAAAAAAAAAAAAA==",  # bad base64
    ],
)
def test_malformed_records_are_refused(record: str) -> None:
    with pytest.raises(PinError):
        verify_pin("1234", record)
    with pytest.raises(PinError):
        EngineerAccess(record)  # a damaged record is not taken for a clear-text PIN


def test_pin_rules() -> None:
    assert pin_problem("123") and pin_problem(" 1234") and pin_problem("12\n34")
    assert pin_problem("x" * 129)
    assert pin_problem("4711") is None and pin_problem("correct horse") is None


def test_backoff_after_three_failures(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    events: list[tuple[str, str]] = []
    access = EngineerAccess(
        hash_pin("4711"), clock=clock, on_event=lambda k, m: events.append((k, m))
    )
    with caplog.at_level(logging.WARNING, logger="app.station.access"):
        assert not access.check("0000").ok and access.wait_s() == 0
        assert not access.check("0001").ok and access.wait_s() == 0
        third = access.check("0002")
    assert not third.ok and third.wait_s == 2.0 and "try again in 2 s" in third.message
    assert [k for k, _ in events] == ["alarm"] * 3
    assert "wrong PIN (3 in a row)" in events[-1][1]
    assert sum("engineer login failed" in r.message for r in caplog.records) == 3
    # during the wait even the right PIN is refused, without counting as a failure
    blocked = access.check("4711")
    assert not blocked.ok and blocked.wait_s == 2.0 and access.failures == 3
    clock.now += 2.0
    fourth = access.check("0003")
    assert fourth.wait_s == 4.0  # doubles
    for _ in range(20):
        clock.now += access.wait_s()
        last = access.check("9999")
    assert last.wait_s == 300.0  # capped
    clock.now += 300.0
    assert access.check("4711").ok and access.failures == 0
    assert events[-1] == ("info", "engineer login")


def test_no_default_pin_first_pin_and_change() -> None:
    saved: list[str] = []
    access = EngineerAccess("", persist=saved.append)
    assert not access.has_pin
    assert not access.check("").ok and not access.check("1234").ok
    assert not access.set_pin("12").ok and not saved  # too short
    assert access.set_pin("4711").ok and access.has_pin
    assert len(saved) == 1 and verify_pin("4711", saved[0])
    assert access.check("4711").ok
    assert not access.set_pin("5555").ok  # changing needs the current PIN
    assert not access.set_pin("5555", current="0000").ok
    assert access.set_pin("5555", current="4711").ok and access.check("5555").ok


def test_pin_not_saved_is_not_in_force() -> None:
    def fail(record: str) -> None:
        raise OSError(28, "No space left on device")

    access = EngineerAccess("", persist=fail)
    result = access.set_pin("4711")
    assert not result.ok and "could not be saved" in result.message and not access.has_pin


def test_clear_pin_in_memory_is_hashed() -> None:
    access = EngineerAccess("4711")
    assert is_pin_hash(access.record) and access.check("4711").ok


def test_settings_written_private_and_migrated(tmp_path: Path) -> None:
    home = tmp_path / "conf"
    home.mkdir(mode=0o755)
    path = home / "settings.toml"
    path.write_text('engineer_pin = "4711"\nkeep_last = 7\n')
    path.chmod(0o644)
    s = load_settings(path, environ={})
    text = path.read_text()
    assert "4711" not in text and "engineer_pin_hash" in text and "keep_last = 7" in text
    assert verify_pin("4711", s.engineer_pin) and s.path == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    # a second load finds the hash and leaves it alone
    assert load_settings(path, environ={}).engineer_pin == s.engineer_pin

    out = save_settings(Settings.defaults(tmp_path), tmp_path / "new" / "settings.toml")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert stat.S_IMODE(out.parent.stat().st_mode) == 0o700
    assert "engineer_pin" not in out.read_text()  # no PIN set, nothing written


def test_save_settings_never_writes_clear_pin(tmp_path: Path) -> None:
    s = Settings("4711", tmp_path, tmp_path / "r.sqlite3", tmp_path / "a")
    out = save_settings(s, tmp_path / "settings.toml")
    assert "4711" not in out.read_text()
    assert verify_pin("4711", load_settings(out, environ={}).engineer_pin)


def test_save_pin_record_keeps_other_keys(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text('keep_last = 9\nengineer_pin = "1111"\n')
    save_pin_record(path, hash_pin("2222"))
    s = load_settings(path, environ={})
    assert s.keep_last == 9 and verify_pin("2222", s.engineer_pin)
    assert "1111" not in path.read_text()


def test_set_pin_from_stdin(tmp_path: Path) -> None:
    from app.cli import build_parser
    from app.station._pin_cli import cmd_set_pin

    path = tmp_path / "settings.toml"
    args = build_parser().parse_args(["set-pin", "--settings", str(path)])
    assert cmd_set_pin(args, stdin=io.StringIO("4711\n")) == 0
    assert verify_pin("4711", load_settings(path, environ={}).engineer_pin)
    assert cmd_set_pin(args, stdin=io.StringIO("12\n")) == 2  # too short: refused
    assert cmd_set_pin(args, stdin=io.StringIO("")) == 2  # nothing on stdin
    assert verify_pin("4711", load_settings(path, environ={}).engineer_pin)


def test_set_pin_command_line(tmp_path: Path) -> None:
    env = {"INSPECTION_STATION_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "app", "set-pin"],
        input="2468\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "settings.toml"
    assert verify_pin("2468", load_settings(path, environ={}).engineer_pin)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
