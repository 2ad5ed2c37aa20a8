"""Pipeline throughput: synchronous vs threaded, one frame per inference vs batches of four.

Frames are decoded once and replayed from memory, so the numbers measure the pipeline (queue,
threads, batching, tiling, inference, rules) and not the disk. Every configuration runs with no
drops (``triggered`` mode) so each one judges the same frames. Throughput is reported as a ratio
against the synchronous, batch-1 run measured in the SAME invocation, and the configurations are
interleaved over several rounds so that the load of a shared machine hits all of them alike.

    python -m bench.bench_pipeline [--model resources/models/demo.onnx] [--frames 48]

Writes a markdown table (with the command that produced it) to ``bench/results/pipeline.md``.
"""

from __future__ import annotations

import argparse
import platform
import shlex
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.station.frame import Frame  # noqa: E402
from app.station.inspection import Inspection, Rules  # noqa: E402
from app.station.inspector import judge  # noqa: E402
from app.station.pipeline import Pipeline  # noqa: E402
from app.station.sources import SourceStats, read_image  # noqa: E402
from app.station.sources.folder import list_images  # noqa: E402
from bench.bench_engines import cpu_name, generated_model  # noqa: E402
from engines import Engine, load_engine  # noqa: E402
from engines.options import ort_threads  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "resources" / "models" / "demo.onnx"
DEFAULT_SAMPLES = ROOT / "resources" / "samples"
DEFAULT_OUT = ROOT / "bench" / "results" / "pipeline.md"
CONFIGS: tuple[tuple[str, bool, int], ...] = (  # (name, sync, max_batch); the first is the base
    ("sync, batch 1", True, 1),
    ("sync, batch 4", True, 4),
    ("threaded, batch 1", False, 1),
    ("threaded, batch 4", False, 4),
)


class MemorySource:
    """Replays decoded images as fresh frames; as fast as the pipeline takes them."""

    triggered = True

    def __init__(self, images: list[np.ndarray], n: int) -> None:
        self.name = "bench:memory"
        self.stats = SourceStats()
        self._images = images
        self._n = n
        self._stop = threading.Event()

    def frames(self) -> Iterator[Frame]:
        for i in range(self._n):
            if self._stop.is_set():
                return
            self.stats.delivered += 1
            yield Frame(self._images[i % len(self._images)], i, time.time(), self.name)

    def close(self) -> None:
        self._stop.set()


@dataclass(frozen=True)
class Row:
    name: str
    fps: float  # median over rounds
    infer_ms: float  # mean inference time of the batch a frame was in (last round)
    mean_batch: float
    rounds: int


def judge_fn(frame: Frame, prob: np.ndarray) -> Inspection:
    return judge(prob, Rules(threshold=0.5, min_area_px=30), frame_id=frame.frame_id)


def run_once(engine: Engine, images: list[np.ndarray], n: int, sync: bool, batch: int) -> tuple:
    pipe = Pipeline(
        MemorySource(images, n), engine, judge_fn, [], mode="triggered",
        queue_size=8, max_batch=batch, sync=sync, alarm_when_full=False,
    )  # fmt: skip
    start = time.perf_counter()
    pipe.start()
    if not pipe.wait(600):
        raise RuntimeError("pipeline did not finish within 10 minutes")
    elapsed = time.perf_counter() - start
    pipe.stop()
    st = pipe.stats()
    if st.judged != n:
        raise RuntimeError(f"judged {st.judged} of {n} frames")
    return (
        n / elapsed,
        st.latency_ms.get("infer", 0.0),
        st.mean_batch,
    )


def _relative(path: Path) -> str:
    """Repository-relative in the report, so it reads the same on every machine."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def load_images(folder: Path | None, size: int) -> tuple[list[np.ndarray], str]:
    if folder is not None and folder.is_dir() and list_images(folder):
        paths = list_images(folder)[:16]
        shape = "x".join(map(str, read_image(paths[0]).shape))
        return [
            read_image(p) for p in paths
        ], f"{len(paths)} {shape} images from `{_relative(folder)}`"
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (size, size), dtype=np.uint8) for _ in range(8)]
    return images, f"8 random {size}x{size} frames (no sample folder)"


def measure(engine: Engine, images: list[np.ndarray], frames: int, rounds: int) -> list[Row]:
    run_once(engine, images, 4, True, 1)  # warm-up: arena allocation, kernel choice
    fps: dict[str, list[float]] = {name: [] for name, _, _ in CONFIGS}
    last: dict[str, tuple[float, float]] = {}
    for _ in range(rounds):
        for name, sync, batch in CONFIGS:
            f, *rest = run_once(engine, images, frames, sync, batch)
            fps[name].append(f)
            last[name] = tuple(rest)
    return [Row(name, statistics.median(fps[name]), *last[name], rounds) for name, _, _ in CONFIGS]


def render(rows: list[Row], command: str, model: str, data: str, frames: int) -> str:
    import onnxruntime as ort

    base = rows[0].fps
    lines = [
        "# Pipeline benchmark: throughput of source -> queue -> inference -> rules",
        "",
        f"Command: `{command}`  ",
        f"Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; CPU: {cpu_name()}; "
        f"ONNX Runtime {ort.__version__}, {ort_threads()} intra-op threads; "
        f"Python {platform.python_version()}  ",
        f"Model: {model}; frames: {data}, {frames} per run, no drops (triggered mode).",
        "",
        f"Baseline: {rows[0].name} = {base:.1f} frames/s. *Speed* = this row's frames/s / the "
        "baseline's, measured in the same run (median over interleaved rounds).",
        "",
        "| configuration | frames / s | speed | infer ms per batch | mean batch | rounds |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.fps:.1f} | {r.fps / base:.2f}x | {r.infer_ms:.1f} | "
            f"{r.mean_batch:.2f} | {r.rounds} |"
        )
    lines += [
        "",
        "*threaded* overlaps acquisition (and frame construction) with inference on a second "
        "thread; *batch 4* hands every frame already waiting (up to 4) to one `predict_maps` "
        "call, whose tiles then share `engine.infer` calls. Every frame of a batch waits for the "
        "whole batch (*infer ms per batch*) before its verdict: batching trades latency for "
        "throughput.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help=f"default {DEFAULT_MODEL}")
    parser.add_argument("--data", type=Path, default=None, help=f"default {DEFAULT_SAMPLES}")
    parser.add_argument("--frames", type=int, default=48, help="frames per run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved passes over configs")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    command = "python -m bench.bench_pipeline " + shlex.join(sys.argv[1:] if argv is None else argv)

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or (DEFAULT_MODEL if DEFAULT_MODEL.is_file() else None)
        shown = f"`{_relative(model)}`" if model else "a generated conv net (demo model not found)"
        if model is None:
            print(f"{DEFAULT_MODEL} not found; benchmarking a generated conv net", file=sys.stderr)
            model = generated_model(Path(tmp))
        engine = load_engine(model)
        try:
            images, data = load_images(args.data or DEFAULT_SAMPLES, 2 * engine.card.input_height)
            rows = measure(engine, images, args.frames, args.rounds)
        finally:
            engine.close()
    report = render(rows, command, shown, data, args.frames)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
