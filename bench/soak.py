"""Soak: the station headless on the Viky camera for a long time, memory and books sampled.

    python -m bench.soak --minutes 30 --out bench/results/soak.md     (``make soak``)

Runs ``inspection-station run --headless --source genicam:0 --db DB`` as a child process (the
same command a line runs), samples its RSS (``/proc/PID/status`` VmRSS), the results it has
printed and the rows in its database every ``--every`` seconds, then stops it with SIGTERM and
checks the books: rows == PASS + NG + ERROR == lines printed, ``acquired == pass + ng + error +
dropped``, nothing lost, and the RSS slope after the warm-up (least squares, MB/min).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Sample:
    t_s: float
    rss_mb: float
    results: int
    rows: int


@dataclass
class SoakResult:
    samples: list[Sample] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    lines: int = 0
    rows: int = 0
    exit_code: int | None = None
    slope_mb_per_min: float = 0.0
    warmup_s: float = 0.0
    command: list[str] = field(default_factory=list)

    @property
    def books_ok(self) -> bool:
        s = self.summary
        if not s:
            return False
        results = s["pass"] + s["ng"] + s["error"]
        return (
            self.rows == results == self.lines
            and s["acquired"] == results + s["dropped"]
            and s["lost"] == 0
        )


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def count_rows(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1.0) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM inspections").fetchone()[0])
    except sqlite3.Error:
        return -1  # busy for a moment: the sample says so instead of guessing


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y)."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else 0.0


def soak(
    seconds: float,
    *,
    every_s: float = 10.0,
    warmup_s: float | None = None,
    source: str = "genicam:0",
) -> SoakResult:
    warmup = seconds * 0.2 if warmup_s is None else warmup_s
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        db = Path(tmp) / "results.db"
        env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
        env.pop("QT_QPA_PLATFORM", None)
        env["INSPECTION_STATION_HOME"] = str(Path(tmp) / "home")
        cmd = [
            sys.executable,
            "-m",
            "app",
            "run",
            "--headless",
            "--source",
            source,
            "--db",
            str(db),
        ]
        result = SoakResult(warmup_s=warmup, command=cmd)
        proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
        )
        lines: list[str] = []

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        t0 = time.monotonic()
        try:
            while (elapsed := time.monotonic() - t0) < seconds and proc.poll() is None:
                time.sleep(min(every_s, max(0.0, seconds - elapsed)))
                result.samples.append(
                    Sample(
                        round(time.monotonic() - t0, 1),
                        rss_mb(proc.pid),
                        len(lines),
                        count_rows(db),
                    )
                )
            proc.send_signal(signal.SIGTERM)
            result.exit_code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        reader.join(10)
        records = [json.loads(line) for line in lines if line.strip()]
        if records and records[-1].get("summary"):
            result.summary = records[-1]
        result.lines = len(records) - (1 if result.summary else 0)
        result.rows = count_rows(db)
    after = [(s.t_s / 60.0, s.rss_mb) for s in result.samples if s.t_s >= warmup]
    result.slope_mb_per_min = round(slope(after), 3)
    return result


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    model = next(
        (line.split(":", 1)[1].strip() for line in text.splitlines() if "model name" in line), "?"
    )
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")),
        [],
    )
    wanted = sorted(
        f for f in flags if f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8")
    )
    return f"{model}; {os.cpu_count()} cores; {' '.join(wanted)}"


def write_report(result: SoakResult, minutes: float, out: Path) -> None:
    s = result.summary
    lines = [
        "# Soak: headless on the Viky camera",
        "",
        f"Command: `python -m bench.soak --minutes {minutes:g}` → `python -m app run --headless --source {result.command[result.command.index('--source') + 1]} --db DB` (DB in a temporary folder)",
        f"Load average at the end: {os.getloadavg()[0]:.1f} (frames/s below are only meaningful on an idle machine; the soak is about memory and books)",
        f"Machine: {cpu_flags()}; Python {platform.python_version()}; {time.strftime('%Y-%m-%d')}",
        "",
        "| what | value |",
        "|---|---|",
        f"| duration | {minutes:g} min (warm-up {result.warmup_s / 60:.1f} min excluded from the slope) |",
        f"| RSS slope after warm-up | {result.slope_mb_per_min} MB/min (goal < 0.5) |",
        f"| RSS first / last sample | {result.samples[0].rss_mb:.1f} / {result.samples[-1].rss_mb:.1f} MB |"
        if result.samples
        else "| RSS | no sample |",
        f"| acquired / PASS / NG / ERROR / dropped | {s.get('acquired')} / {s.get('pass')} / {s.get('ng')} / {s.get('error')} / {s.get('dropped')} |",
        f"| rows in the database / lines printed | {result.rows} / {result.lines} |",
        f"| stored / journaled / lost | {s.get('stored')} / {s.get('journaled')} / {s.get('lost')} |",
        f"| judged frames/s over the run | {s.get('fps')} |",
        f"| exit code after SIGTERM | {result.exit_code} (143 = stopped by SIGTERM, cleanly) |",
        f"| books balance (rows == results == lines, acquired == results + dropped, 0 lost) | {'yes' if result.books_ok else 'NO'} |",
        "",
        "| t (s) | RSS (MB) | results printed | rows |",
        "|---:|---:|---:|---:|",
        *(f"| {x.t_s:g} | {x.rss_mb:.1f} | {x.results} | {x.rows} |" for x in result.samples),
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--every", type=float, default=10.0, help="seconds between samples")
    ap.add_argument("--source", default="genicam:0")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "soak.md")
    args = ap.parse_args(argv)
    result = soak(args.minutes * 60.0, every_s=args.every, source=args.source)
    write_report(result, args.minutes, args.out)
    print(f"slope {result.slope_mb_per_min} MB/min, books {'ok' if result.books_ok else 'NOT ok'}")
    return 0 if result.books_ok and result.slope_mb_per_min < 0.5 else 1


if __name__ == "__main__":
    raise SystemExit(main())
