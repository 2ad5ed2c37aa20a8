"""Frames/s and peak memory against frame size: 512², 1024², 2048², 4096² (tiled).

``python -m bench scaling [--model resources/models/dagm-class1.onnx] [--sizes 512,1024,2048,4096]``

Each size runs in a fresh child process (so its peak RSS is its own): the station's engine,
:func:`engines.predict_maps` (scale by the card's ``frame_scale``, tile with overlap, infer,
stitch, resize back) and the rules (:func:`app.station.inspector.judge`) on an 8-bit frame of that
size held in memory. Cost should grow with pixels; *ms / Mpx* and *ms / tile* show where it does
not (tile overlap, the full-resolution map, resize).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench._machine import (
    MODELS,
    ROOT,
    LoadSampler,
    Machine,
    command_line,
    peak_rss_mb,
    relative,
    write_results,
)

SIZES = (512, 1024, 2048, 4096)


def child(model: str, size: int, seconds: float) -> dict[str, Any]:
    from app.station.inspection import Rules
    from app.station.inspector import judge
    from bench.engines_table import frames_for
    from engines import load_engine, predict_maps
    from engines.predict import default_overlap
    from engines.tiling import tile_grid

    engine = load_engine(model)
    card = engine.card
    rss_model = peak_rss_mb()
    frame = frames_for(size, 1)[0]
    rules = Rules(threshold=card.threshold, min_area_px=card.min_area_px)
    sh, sw = round(size * card.frame_scale), round(size * card.frame_scale)
    overlap = default_overlap(card.input_height, card.input_width)
    tiles = len(tile_grid(sh, sw, card.input_height, card.input_width, overlap))
    prob = predict_maps(engine, [frame])[0]  # warm-up
    judge(prob, rules, frame_id=0)
    times = []
    t_end = time.perf_counter() + seconds
    while not times or (time.perf_counter() < t_end and len(times) < 50):
        t0 = time.perf_counter()
        prob = predict_maps(engine, [frame])[0]
        judge(prob, rules, frame_id=len(times))
        times.append(time.perf_counter() - t0)
    times.sort()
    med = times[len(times) // 2]
    return {
        "size": size,
        "tiles": tiles,
        "frames": len(times),
        "ms_per_frame": med * 1000.0,
        "fps": 1.0 / med,
        "ms_per_mpx": med * 1000.0 / (size * size / 1e6),
        "ms_per_tile": med * 1000.0 / tiles,
        "peak_rss_mb": peak_rss_mb(),
        "rss_after_model_mb": rss_model,
    }


def run_size(model: Path, size: int, seconds: float) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "bench.scaling", "--child", str(size), "--model", str(model),
           "--seconds", str(seconds)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=1800)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("BENCH-RESULT "):
            return dict(json.loads(line.removeprefix("BENCH-RESULT ")))
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"size": size, "skip": f"child exited {proc.returncode}: {tail}"}


def render(machine: Machine, model: Path, rows: list[dict[str, Any]]) -> str:
    lines = machine.header("Scaling: frames/s and peak memory against frame size")
    ok = [r for r in rows if "skip" not in r]
    base = ok[0] if ok else None
    lines += [
        f"Model: `{relative(model)}`. One frame in memory per call: `predict_maps` + rules. "
        "*linear* = this row's ms per Mpx / the smallest frame's (1.00 = cost grows exactly "
        "with pixels). Peak RSS is the child process's (model, frame, maps).",
        "",
        "| frame | tiles | ms / frame | frames / s | ms / Mpx | linear | ms / tile | peak RSS MB | "
        "RSS after model load MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "skip" in r:
            lines.append(f"| {r['size']}² | skipped: {r['skip']} ||||||||")
            continue
        lin = r["ms_per_mpx"] / base["ms_per_mpx"] if base else math.nan
        lines.append(
            f"| {r['size']}² | {r['tiles']} | {r['ms_per_frame']:.1f} | {r['fps']:.2f} | "
            f"{r['ms_per_mpx']:.1f} | {lin:.2f} | {r['ms_per_tile']:.1f} | "
            f"{r['peak_rss_mb']:.0f} | {r['rss_after_model_mb']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench scaling", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--model", type=Path, default=MODELS / "dagm-class1.onnx")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--seconds", type=float, default=5.0, help="time per size")
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--stem", default="scaling")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print("BENCH-RESULT " + json.dumps(child(str(args.model), args.child, args.seconds)))
        return 0
    machine = Machine(command_line("scaling", argv))
    sampler = LoadSampler()
    try:
        rows = []
        for size in (int(s) for s in args.sizes.split(",")):
            print(f"scaling: {size}x{size}", file=sys.stderr)
            rows.append(run_size(args.model, size, args.seconds))
    finally:
        machine.load = sampler.stop()
    report = render(machine, args.model, rows)
    path = write_results(
        args.stem, report, {"machine": machine.as_dict(), "rows": rows}, args.out_dir
    )
    print(report)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
