"""Peak memory and time of one large frame: decode (as the folder source does) + predict_maps.

Each case runs in a fresh child process, so its peak RSS (``ru_maxrss``) is the frame's alone:

    python -m bench.bench_memory [--size 9000] [--scales 1.0 0.5] [--model resources/models/demo.onnx]

A grey PNG of ``size x size`` (smooth texture plus a few bright spots) is generated once into a
temporary folder. ``frame_scale`` other than the card's is applied to a copy of the model card.
Prints one JSON line per case: size, frame_scale, peak RSS (MB), seconds, map shape.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "resources" / "models" / "demo.onnx"


def make_png(path: Path, size: int) -> Path:
    """A ``size x size`` grey PNG: low-frequency texture and a few bright discs (defects)."""
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    small = rng.normal(0.3, 0.03, (max(2, size // 64), max(2, size // 64))).astype(np.float32)
    img = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
    for _ in range(8):
        y, x = (int(v) for v in rng.integers(50, size - 50, size=2))
        cv2.circle(img, (x, y), int(rng.integers(8, 40)), 0.85, -1)
    cv2.imwrite(str(path), np.clip(img * 255, 0, 255).astype(np.uint8))
    return path


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), in MB.

    Not ``ru_maxrss``: Linux carries that across fork + exec, so a child would report its
    parent's peak (here: the parent that generated the 9000 x 9000 test image).
    """
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def run_case(png: Path, model: Path, scale: float | None) -> dict[str, object]:
    """In this process: read ``png`` the station's way, predict its map, report RSS and time."""
    import dataclasses

    from app.station.sources.imageio import read_image
    from engines import load_engine
    from engines.card import load_card_for
    from engines.predict import predict_maps

    card = load_card_for(model)
    if scale is not None:
        card = dataclasses.replace(card, frame_scale=scale)
    engine = load_engine(model, card=card)
    base = peak_rss_mb()
    t0 = time.perf_counter()
    image = read_image(png, frame_scale=card.frame_scale) if _reduced_read() else read_image(png)
    (prob,) = predict_maps(engine, [image])
    seconds = time.perf_counter() - t0
    peak = peak_rss_mb()
    return {
        "decoded_shape": list(image.shape),
        "frame_scale": card.frame_scale,
        "peak_rss_mb": round(peak, 1),
        "rss_before_frame_mb": round(base, 1),
        "seconds": round(seconds, 2),
        "map_shape": list(prob.shape),
        "map_dtype": str(prob.dtype),
        "max_prob": float(prob.max()),
    }


def _reduced_read() -> bool:
    import inspect

    from app.station.sources.imageio import read_image

    return "frame_scale" in inspect.signature(read_image).parameters


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=9000)
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.5])
    ap.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    ap.add_argument("--case", nargs=2, metavar=("PNG", "SCALE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.case:
        png, scale = args.case
        print(json.dumps(run_case(Path(png), args.model, float(scale))), flush=True)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        png = make_png(Path(tmp) / f"frame{args.size}.png", args.size)
        for scale in args.scales:
            cmd = [sys.executable, "-m", "bench.bench_memory", "--model", str(args.model)]
            out = subprocess.run(
                [*cmd, "--case", str(png), str(scale)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
            if out.returncode:
                print(out.stderr, file=sys.stderr)
                return out.returncode
            print(out.stdout.strip(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
