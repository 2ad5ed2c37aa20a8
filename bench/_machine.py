"""What every benchmark figure carries: machine, versions, date, load, and where results go.

Benchmarks on this project run on a shared 2-core machine, so each report states the load average
(``os.getloadavg()``) at its start, end and highest sample, and calls itself *preliminary* when
other jobs were running: the load exceeded 2 before the run, or exceeded 2 plus the benchmark's
own share (one runnable thread per core: the benchmark itself keeps the cores busy) during it.
Ratios measured within one run still mean something then; absolute milliseconds do not.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shlex
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DAGM_DIR = Path(
    os.environ.get("DAGM_CLASS1", str(ROOT.parent / "shared/data/dagm2007/Class1/Test"))
)
MODELS = ROOT / "resources" / "models"
FLAGS_OF_INTEREST = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")
PACKAGES = (
    "numpy",
    "onnxruntime",
    "opencv-python-headless",
    "opencv-python",
    "tensorflow",
    "tensorflow-cpu",
    "keras",
    "tf2onnx",
    "tensorrt",
    "PySide6",
)
PRELIMINARY_LOAD = 2.0  # load average above which a figure is marked preliminary (2 cores here)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_flags() -> list[str]:
    """The SIMD flags that decide which kernels ONNX Runtime / oneDNN pick (from /proc/cpuinfo)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.split(":", 1)[1].split())
                return [f for f in FLAGS_OF_INTEREST if f in have]
    except OSError:
        pass
    return []


def versions() -> dict[str, str]:
    """Installed versions (from package metadata: nothing heavy is imported to learn them)."""
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def load() -> float:
    return round(os.getloadavg()[0], 2)


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (Linux ``ru_maxrss`` is in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)


class LoadSampler:
    """Samples the 1-minute load average every few seconds while a benchmark runs."""

    def __init__(self, every_s: float = 5.0) -> None:
        self.samples: list[float] = [load()]
        self._every = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-load", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            self.samples.append(load())

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join(timeout=1.0)
        self.samples.append(load())
        return {"start": self.samples[0], "end": self.samples[-1], "max": max(self.samples)}


@dataclass
class Machine:
    """The header of every report."""

    command: str
    cpu: str = field(default_factory=cpu_model)
    flags: list[str] = field(default_factory=cpu_flags)
    cores: int = field(default_factory=lambda: len(os.sched_getaffinity(0)))
    versions: dict[str, str] = field(default_factory=versions)
    date: str = field(default_factory=lambda: datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    load: dict[str, float] = field(default_factory=dict)

    @property
    def preliminary(self) -> bool:
        if not self.load:
            return load() > PRELIMINARY_LOAD
        before = self.load.get("start", 0.0)
        # the load average counts the benchmark's own busy threads too (up to one per core)
        return (
            before > PRELIMINARY_LOAD or self.load.get("max", 0.0) > PRELIMINARY_LOAD + self.cores
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "cpu": self.cpu,
            "flags": self.flags,
            "cores": self.cores,
            "versions": self.versions,
            "date": self.date,
            "load": self.load,
            "preliminary": self.preliminary,
        }

    def header(self, title: str) -> list[str]:
        vers = ", ".join(f"{k} {v}" for k, v in self.versions.items())
        loads = ", ".join(f"{k} {v:.1f}" for k, v in self.load.items())
        lines = [
            f"# {title}",
            "",
            f"Command: `{self.command}`  ",
            f"Date: {self.date}; CPU: {self.cpu}, {self.cores} logical CPUs, flags "
            f"{' '.join(self.flags) or 'none of ' + ' '.join(FLAGS_OF_INTEREST)}  ",
            f"Versions: {vers}  ",
            f"Load average (1 min) during the run: {loads or 'not sampled'}",
            "",
        ]
        if self.preliminary:
            lines += [
                f"**Preliminary**: other jobs shared the cores (load average above "
                f"{PRELIMINARY_LOAD:.0f} before the run, or above {PRELIMINARY_LOAD:.0f} + "
                f"{self.cores} for the benchmark's own threads during it). Ratios within the run "
                "are indicative; absolute times are not. Re-run on an idle machine before quoting.",
                "",
            ]
        return lines


def command_line(sub: str, argv: list[str] | None) -> str:
    args = sys.argv[1:] if argv is None else argv
    return f"python -m bench {sub} {shlex.join(args)}".rstrip()


def _relative_paths(text: str) -> str:
    """Results are committed: paths of this machine become relative to the project root."""
    return text.replace(f"{ROOT}/", "").replace(f"{ROOT.parent}/", "../")


def write_results(stem: str, markdown: str, data: dict[str, Any], out_dir: Path | None) -> Path:
    """``<out_dir>/<stem>.md`` and ``.json``; returns the markdown path."""
    folder = out_dir or RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    md = folder / f"{stem}.md"
    md.write_text(_relative_paths(markdown), encoding="utf-8")
    (folder / f"{stem}.json").write_text(
        _relative_paths(json.dumps(data, indent=1, default=str)) + "\n", encoding="utf-8"
    )
    return md


def relative(path: Path | str) -> str:
    """Repository-relative in reports, so they read the same on every machine."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100.0 * (len(ordered) - 1))))]


def timestamp() -> float:
    return time.perf_counter()
