"""SIGTERM / SIGINT to the station window: the line stops cleanly and every verdict is stored."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _rows(db: Path) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM inspections").fetchone()[0])
    except sqlite3.Error:
        return 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_closes_the_running_gui_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env["QT_QPA_PLATFORM"] = "offscreen"
    env["INSPECTION_STATION_HOME"] = str(tmp_path / "home")
    db = tmp_path / "home" / "results.sqlite3"
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "settings.toml").write_text(f'db_path = "{db.as_posix()}"\n')
    # The demo recipe autostarts its line (a folder replay of the bundled samples, looping).
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "gui"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while _rows(db) < 5 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert _rows(db) >= 5, "the autostarted line judged nothing"
        t0 = time.monotonic()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, err[-2000:]
    assert took < 5.0, f"{took:.1f} s to close"
    assert "Traceback" not in err
    # Stopped cleanly: nothing was left in the journal, and the audit trail saw the stop.
    assert not any(p.name.endswith(".jsonl") and p.stat().st_size for p in db.parent.iterdir())
    with sqlite3.connect(db) as conn:
        actions = [a for (a,) in conn.execute("SELECT action FROM audit ORDER BY id")]
    assert actions[:1] == ["station.start"] and "station.stop" in actions
