"""ONNX Runtime settings that need no training, measured as ratios to the station's own settings.

``python -m bench routes [--model resources/models/dagm-class1.onnx] [--seconds 4]``

Each route opens the station's :class:`~engines._onnxruntime.OnnxRuntimeEngine` with other
session options and runs :func:`engines.predict_maps` on 512x512 frames (one DAGM frame per call,
batch 1), timed in interleaved rounds so a shared machine's load hits every route alike:

* the station's settings (the baseline): intra-op threads = cores, no spinning, all graph
  optimisations, the default memory arena;
* 1 intra-op thread, one session;
* two sessions of 1 thread each, one Python thread per session, frames in parallel (what a
  pipeline with two inference workers would do; ORT releases the GIL while it runs);
* intra-op spinning on; graph optimisation basic / extended / disabled; CPU memory arena and
  memory-pattern planning off;
* the INT8 variant with the baseline settings and as two 1-thread sessions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._machine import MODELS, LoadSampler, Machine, command_line, relative, write_results
from bench.engines_table import frames_for
from engines import predict_maps
from engines._onnxruntime import OnnxRuntimeEngine
from engines.card import load_card_for
from engines.options import ort_session_options, ort_threads


def options(
    threads: int | None = None,
    *,
    spinning: bool = False,
    level: str = "ORT_ENABLE_ALL",
    arena: bool = True,
    mem_pattern: bool = True,
) -> Any:
    """The station's session options with one setting changed."""
    import onnxruntime as ort

    opts = ort_session_options(threads)
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
    opts.enable_cpu_mem_arena = arena
    opts.enable_mem_pattern = mem_pattern
    return opts


class Route:
    """``sessions`` engines, each driven by its own thread over its share of the frames."""

    def __init__(
        self, name: str, model: Path, sessions: int, make_options: Callable[[], Any]
    ) -> None:
        self.name = name
        self.model = model
        card = load_card_for(model)
        self.engines = [
            OnnxRuntimeEngine(model, card, session_options=make_options()) for _ in range(sessions)
        ]

    def run(self, frames: list[Any], seconds: float) -> tuple[int, float]:
        """Frames judged by all sessions together in about ``seconds``; returns (frames, elapsed)."""
        counts = [0] * len(self.engines)
        deadline = time.perf_counter() + seconds

        def work(i: int) -> None:
            engine = self.engines[i]
            while True:
                predict_maps(engine, [frames[(counts[i] + i) % len(frames)]], max_batch=1)
                counts[i] += 1
                if time.perf_counter() >= deadline:
                    return

        t0 = time.perf_counter()
        if len(self.engines) == 1:
            work(0)
        else:
            threads = [threading.Thread(target=work, args=(i,)) for i in range(len(self.engines))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        return sum(counts), time.perf_counter() - t0

    def close(self) -> None:
        for e in self.engines:
            e.close()


def plan(model: Path, int8: Path | None) -> list[tuple[str, Path, int, Callable[[], Any]]]:
    cores = ort_threads()
    rows: list[tuple[str, Path, int, Callable[[], Any]]] = [
        (f"station settings ({cores} threads)", model, 1, lambda: options()),
        ("1 thread, 1 session", model, 1, lambda: options(1)),
        ("2 sessions x 1 thread, frames in parallel", model, 2, lambda: options(1)),
        ("intra-op spinning on", model, 1, lambda: options(spinning=True)),
        ("graph optimisation: extended", model, 1, lambda: options(level="ORT_ENABLE_EXTENDED")),
        ("graph optimisation: basic", model, 1, lambda: options(level="ORT_ENABLE_BASIC")),
        ("graph optimisation: disabled", model, 1, lambda: options(level="ORT_DISABLE_ALL")),
        ("CPU arena and memory pattern off", model, 1, lambda: options(arena=False, mem_pattern=False)),
    ]  # fmt: skip
    if int8 is not None:
        rows += [
            (f"INT8, station settings ({cores} threads)", int8, 1, lambda: options()),
            ("INT8, 2 sessions x 1 thread", int8, 2, lambda: options(1)),
        ]
    return rows


def render(machine: Machine, model: Path, rows: list[dict[str, Any]]) -> str:
    base, best = rows[0]["fps"], rows[0]["best_fps"]
    lines = machine.header("ONNX Runtime routes: session settings, as ratios to the station's")
    lines += [
        f"Model: `{relative(model)}`; each call is `predict_maps` on one 512x512 8-bit frame. "
        "Frames/s = frames done by all sessions together / wall time, median over interleaved "
        f"rounds. Baseline: {rows[0]['name']} = {base:.1f} frames/s.",
        "",
        "| route | model | sessions | frames / s | vs station | best round frames / s | "
        "best vs station's best | rounds |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {Path(r['model']).name} | {r['sessions']} | {r['fps']:.1f} | "
            f"{r['fps'] / base:.2f}x | {r['best_fps']:.1f} | {r['best_fps'] / best:.2f}x | "
            f"{r['rounds']} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench routes", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model", type=Path, default=MODELS / "dagm-class1.onnx")
    parser.add_argument(
        "--int8", type=Path, default=None, help="default: MODEL-int8.onnx if present"
    )
    parser.add_argument("--frame-size", type=int, default=512)
    parser.add_argument("--seconds", type=float, default=4.0, help="time per route")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--stem", default="ort_routes")
    args = parser.parse_args(argv)
    int8 = args.int8 or args.model.with_name(f"{args.model.stem}-int8.onnx")
    machine = Machine(command_line("routes", argv))
    sampler = LoadSampler()
    frames = frames_for(args.frame_size, 4)
    routes = []
    try:
        for name, path, sessions, make in plan(args.model, int8 if int8.is_file() else None):
            route = Route(name, path, sessions, make)
            route.run(frames, 0.2)  # warm-up
            routes.append(route)
        fps: dict[str, list[float]] = {r.name: [] for r in routes}
        for i in range(args.rounds):
            # every other round in reverse: no route always follows the same neighbour
            for route in routes if i % 2 == 0 else routes[::-1]:
                n, elapsed = route.run(frames, args.seconds / args.rounds)
                fps[route.name].append(n / elapsed)
    finally:
        for route in routes:
            route.close()
        machine.load = sampler.stop()
    rows = [
        {"name": r.name, "model": relative(r.model), "sessions": len(r.engines),
         "fps": statistics.median(fps[r.name]), "best_fps": max(fps[r.name]),
         "samples": fps[r.name], "rounds": args.rounds}
        for r in routes
    ]  # fmt: skip
    report = render(machine, args.model, rows)
    path = write_results(
        args.stem, report, {"machine": machine.as_dict(), "rows": rows}, args.out_dir
    )
    print(report)
    print(f"wrote {path}", file=sys.stderr)
    return 0
