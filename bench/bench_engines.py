"""ONNX Runtime on this CPU: batch size, thread count and precision variants, as ratios.

Every number is relative to the FP32, batch-1 run at the default thread count measured in the
SAME run (absolute milliseconds on a shared 2-core machine drift from run to run; ratios hold).
FP16 / INT8 variants are picked up when they sit beside the model (``demo-fp16.onnx``,
``demo-int8.onnx``, each with its card). Without a model, a small generated conv net is used.

    python -m bench.bench_engines [--model resources/models/demo.onnx] [--seconds 1.5]

Writes a markdown table (with the command line that produced it) to ``bench/results/engines.md``.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engines import load_engine  # noqa: E402
from engines.card import ModelCard, card_path_for  # noqa: E402
from engines.options import physical_cores  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = ROOT / "resources" / "models" / "demo.onnx"
DEFAULT_OUT = ROOT / "bench" / "results" / "engines.md"
VARIANT_SUFFIXES = ("fp16", "int8")


@dataclass(frozen=True)
class Result:
    variant: str
    threads: int
    batch: int
    ms_per_batch: float
    runs: int

    @property
    def ms_per_tile(self) -> float:
        return self.ms_per_batch / self.batch


def generated_model(folder: Path, size: int = 128, width: int = 8) -> Path:
    """A small NHWC conv net (3 x conv3x3+ReLU, conv1x1+sigmoid) with its card."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", size, size, 1])
    y = helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", size, size, 1])
    nodes = [helper.make_node("Transpose", ["image"], ["t0"], perm=[0, 3, 1, 2])]
    inits, prev, cin = [], "t0", 1
    for i in range(3):
        w = (rng.standard_normal((width, cin, 3, 3)) * np.sqrt(2 / (9 * cin))).astype(np.float32)
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes += [
            helper.make_node("Conv", [prev, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
        ]
        prev, cin = f"r{i}", width
    inits.append(
        numpy_helper.from_array(rng.standard_normal((1, width, 1, 1)).astype(np.float32), "wo")
    )
    nodes += [
        helper.make_node("Conv", [prev, "wo"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["sig"]),
        helper.make_node("Transpose", ["sig"], ["probability"], perm=[0, 2, 3, 1]),
    ]
    graph = helper.make_graph(nodes, "bench", [x], [y], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "generated.onnx"
    onnx.save(model, str(path))
    ModelCard(name="generated", input_height=size, input_width=size).save(card_path_for(path))
    return path


def variants(model: Path) -> dict[str, Path]:
    """``{"fp32": model, "fp16": model-fp16.onnx, "int8": ...}`` for the files that exist."""
    found = {"fp32": model}
    for suffix in VARIANT_SUFFIXES:
        path = model.with_name(f"{model.stem}-{suffix}.onnx")
        if path.is_file() and card_path_for(path).is_file():
            found[suffix] = path
    return found


def time_configs(
    configs: list[tuple[str, Path, int, int]], seconds: float, rounds: int, min_runs: int
) -> list[Result]:
    """Median ms per batch of each ``(variant, path, threads, batch)``, measured interleaved.

    All sessions are opened first; then ``rounds`` passes each give every configuration a slice
    of ``seconds / rounds`` (so ``seconds`` per configuration in all). On a machine shared with other jobs, load comes and goes; spreading
    each row's runs over the whole benchmark exposes every row to the same mix, which is what
    makes the ratios comparable.
    """
    sessions = []
    for _, path, threads, batch in configs:
        engine = load_engine(path, threads=threads)
        rng = np.random.default_rng(batch)
        tiles = rng.random((batch, *engine.card.input_shape), dtype=np.float32)
        engine.infer(tiles)  # warm-up: the first run allocates the arena and picks kernels
        sessions.append((engine, tiles))
    times: list[list[float]] = [[] for _ in configs]
    slice_s = seconds / rounds
    try:
        for _ in range(rounds):
            for (engine, tiles), bucket in zip(sessions, times, strict=True):
                deadline = time.perf_counter() + slice_s
                runs = 0
                while runs < max(1, min_runs // rounds) or time.perf_counter() < deadline:
                    start = time.perf_counter()
                    engine.infer(tiles)
                    bucket.append((time.perf_counter() - start) * 1000.0)
                    runs += 1
    finally:
        for engine, _ in sessions:
            engine.close()
    return [
        Result(variant, threads, batch, statistics.median(bucket), len(bucket))
        for (variant, _, threads, batch), bucket in zip(configs, times, strict=True)
    ]


def agreement(paths: dict[str, Path], n: int = 4) -> dict[str, float]:
    """Max |Δ| of each variant's output against FP32 on the same random tiles."""
    ref_engine = load_engine(paths["fp32"])
    tiles = np.random.default_rng(7).random((n, *ref_engine.card.input_shape), dtype=np.float32)
    ref = ref_engine.infer(tiles)
    ref_engine.close()
    out = {}
    for name, path in paths.items():
        engine = load_engine(path)
        out[name] = float(np.max(np.abs(engine.infer(tiles) - ref)))
        engine.close()
    return out


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def render(
    results: list[Result],
    diffs: dict[str, float],
    baseline: Result,
    model: Path,
    card: ModelCard,
    command: str,
) -> str:
    import onnxruntime as ort

    base_tile = baseline.ms_per_tile
    lines = [
        "# Engine benchmark: ONNX Runtime on this CPU",
        "",
        f"Command: `{command}`  ",
        f"Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; CPU: {cpu_name()} "
        f"({physical_cores()} physical cores available); onnxruntime {ort.__version__}; "
        f"Python {platform.python_version()}; load average at the end "
        f"{os.getloadavg()[0]:.1f} (other jobs share these cores, hence ratios)  ",
        f"Model: `{model}` ({card.input_height}x{card.input_width}x{card.channels} input tiles)",
        "",
        f"Baseline: fp32, batch 1, {baseline.threads} threads = {baseline.ms_per_batch:.2f} ms "
        "per tile. *Speed* = baseline ms per tile / this row's ms per tile (higher is faster).",
        "",
        "| variant | threads | batch | ms / batch (median) | ms / tile | tiles / s | speed | runs |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r.variant} | {r.threads} | {r.batch} | {r.ms_per_batch:.2f} | "
            f"{r.ms_per_tile:.2f} | {1000.0 / r.ms_per_tile:.1f} | "
            f"{base_tile / r.ms_per_tile:.2f}x | {r.runs} |"
        )
    lines += ["", "| variant | max abs diff vs fp32 (4 random tiles) |", "|---|---:|"]
    lines += [f"| {name} | {diff:.2e} |" for name, diff in diffs.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help=f"default {DEFAULT_MODEL}")
    parser.add_argument("--batches", default="1,4,8")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--seconds", type=float, default=1.5, help="time budget per row")
    parser.add_argument("--min-runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved passes over all rows")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--note", default="", help="a line for the report (how the model was made)")
    args = parser.parse_args(argv)
    command = "python -m bench.bench_engines " + shlex.join(sys.argv[1:] if argv is None else argv)

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or (DEFAULT_MODEL if DEFAULT_MODEL.is_file() else None)
        if model is None:
            print(f"{DEFAULT_MODEL} not found; benchmarking a generated conv net", file=sys.stderr)
            model = generated_model(Path(tmp))
        paths = variants(Path(model))
        batches = [int(b) for b in args.batches.split(",")]
        threads = [int(t) for t in args.threads.split(",")]
        default_threads = physical_cores()
        configs = [
            (name, path, t, b) for name, path in paths.items() for t in threads for b in batches
        ]
        if ("fp32", paths["fp32"], default_threads, 1) not in configs:
            configs.insert(0, ("fp32", paths["fp32"], default_threads, 1))
        timed = time_configs(configs, args.seconds, args.rounds, args.min_runs)
        baseline = next(
            r for r in timed if (r.variant, r.threads, r.batch) == ("fp32", default_threads, 1)
        )
        results = [r for r in timed if r.threads in threads and r.batch in batches]
        diffs = agreement(paths)
        card = ModelCard.load(card_path_for(paths["fp32"]))
        shown = Path(model) if args.model or model == DEFAULT_MODEL else Path("<generated>")
        if shown.is_absolute() and shown.is_relative_to(ROOT):
            shown = shown.relative_to(ROOT)
        report = render(results, diffs, baseline, shown, card, command)
        if args.note:
            report = report.replace("\n\nBaseline:", f"  \nNote: {args.note}\n\nBaseline:", 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
