"""``python -m training train|evaluate|export|quantize`` (the shape other tools rely on).

Every command accepts ``--progress json``: one JSON object per line on stdout, the last one
``{"event": "done", ...}`` or ``{"event": "error", "message": ...}`` (then the exit code is 1).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from training.progress import Progress


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--progress", choices=("human", "json", "none"), default="human")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a U-Net on a dataset folder")
    t.add_argument(
        "--data", required=True, help="DAGM ClassN[/Train|Test] or images(+masks) folder"
    )
    t.add_argument("--masks", help="folder holding the masks (default: found beside the images)")
    t.add_argument("--out", required=True, help="run directory (created)")
    t.add_argument("--epochs", type=int, default=60)
    t.add_argument("--image-size", type=int, default=256, help="square network input (crop) side")
    t.add_argument("--crop-size", type=int, default=0, help="training crop side (0 = image size)")
    t.add_argument("--base-filters", type=int, default=16, help="TinyUNet width: 8, 16 or 32")
    t.add_argument("--architecture", choices=("tinyunet", "unet_industrial"), default="tinyunet")
    t.add_argument("--frame-scale", type=float, default=1.0, help="resize frames first (DAGM: 0.5)")
    t.add_argument("--channels", type=int, choices=(0, 1, 3), default=0, help="0 = from the data")
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--steps-per-epoch", type=int, default=40)
    t.add_argument("--learning-rate", type=float, default=1e-3)
    t.add_argument("--lr-decay", type=float, default=0.5)
    t.add_argument("--lr-decay-epochs", type=int, default=20)
    t.add_argument("--optimizer", choices=("adam", "rmsprop"), default="adam")
    t.add_argument("--weight-decay", type=float, default=1e-5)
    t.add_argument("--clipnorm", type=float, default=1.0, help="global gradient-norm clip")
    t.add_argument("--defect-share", type=float, default=0.4, help="defective images per batch")
    t.add_argument("--patience", type=int, default=15, help="early stop after N epochs w/o gain")
    t.add_argument("--max-minutes", type=float, default=0.0, help="time budget (0 = none)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--amp", action="store_true", help="mixed precision (float16 compute)")
    t.add_argument(
        "--xla",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="XLA-compile the train step (default on: 1.6-1.75x faster on CPU here)",
    )
    t.add_argument("--resume", action="store_true", help="continue from RUN/checkpoints/last.keras")
    t.add_argument("--init-from", help="start from the weights of this .keras checkpoint")
    t.add_argument(
        "--export",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="export RUN/model.onnx and evaluate it when training ends",
    )
    _common(t)

    e = sub.add_parser("evaluate", help="measure a model (ONNX file or run dir) on a dataset")
    e.add_argument("--model", required=True, help="MODEL.onnx (card beside it) or a run dir")
    e.add_argument("--data", required=True)
    e.add_argument("--masks")
    e.add_argument("--split", choices=("test", "val", "train", "all"), default="test")
    e.add_argument(
        "--split-file", help="split.json to use instead of the model's own (to compare models)"
    )
    e.add_argument("--out", help="report folder (default: RUN/report, or a temp folder for a file)")
    e.add_argument("--target-precision", type=float, default=1.0)
    e.add_argument("--examples", type=int, default=4, help="overlay PNGs per TP/FP/FN kind")
    _common(e)

    x = sub.add_parser("export", help="export a run's best checkpoint to a verified ONNX + card")
    x.add_argument("--run", required=True)
    x.add_argument("--out", required=True, help="MODEL.onnx (MODEL.json written beside it)")
    x.add_argument("--name", help="model name in the card (default: file stem)")
    x.add_argument("--opset", type=int, default=17)
    x.add_argument("--tolerance", type=float, default=1e-4)
    _common(x)

    q = sub.add_parser("quantize", help="INT8 (QDQ, calibrated) or FP16 variant of an ONNX model")
    q.add_argument("--model", required=True)
    q.add_argument("--precision", choices=("int8", "fp16"), required=True)
    q.add_argument("--calib", required=True, help="dataset folder (training split images used)")
    q.add_argument("--masks")
    q.add_argument("--out", required=True)
    q.add_argument("--calib-images", type=int, default=64)
    _common(q)

    g = sub.add_parser("synth", help="write a synthetic DAGM-like dataset (no TensorFlow)")
    g.add_argument("--out", required=True)
    g.add_argument("--n", type=int, default=200)
    g.add_argument("--size", default="256x256", help="HxW, e.g. 320x384")
    g.add_argument("--defect-ratio", type=float, default=0.25)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--layout", choices=("folder", "flat", "dagm"), default="folder")
    _common(g)
    return parser


def _train(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    from training.train import TrainConfig, train

    cfg = TrainConfig(
        data=args.data,
        masks=args.masks,
        out=args.out,
        epochs=args.epochs,
        image_size=args.image_size,
        crop_size=args.crop_size,
        base_filters=args.base_filters,
        architecture=args.architecture,
        frame_scale=args.frame_scale,
        channels=args.channels,
        batch_size=args.batch_size,
        steps_per_epoch=args.steps_per_epoch,
        learning_rate=args.learning_rate,
        lr_decay=args.lr_decay,
        lr_decay_epochs=args.lr_decay_epochs,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        clipnorm=args.clipnorm,
        defect_share=args.defect_share,
        patience=args.patience,
        max_minutes=args.max_minutes,
        seed=args.seed,
        amp=args.amp,
        xla=args.xla,
        resume=args.resume,
        init_from=args.init_from,
        export=args.export,
        progress=args.progress,
    )
    summary = train(cfg, progress)
    model = summary.get("model", summary["checkpoint"])
    return {"model": model, "report": summary.get("report"), **summary}


def _evaluate(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    from training.evaluate import evaluate_cli

    return evaluate_cli(args, progress)


def _export(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    from training.export import export_run

    return export_run(
        args.run,
        args.out,
        name=args.name,
        opset=args.opset,
        tolerance=args.tolerance,
        progress=progress,
    )


def _quantize(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    from training.quantize import quantize_cli

    return quantize_cli(args, progress)


def _synth(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    from training.data.synthetic import generate

    try:
        h, w = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size {args.size!r} is not HxW (e.g. 320x384)") from None
    paths = generate(
        args.out, args.n, size=(h, w), defect_ratio=args.defect_ratio, seed=args.seed,
        layout=args.layout,
    )  # fmt: skip
    return {"out": args.out, "images": len(paths)}


COMMANDS = {
    "train": _train,
    "evaluate": _evaluate,
    "export": _export,
    "quantize": _quantize,
    "synth": _synth,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    progress = Progress(args.progress)
    try:
        result = COMMANDS[args.command](args, progress)
    except KeyboardInterrupt:
        progress.emit("error", message="interrupted")
        return 130
    except Exception as exc:  # every failure ends as one parseable line and a non-zero exit
        if args.progress != "json":
            traceback.print_exc(file=sys.stderr)
        progress.emit("error", message=f"{type(exc).__name__}: {exc}")
        return 1
    progress.emit("done", **result)
    return 0
