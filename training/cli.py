"""``python -m training data|train|evaluate|export|quantize|synth`` (the shape other tools rely on).

Every command but ``data`` accepts ``--progress json``: one JSON object per line on stdout, the
last one ``{"event": "done", ...}`` or ``{"event": "error", "message": ...}``. ``data`` prints
what a dataset folder holds (``--json``: one JSON object).

Exit codes: 0 done; 2 a problem the user can act on (bad arguments, a missing file, bad data, a
model or run that cannot be used): one line on stderr naming the file and the fix, no traceback
(``--debug`` shows it); 1 an unexpected failure (with its traceback); 130 interrupted.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from training.data.discovery import LAYOUTS
from training.data.masks import DatasetError
from training.data.synthetic import LAYOUTS as SYNTH_LAYOUTS
from training.export_verify import DEFAULT_MEAN_TOLERANCE, DEFAULT_TOLERANCE
from training.progress import Progress, ProgressMode


class UsageError(ValueError):
    """A bad argument value found after parsing (the message says which and what to give)."""


class _Parser(argparse.ArgumentParser):
    """Argument errors as one line (with where to get help), exit code 2, no usage dump."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _common(p: argparse.ArgumentParser, progress: bool = True) -> None:
    if progress:
        p.add_argument("--progress", choices=("human", "json", "none"), default="human")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    d = sub.add_parser("data", help="show what a dataset folder holds (before training)")
    d.add_argument("path", help="dataset folder (any layout: see docs/training.md)")
    d.add_argument("--masks", help="folder holding the masks (default: found in the data)")
    d.add_argument("--layout", choices=("auto", *LAYOUTS), default="auto")
    d.add_argument("--json", action="store_true", help="one JSON object on stdout (for the GUI)")
    d.add_argument(
        "--verify",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="decode every image to find damaged files (default on; off = headers only)",
    )
    _common(d, progress=False)

    t = sub.add_parser("train", help="train a U-Net on a dataset folder")
    t.add_argument(
        "--data", required=True, help="DAGM ClassN[/Train|Test] or images(+masks) folder"
    )
    t.add_argument("--masks", help="folder holding the masks (default: found beside the images)")
    t.add_argument("--layout", choices=("auto", *LAYOUTS), default="auto", help="dataset layout")
    t.add_argument("--out", required=True, help="run directory (created)")
    t.add_argument("--epochs", type=int, default=None, help="default: from the time budget")
    t.add_argument(
        "--image-size",
        type=int,
        default=None,
        help="network input (tile) side; default: from the data",
    )
    t.add_argument(
        "--crop-size",
        type=int,
        default=None,
        help="training crop side (0 = tile; default: from the data)",
    )
    t.add_argument("--base-filters", type=int, default=16, help="TinyUNet width: 8, 16 or 32")
    t.add_argument("--architecture", choices=("tinyunet", "unet_industrial"), default="tinyunet")
    t.add_argument(
        "--frame-scale",
        type=float,
        default=None,
        help="resize frames first (default: from the defect sizes)",
    )
    t.add_argument("--channels", type=int, choices=(0, 1, 3), default=0, help="0 = from the data")
    t.add_argument("--batch-size", type=int, default=None, help="default: from the crop size")
    t.add_argument(
        "--steps-per-epoch", type=int, default=None, help="default: from the validation cost"
    )
    t.add_argument("--learning-rate", type=float, default=1e-3)
    t.add_argument("--lr-decay", type=float, default=0.5)
    t.add_argument("--lr-decay-epochs", type=int, default=20)
    t.add_argument("--optimizer", choices=("adam", "rmsprop"), default="adam")
    t.add_argument("--weight-decay", type=float, default=1e-5)
    t.add_argument("--clipnorm", type=float, default=1.0, help="global gradient-norm clip")
    t.add_argument(
        "--defect-share",
        type=float,
        default=None,
        help="defective share of a batch (default: from the data)",
    )
    t.add_argument("--patience", type=int, default=15, help="early stop after N epochs w/o gain")
    t.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="time budget (0 = none; default 40 without --epochs)",
    )
    t.add_argument("--seed", type=int, default=0, help="split (unless --split) and weights seed")
    t.add_argument(
        "--split",
        dest="split_file",
        help="train on this split.json (e.g. MODEL.split.json) instead of a seeded new one",
    )
    t.add_argument("--amp", action="store_true", help="mixed precision (float16 compute)")
    t.add_argument(
        "--xla",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="XLA-compile the train step (default on: 1.6-1.75x faster on CPU here)",
    )
    t.add_argument(
        "--classes",
        default="auto",
        help="defect classes: auto (from the data), 1 (one 'defect' class), N, or names a,b",
    )
    t.add_argument(
        "--class-head",
        choices=("softmax", "sigmoid"),
        default="softmax",
        help="multi-class output: softmax over background + K (default) or K sigmoids",
    )
    t.add_argument("--resume", action="store_true", help="continue from RUN/checkpoints/last.keras")
    t.add_argument("--init-from", help="start from the weights of this .keras checkpoint")
    t.add_argument("--teacher", help="one-class MODEL.onnx whose maps are mixed into the targets")
    t.add_argument("--teacher-weight", type=float, default=0.5, help="teacher share of a target")
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
    e.add_argument("--layout", choices=("auto", *LAYOUTS), default="auto", help="dataset layout")
    e.add_argument("--split", choices=("test", "val", "train", "all"), default="test")
    e.add_argument(
        "--split-file", help="split.json to use instead of the model's own (to compare models)"
    )
    e.add_argument("--out", help="report folder (default: RUN/report, or a temp folder for a file)")
    e.add_argument(
        "--max-false-alarm-rate",
        type=float,
        default=0.02,
        help="where no threshold separates the validation images: the best recall at this "
        "share of defect-free images flagged (default 0.02)",
    )
    e.add_argument("--examples", type=int, default=4, help="overlay PNGs per TP/FP/FN kind")
    _common(e)

    x = sub.add_parser("export", help="export a run's best checkpoint to a verified ONNX + card")
    x.add_argument("--run", required=True)
    x.add_argument("--out", required=True, help="MODEL.onnx (MODEL.json written beside it)")
    x.add_argument("--name", help="model name in the card (default: file stem)")
    x.add_argument("--opset", type=int, default=17)
    x.add_argument(
        "--tolerance",
        type=float,
        default=DEFAULT_TOLERANCE,
        help=f"largest max |Δ| per pixel against Keras (default {DEFAULT_TOLERANCE:g})",
    )
    x.add_argument(
        "--mean-tolerance",
        type=float,
        default=DEFAULT_MEAN_TOLERANCE,
        help=f"largest mean |Δ| per pixel (default {DEFAULT_MEAN_TOLERANCE:g})",
    )
    x.add_argument(
        "--force",
        action="store_true",
        help="export even when verification fails (the card records the override and why)",
    )
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
    g.add_argument("--layout", choices=SYNTH_LAYOUTS, default="folder")
    g.add_argument("--class-masks", action="store_true", help="class-index masks (id per kind)")
    _common(g)
    return parser


def _train(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    from training.autoconfig import DEFAULT_MINUTES, DERIVABLE
    from training.train import TrainConfig, train

    # Settings left out are derived from the data (training.autoconfig); the rest as given.
    given = {name: getattr(args, name) for name in DERIVABLE if getattr(args, name) is not None}
    budget = args.max_minutes
    if budget is None:
        budget = DEFAULT_MINUTES if args.epochs is None else 0.0
    cfg = TrainConfig(
        data=args.data,
        masks=args.masks,
        layout=args.layout,
        out=args.out,
        base_filters=args.base_filters,
        architecture=args.architecture,
        channels=args.channels,
        learning_rate=args.learning_rate,
        lr_decay=args.lr_decay,
        lr_decay_epochs=args.lr_decay_epochs,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        clipnorm=args.clipnorm,
        patience=args.patience,
        max_minutes=budget,
        seed=args.seed,
        split_file=args.split_file,
        amp=args.amp,
        xla=args.xla,
        resume=args.resume,
        init_from=args.init_from,
        teacher=args.teacher,
        teacher_weight=args.teacher_weight,
        export=args.export,
        progress=args.progress,
        classes=args.classes,
        class_head=args.class_head,
        auto=[name for name in DERIVABLE if name not in given],
        **given,
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
        mean_tolerance=args.mean_tolerance,
        force=args.force,
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
        raise UsageError(f"--size {args.size!r} is not HxW: give e.g. --size 320x384") from None
    if args.n < 1 or h < 8 or w < 8:
        raise UsageError("--n must be >= 1 and --size at least 8x8")
    if not 0.0 <= args.defect_ratio <= 1.0:
        raise UsageError(f"--defect-ratio {args.defect_ratio} must be between 0 and 1")
    paths = generate(
        args.out, args.n, size=(h, w), defect_ratio=args.defect_ratio, seed=args.seed,
        layout=args.layout, class_masks=args.class_masks,
    )  # fmt: skip
    return {"out": args.out, "images": len(paths)}


def _data(args: argparse.Namespace, progress: Progress) -> dict[str, Any]:
    from training.data.discovery import discover
    from training.data.summary_text import format_summary

    if hasattr(sys.stdout, "reconfigure"):  # file names that are not UTF-8 must still print
        sys.stdout.reconfigure(errors="backslashreplace")
    ds = discover(args.path, masks=args.masks, layout=args.layout, verify=args.verify)
    summary = ds.summary()
    if args.json:
        sys.stdout.write(json.dumps({"event": "data", **summary}) + "\n")
    else:
        sys.stdout.write(format_summary(summary) + "\n")
    sys.stdout.flush()
    if not ds.samples:
        raise DatasetError(f"{args.path}: no usable image found (see the problems listed)")
    if ds.blocking:
        raise DatasetError(
            f"{args.path}: {len(ds.blocking)} problem(s) must be fixed before training "
            f"(listed above, first: {ds.blocking[0].file})"
        )
    return summary


# Path arguments checked before any work starts: (command, option, kind, what to give).
_PATHS = (
    ("train", "data", "dir", "the dataset folder"),
    ("train", "masks", "dir", "the folder of masks, or leave --masks out"),
    ("train", "split_file", "file", "a split.json written by training (MODEL.split.json)"),
    ("train", "init_from", "file", "a .keras checkpoint, e.g. RUN/checkpoints/best.keras"),
    ("evaluate", "model", "any", "an .onnx model (card beside it) or a train --out folder"),
    ("evaluate", "data", "dir", "the dataset folder"),
    ("evaluate", "masks", "dir", "the folder of masks, or leave --masks out"),
    ("evaluate", "split_file", "file", "a split.json written by training"),
    ("export", "run", "run", "the --out folder of python -m training train"),
    ("quantize", "model", "file", "an FP32 .onnx model"),
    ("quantize", "calib", "dir", "the dataset folder of the model's training data"),
    ("quantize", "masks", "dir", "the folder of masks, or leave --masks out"),
    ("data", "path", "dir", "the dataset folder"),
    ("data", "masks", "dir", "the folder of masks, or leave --masks out"),
)


def check_paths(args: argparse.Namespace) -> None:
    """Missing input files and folders as one clear line, before TensorFlow is even imported."""
    for command, dest, kind, what in _PATHS:
        value = getattr(args, dest, None) if args.command == command else None
        if value is None:
            continue
        path = Path(value)
        option = "PATH" if dest == "path" else "--" + dest.replace("_", "-")
        if not path.exists():
            noun = {"dir": "folder", "run": "run folder", "file": "file"}.get(
                kind, "file or folder"
            )
            noun = "dataset folder" if dest in ("data", "path", "calib") else noun
            raise FileNotFoundError(f"{path}: {noun} not found (check {option}; give {what})")
        if kind in ("dir", "run") and not path.is_dir():
            raise NotADirectoryError(f"{path}: not a folder (give {option} {what})")
        if kind == "file" and not path.is_file():
            raise IsADirectoryError(f"{path}: not a file (give {option} {what})")
        if kind in ("run", "any") and path.is_dir() and not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"{path}: not a run folder (no config.json; give {option} {what})"
            )


def _user_error(exc: BaseException) -> bool:
    """Errors a user can act on (their message names the file and the fix)."""
    from engines.card import CardError
    from engines.protocol import ModelLoadError
    from training.export import ExportError

    return isinstance(
        exc, (DatasetError, UsageError, OSError, ModelLoadError, CardError, ExportError)
    )


COMMANDS = {
    "data": _data,
    "train": _train,
    "evaluate": _evaluate,
    "export": _export,
    "quantize": _quantize,
    "synth": _synth,
}


_OS_FIXES = {
    errno.ENOENT: "not found (check the path)",
    errno.EACCES: "permission denied (give this user access, or choose another path)",
    errno.EPERM: "permission denied (give this user access, or choose another path)",
    errno.ENOSPC: "disk full (free some space, or choose another --out)",
    errno.EROFS: "read-only file system (choose another --out)",
}


def _message(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.filename is not None:
        what = _OS_FIXES.get(exc.errno or 0, exc.strerror or "cannot be used")
        return f"{exc.filename}: {what}"
    return str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    default: ProgressMode = "json" if getattr(args, "json", False) else "human"
    mode: ProgressMode = getattr(args, "progress", default)
    progress = Progress(mode)
    try:
        check_paths(args)
        result = COMMANDS[args.command](args, progress)
    except KeyboardInterrupt:
        progress.emit("error", message="interrupted")
        return 130
    except Exception as exc:  # every failure ends as one parseable line and a non-zero exit
        user = _user_error(exc)
        message = _message(exc) if user else f"{type(exc).__name__}: {exc}"
        if args.debug or not user:
            traceback.print_exc(file=sys.stderr)
        if mode == "json":
            progress.emit("error", message=message)
        else:
            print(f"python -m training {args.command}: error: {message}", file=sys.stderr)
        return 2 if user else 1
    if args.command != "data":
        progress.emit("done", **result)
    return 0
