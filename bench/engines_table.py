"""The speed / accuracy table a user picks a model from: every variant x backend, as ratios to TF.

``python -m bench engines [--backend tensorflow,onnxruntime,opencv,tensorrt] [--seconds 3]``

*ms per frame* is the time of :func:`engines.predict_maps` on a 512x512 8-bit frame (what a DAGM
frame is): scaling to the model's input, tiling, inference and stitching back to a full-resolution
probability map — the same call the station makes per frame. Batch 8 hands 8 frames to one call
(the station does that when frames wait). Rows are timed interleaved over several rounds, so the
load of a shared machine hits every row alike; *vs TF* is the TensorFlow baseline's ms per frame
(TinyUNet-16 at 512x512, batch 1) over the row's, measured in the same run.

Accuracy is measured on the DAGM Class1 validation split (``dagm-class1.split.json``) at each
model card's own operating point (threshold, minimum defect area): recall, false alarms and Dice
over the defective images. Rows whose weights are random or not trained on DAGM are not scored.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench._machine import DAGM_DIR, MODELS, LoadSampler, Machine, command_line, write_results
from bench._variants import (
    BACKENDS,
    RandomNets,
    Variant,
    dagm_variants,
    random_variants,
    tensorflow_unavailable,
)
from engines import Engine, predict_maps

RANDOM_SHAPES = (
    (16, 512, 1.0),
    (16, 256, 0.5),
    (8, 256, 0.5),
    (16, 128, 0.25),
    (8, 128, 0.25),
)  # (filters, input, frame_scale); fmt: skip


def frames_for(size: int, n: int) -> list[np.ndarray]:
    """``n`` textured 8-bit frames (DAGM-like noise; content does not change the speed)."""
    rng = np.random.default_rng(size)
    base = rng.normal(128, 20, (size, size)).clip(0, 255).astype(np.uint8)
    return [np.roll(base, i * 7, axis=1) for i in range(n)]


def time_rows(
    engines: list[tuple[Variant, Engine]],
    batches: list[int],
    frame_size: int,
    seconds: float,
    rounds: int,
) -> dict[tuple[str, int], list[float]]:
    """ms per frame samples of every (variant, batch), measured in interleaved rounds."""
    frames = {b: frames_for(frame_size, b) for b in batches}
    for _, engine in engines:  # warm-up: arenas, kernel choice, tf.function tracing
        for b in batches:
            predict_maps(engine, frames[b], max_batch=b)
    samples: dict[tuple[str, int], list[float]] = {
        (v.name, b): [] for v, _ in engines for b in batches
    }
    slice_s = seconds / rounds
    for _ in range(rounds):
        for variant, engine in engines:
            for b in batches:
                deadline = time.perf_counter() + slice_s
                bucket = samples[(variant.name, b)]
                first = True
                while first or time.perf_counter() < deadline:
                    t0 = time.perf_counter()
                    predict_maps(engine, frames[b], max_batch=b)
                    bucket.append((time.perf_counter() - t0) * 1000.0 / b)
                    first = False
    return samples


def accuracy(engine: Engine, split_file: Path, data: Path) -> dict[str, Any]:
    """Recall, false alarms and Dice of ``engine`` on the validation split, at its card's point."""
    from engines import scoring
    from training.data import find_samples, load_split
    from training.data.loaders import select
    from training.evaluate import pixel_metrics, predict_samples
    from training.progress import Progress

    split = load_split(split_file)
    samples = select(find_samples(data), split.val)
    probs, masks, labels, ms = predict_samples(engine, samples, Progress("none"), "val")
    card = engine.card
    scores = scoring.image_scores(probs, card.threshold)
    row = scoring.confusion_row(card.threshold, scores >= max(1, card.min_area_px), labels)
    pixel = pixel_metrics(probs, masks, card.threshold)
    return {
        "split": "val",
        "images": len(samples),
        "defective": int(labels.sum()),
        "threshold": card.threshold,
        "min_area_px": card.min_area_px,
        "tp": row.tp,
        "fp": row.fp,
        "fn": row.fn,
        "tn": row.tn,
        "recall": row.recall,
        "dice": pixel["dice"],
        "dice_unet_industrial": pixel["dice_unet_industrial"],
        "ms_per_frame_eval": ms,
    }


def _fmt_ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def render(
    machine: Machine, rows: list[dict[str, Any]], frame_size: int, base: float | None
) -> str:
    lines = machine.header("Engines: speed and accuracy of every model variant and backend")
    lines += [
        f"*ms / frame*: `engines.predict_maps` on a {frame_size}x{frame_size} 8-bit frame "
        "(scale, tile, infer, stitch to a full-resolution map), median over interleaved rounds "
        "(*best*: the fastest single call, the least disturbed by other jobs). "
        "*vs TF* = the TensorFlow baseline's batch-1 ms per frame / this row's, same run"
        + (f" (baseline {base:.1f} ms per frame)." if base else " (no TF baseline in this run)."),
        "Accuracy: DAGM Class1 validation split at the card's operating point; *FA* = false "
        "alarms (defect-free images judged NG); Dice over the defective images.",
        "",
        "| variant | backend | filters | input | scale | precision | weights | batch | "
        "ms / frame | best ms | frames / s | vs TF | recall | FA | Dice |",
        "|---|---|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    skipped = []
    for r in rows:
        if r.get("skip"):
            skipped.append(f"- {r['name']} ({r['backend']}): {r['skip']}")
            continue
        acc = r.get("accuracy") or {}
        acc_cells = (
            [f"{acc['recall']:.3f}", f"{acc['fp']}", f"{acc['dice']:.3f}"]
            if "recall" in acc
            else [acc.get("note", "—"), "", ""]
        )
        for b, t in r["timing"].items():
            lines.append(
                f"| {r['name']} | {r['backend']} | {r['filters']} | {r['input']} | "
                f"{r['frame_scale']:g} | {r['precision']} | {r['weights']} | {b} | "
                f"{t['ms_per_frame']:.2f} | {t['best_ms']:.2f} | {t['fps']:.1f} | {_fmt_ratio(t['vs_tf'])} | "
                + " | ".join(acc_cells)
                + " |"
            )
    if skipped:
        lines += ["", "Skipped here:", *skipped]
    return "\n".join(lines) + "\n"


def run(args: argparse.Namespace, machine: Machine) -> dict[str, Any]:
    backends = {b.strip() for b in args.backend.split(",") if b.strip()}
    unknown = backends - set(BACKENDS)
    if unknown:
        raise SystemExit(f"unknown backend(s) {sorted(unknown)}; choose from {', '.join(BACKENDS)}")
    wants_tf = "tensorflow" in backends or (args.random and "onnxruntime" in backends)
    tf_reason = tensorflow_unavailable() if wants_tf else None
    nets = RandomNets(args.threads) if wants_tf and tf_reason is None else None
    shapes = list(RANDOM_SHAPES) if args.random else []
    trt_dir = Path(tempfile.mkdtemp(prefix="bench-trt-"))
    variants = random_variants(backends, nets, shapes, args.threads, tf_reason)  # type: ignore[arg-type]
    variants += dagm_variants(backends, args.threads, trt_dir)
    if args.only:
        variants = [v for v in variants if any(s in v.name for s in args.only.split(","))]
    opened: list[tuple[Variant, Engine]] = []
    for v in variants:
        if v.skip or v.opener is None:
            v.skip = v.skip or "not available"
            continue
        try:
            opened.append((v, v.opener()))
        except Exception as exc:  # a backend that cannot read a model is a row with a reason
            v.skip = f"could not open: {str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
        print(f"opened {v.name}" + (f" — {v.skip}" if v.skip else ""), file=sys.stderr)
    batches = [int(b) for b in args.batches.split(",")]
    samples = time_rows(opened, batches, args.frame_size, args.seconds, args.rounds)
    base_key = next(((v.name, 1) for v, _ in opened if v.backend == "tensorflow"), None)
    base = statistics.median(samples[base_key]) if base_key and base_key in samples else None
    split_file = MODELS / "dagm-class1.split.json"
    data_ok = Path(args.data).is_dir() and split_file.is_file()
    rows: list[dict[str, Any]] = []
    for v in variants:
        row: dict[str, Any] = {
            k: getattr(v, k) for k in ("name", "backend", "model", "filters", "input", "frame_scale", "precision", "weights", "skip")
        }  # fmt: skip
        engine = next((e for vv, e in opened if vv is v), None)
        if engine is not None:
            row["timing"] = {}
            for b in batches:
                ms = statistics.median(samples[(v.name, b)])
                row["timing"][b] = {
                    "ms_per_frame": ms, "fps": 1000.0 / ms, "runs": len(samples[(v.name, b)]),
                    "best_ms": min(samples[(v.name, b)]),
                    "vs_tf": base / ms if base else None,
                }  # fmt: skip
            if not args.accuracy:
                row["accuracy"] = {"note": "not measured (--no-accuracy)"}
            elif not v.scored:
                row["accuracy"] = {"note": f"n/a ({v.weights} weights)"}
            elif not data_ok:
                row["accuracy"] = {"note": f"skipped: {args.data} or {split_file.name} absent"}
            else:
                print(f"accuracy of {v.name} on the validation split", file=sys.stderr)
                row["accuracy"] = accuracy(engine, split_file, Path(args.data))
            engine.close()
        rows.append(row)
    return {"frame_size": args.frame_size, "batches": batches, "baseline_ms": base, "rows": rows}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend", default=",".join(BACKENDS), help="comma list of " + ", ".join(BACKENDS)
    )
    parser.add_argument("--only", default="", help="comma list of substrings of variant names")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--frame-size", type=int, default=512)
    parser.add_argument("--seconds", type=float, default=3.0, help="time budget per row")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument(
        "--threads", type=int, default=None, help="intra-op threads (default: cores)"
    )
    parser.add_argument("--random", action=argparse.BooleanOptionalAction, default=True,
                        help="also time random-weight TinyUNets exported to ONNX (needs TF)")  # fmt: skip
    parser.add_argument("--accuracy", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--data", default=str(DAGM_DIR), help="DAGM Class1 folder")
    parser.add_argument("--out-dir", type=Path, default=None)
    parser.add_argument("--stem", default="engines_table")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench engines", description=__doc__.splitlines()[0]
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    machine = Machine(command_line("engines", argv))
    sampler = LoadSampler()
    try:
        data = run(args, machine)
    finally:
        machine.load = sampler.stop()
    report = render(machine, data["rows"], args.frame_size, data["baseline_ms"])
    path = write_results(args.stem, report, {"machine": machine.as_dict(), **data}, args.out_dir)
    print(report)
    print(f"wrote {path}", file=sys.stderr)
    return 0
