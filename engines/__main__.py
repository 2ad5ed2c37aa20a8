"""``python -m engines build --onnx MODEL.onnx --out MODEL.engine [...]`` and
``python -m engines golden --model MODEL.onnx --input IMAGE [--tolerance T]``.

build exit codes: 0 built and verified; 1 build or verification failed; 2 TensorRT, cuda-python
or a CUDA GPU is absent on this machine (or the command line is wrong), with the reason on stderr.
golden exit codes: 0 written and re-checked; 1 the model, image or tolerance is unusable.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from engines.build import DEFAULT_TOLERANCE, BuildError, build_engine
from engines.protocol import BackendUnavailable, ModelLoadError
from engines.selftest import DEFAULT_TOLERANCE as GOLDEN_TOLERANCE

EXIT_OK, EXIT_FAILED, EXIT_UNAVAILABLE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m engines", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser(
        "build",
        help="build a TensorRT engine from an ONNX model and check it against ONNX Runtime",
    )
    build.add_argument("--onnx", required=True, help="ONNX model (its card MODEL.json beside it)")
    build.add_argument("--out", required=True, help="engine file to write (.engine or .plan)")
    build.add_argument("--min-batch", type=int, default=1)
    build.add_argument("--opt-batch", type=int, default=4)
    build.add_argument("--max-batch", type=int, default=16)
    build.add_argument("--timing-cache", help="timing cache file to load (if present) and save")
    build.add_argument("--samples", help="folder of images for the agreement check")
    build.add_argument("--workspace-mb", type=int, help="builder workspace limit in MiB")
    build.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help=f"largest accepted max |Δ| against ONNX Runtime (default {DEFAULT_TOLERANCE})",
    )
    golden = sub.add_parser(
        "golden",
        help="(re)write the golden self-test of a model's card from the current engine output",
    )
    golden.add_argument("--model", required=True, help="model file (its card MODEL.json beside it)")
    golden.add_argument(
        "--input",
        required=True,
        help="a frame showing a defect; the tile the model sees most defect in is stored",
    )
    golden.add_argument(
        "--tolerance",
        type=float,
        help="accepted fingerprint difference (default: by precision, "
        + ", ".join(f"{k} {v:g}" for k, v in GOLDEN_TOLERANCE.items())
        + ")",
    )
    return parser


def _golden(args: argparse.Namespace) -> int:
    from engines.selftest import read_frame, record_golden

    try:
        summary = record_golden(args.model, [read_frame(args.input)], tolerance=args.tolerance)
    except (ModelLoadError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(summary))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    args = _parser().parse_args(argv)
    if args.command == "golden":
        return _golden(args)
    try:
        result = build_engine(
            args.onnx,
            args.out,
            min_batch=args.min_batch,
            opt_batch=args.opt_batch,
            max_batch=args.max_batch,
            timing_cache=args.timing_cache,
            samples=args.samples,
            workspace_mb=args.workspace_mb,
            tolerance=args.tolerance,
        )
    except BackendUnavailable as exc:
        print(f"error: cannot build a TensorRT engine here: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except BuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    summary = {
        "engine": str(result.engine_path),
        "card": str(result.card_path),
        "max_abs_diff": result.max_abs_diff,
    }
    print(json.dumps(summary))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
