"""Train a segmentation network on a dataset folder; everything lands in one run directory.

Run directory: ``config.json`` (the arguments), ``split.json`` (the seeded split), ``history.json``
(one entry per epoch), ``train.log``, ``checkpoints/last.keras`` (for ``--resume``),
``checkpoints/best.keras`` (best validation Dice) and ``state.json``. After training the best
checkpoint is exported to ``model.onnx`` (verified against Keras) and evaluated (``report.json``).

Defect classes: ``classes`` ("auto", a number or names) is resolved against the classes the data
holds (:func:`resolve_classes`); one class trains the binary network as always, two or more a
multi-class head (``class_head``, see :mod:`training.model`). ``config.json`` records the
resolved ``class_names``, which export and evaluation read.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from training.data import find_samples, load_split, make_split, save_split
from training.data.batches import Arrays, BatchSampler, load_arrays
from training.data.discovery import Dataset, discover
from training.data.loaders import DatasetError, Sample, select
from training.progress import Progress

log = logging.getLogger("training")


@dataclass
class TrainConfig:
    data: str
    out: str
    masks: str | None = None
    layout: str = "auto"  # dataset layout (training.data.discovery); auto-detected by default
    epochs: int = 60
    image_size: int = 256  # the exported network's (and card's) input side
    crop_size: int = 0  # training crop side; 0 = image_size (smaller crops = more per step)
    base_filters: int = 16
    architecture: str = "tinyunet"
    frame_scale: float = 1.0
    channels: int = 0  # 0 = from the first image
    batch_size: int = 8
    steps_per_epoch: int = 40
    learning_rate: float = 1e-3
    lr_decay: float = 0.5  # multiply the learning rate by this ...
    lr_decay_epochs: int = 20  # ... every this many epochs (staircase, as UNet_Industrial)
    optimizer: str = "adam"
    weight_decay: float = 1e-5
    clipnorm: float = 1.0
    defect_share: float = 0.4
    patience: int = 15
    max_minutes: float = 0.0  # 0 = no time budget
    seed: int = 0
    split_file: str | None = None  # train on this split (a model's) instead of a seeded new one
    amp: bool = False
    xla: bool = True
    resume: bool = False
    init_from: str | None = None  # start from these weights (fine-tuning / retraining)
    teacher: str | None = None  # one-class ONNX model whose maps are mixed into the targets
    teacher_weight: float = 0.5  # share of the teacher's map in the target (training.distill)
    export: bool = True
    progress: str = "human"
    classes: str = "auto"  # "auto" (from the data), a number, or class names "crack,stain"
    class_head: str = "softmax"  # multi-class head: "softmax" or "sigmoid" (training.model)
    class_names: list[str] = field(default_factory=list)  # resolved at the start of training
    lr_schedule: str = "epochs"  # "epochs" (halve every lr_decay_epochs) or "budget" (keras_loop)
    auto: list[str] = field(default_factory=list)  # settings to derive from the data (autoconfig)
    derived: dict[str, str] = field(default_factory=dict)  # what was derived, and why


_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(message)s")


def _attach_log(run: Path, progress: str) -> logging.Handler:
    """``RUN/train.log`` for this run (detached afterwards), plus stderr once per process.

    In JSON mode stdout belongs to the GUI's parser, so human-readable logs never go there. With
    the progress bar in a terminal, stderr gets warnings only (the bar already shows each epoch).
    """
    run.mkdir(parents=True, exist_ok=True)
    log.setLevel(logging.INFO)
    if not any(getattr(h, "_training_stderr", False) for h in log.handlers):
        err = logging.StreamHandler(sys.stderr)
        err.setFormatter(_FORMAT)
        bar = progress == "human" and sys.stdout.isatty()
        err.setLevel(logging.WARNING if bar else logging.INFO)
        err._training_stderr = True  # type: ignore[attr-defined]  # a marker to find our own handler
        log.addHandler(err)
    handler = logging.FileHandler(run / "train.log")
    handler.setFormatter(_FORMAT)
    log.addHandler(handler)
    return handler


def pick_strategy(tf: Any) -> Any:
    """MirroredStrategy on several GPUs, multi-worker when TF_CONFIG says so, else the default."""
    if os.environ.get("TF_CONFIG"):
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_logical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def validation_maps(
    model: Any, arrays: Arrays, tile: int, classes: int = 1, class_head: str = "softmax"
) -> list[np.ndarray]:
    """Probability maps of the (already scaled) validation frames, tiled as the station tiles.

    The exported network sees ``tile x tile`` inputs, each standardised on its own, so
    validation goes through the same :mod:`engines.tiling` grid and blend rather than feeding
    whole frames, which would standardise over a different area than the station does.
    A multi-class model's maps are ``H x W x (1 + K)``: the defect map, then the K class maps.
    """
    from engines.predict import default_overlap
    from engines.tiling import extract_tiles, stitch, tile_grid
    from training.model import split_scores

    def run(x: np.ndarray) -> np.ndarray:
        scores = np.asarray(model(x, training=False), np.float32)
        defect, share = split_scores(scores, classes, class_head)  # type: ignore[arg-type]  # str; split_scores refuses others
        if share is None:
            return np.asarray(defect, np.float32)[..., 0]
        return np.concatenate([np.asarray(defect), np.asarray(share)], -1).astype(np.float32)

    overlap = default_overlap(tile, tile)
    plans = []
    tiles: list[np.ndarray] = []  # one H x W x C tile per entry, stacked 16 at a time
    for x in arrays.images:
        positions = tile_grid(x.shape[0], x.shape[1], tile, tile, overlap)
        plans.append((x.shape[:2], positions))
        tiles.extend(extract_tiles(x, positions, tile, tile))
    outs = [run(np.stack(tiles[i : i + 16])) for i in range(0, len(tiles), 16)]
    probs = np.concatenate(outs)
    maps, offset = [], 0
    for (h, w), positions in plans:
        maps.append(stitch(probs[offset : offset + len(positions)], positions, h, w, overlap))
        offset += len(positions)
    return maps


def validate(
    model: Any, arrays: Arrays, tile: int, classes: int = 1, class_head: str = "softmax"
) -> dict[str, float]:
    """Validation loss, Dice on the defective frames (at 0.5) and false-alarm frame count; for a
    multi-class model also ``val_class_dice``: the mean over classes of the Dice of each class's
    pixels (pooled over the frames; a defect pixel's class is the argmax of the class maps)."""
    maps = validation_maps(model, arrays, tile, classes, class_head)
    probs = [m[..., 0] if m.ndim == 3 else m for m in maps]
    eps = 1e-6
    dices, losses, false_alarm = [], [], 0
    out: dict[str, float] = {}
    if classes > 1:
        inter, total = np.zeros(classes), np.zeros(classes)
        for mp, ids in zip(maps, arrays.masks, strict=True):
            pred = np.where(mp[..., 0] > 0.5, np.argmax(mp[..., 1:], axis=-1) + 1, 0)
            for k in range(1, classes + 1):
                t, q = ids == k, pred == k
                inter[k - 1] += np.sum(t & q)
                total[k - 1] += t.sum() + q.sum()
        present = total > 0
        out["val_class_dice"] = (
            float(np.mean(2 * inter[present] / total[present])) if present.any() else float("nan")
        )
    for p, ids, d in zip(probs, arrays.masks, arrays.defective, strict=True):
        m = (ids > 0).astype(np.float32)  # class ids of a multi-class set: any defect
        pc = np.clip(p, eps, 1 - eps)
        bce = -np.mean(m * np.log(pc) + (1 - m) * np.log(1 - pc))
        soft = (2 * np.sum(m * p) + 1) / (m.sum() + p.sum() + 1)
        losses.append(bce + 1 - soft)
        hard = p > 0.5
        if d:
            dices.append(2 * np.sum(hard & (m > 0.5)) / (hard.sum() + m.sum() + eps))
        elif hard.any():
            false_alarm += 1
    return {
        "val_loss": float(np.mean(losses)),
        "val_dice": float(np.mean(dices)) if dices else float("nan"),
        "val_false_alarm_images": float(false_alarm),
        **out,
    }


def load_dataset(data: str, masks: str | None, layout: str = "auto") -> Dataset:
    """Discover ``data`` once; the same clear errors and warnings as :func:`find_samples`."""
    ds = discover(data, masks=masks, layout=layout)  # type: ignore[arg-type]  # str; discover refuses unknown layouts
    if ds.blocking or not ds.samples:
        find_samples(data, masks, layout=layout)  # raises the error naming the file and the fix
    for p in ds.problems:
        log.warning("%s: %s", Path(data) / p.file, p.message)
    return ds


def resolve_classes(spec: str, found: list[str]) -> tuple[list[str], NDArray[np.uint8]]:
    """The model's class names and a lookup table data class id -> model class id.

    ``spec``: ``auto`` (every class the data holds, in its order); ``1`` (one class: all defect
    pixels, binary); the number of classes the data holds; or names, comma-separated: every class
    of the data in the model's order, or new names for unnamed classes (``class1``, ``class2``
    from mask ids) in id order.
    """
    from training.cli import UsageError

    lut = np.zeros(256, np.uint8)
    ids = np.arange(1, len(found) + 1)
    text = spec.strip()
    listed = ", ".join(found)
    hint = f"the data holds {len(found)} class(es): {listed}; give --classes auto, 1 or names"
    if text == "auto":
        names = list(found)
    elif text.isdigit():
        n = int(text)
        if n == 1:
            lut[ids] = 1
            return ([found[0]] if len(found) == 1 else ["defect"]), lut
        if n != len(found):
            raise UsageError(f"--classes {n}: {hint}")
        names = list(found)
    else:
        names = [n.strip() for n in text.split(",") if n.strip()]
        if len(set(names)) != len(names) or not names:
            raise UsageError(f"--classes {spec!r}: give distinct, non-empty names")
        unnamed = all(f == f"class{i}" for i, f in enumerate(found, 1))
        if sorted(names) == sorted(found):
            lut[ids] = [names.index(f) + 1 for f in found]
            return names, lut
        if not (unnamed and len(names) == len(found)):
            raise UsageError(f"--classes {spec!r}: {hint}")
    lut[ids] = ids
    return names, lut


def load_class_arrays(
    samples: list[Sample], *, channels: int, scale: float, lut: NDArray[np.uint8], classes: int
) -> Arrays:
    """Like :func:`~training.data.batches.load_arrays`, the masks holding model class ids.

    A scaled mask is resized per class (area, then >= 0.5, as the binary masks are) and each
    pixel takes the class that covers most of it, so thin defects survive a downscale the same
    way in both kinds of training.
    """
    from engines.preprocess import resize, scaled_size, to_channels, to_unit_float
    from training.data.loaders import read_image

    images, masks = [], []
    for s in samples:
        raw = read_image(s.image_path)
        x = to_channels(to_unit_float(raw), channels)
        h, w = scaled_size(x.shape[0], x.shape[1], scale)
        images.append(np.ascontiguousarray(resize(x, h, w), np.float32))
        ids = lut[s.labels(raw.shape[:2])]
        if ids.shape != (h, w):
            cover = np.stack(
                [resize((ids == k).astype(np.float32)[:, :, None], h, w)[:, :, 0]
                 for k in range(1, classes + 1)], -1,
            )  # fmt: skip
            ids = np.where(cover.max(-1) >= 0.5, np.argmax(cover, -1) + 1, 0).astype(np.uint8)
        masks.append(ids.astype(np.float32))
    flags = np.array([bool(m.any()) for m in masks], bool)
    return Arrays([s.name for s in samples], images, masks, flags)


def _detect_channels(samples: list[Any]) -> int:
    from training.data.loaders import read_image

    first = read_image(samples[0].image_path)
    return 3 if first.ndim == 3 and first.shape[2] >= 3 else 1


def save_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def train(cfg: TrainConfig, progress: Progress) -> dict[str, Any]:
    """Train (or resume) and return the final summary (paths and metrics)."""
    run = Path(cfg.out)
    handler = _attach_log(run, cfg.progress)
    try:
        return _train(cfg, run, progress)
    finally:
        log.removeHandler(handler)
        handler.close()


def _train(cfg: TrainConfig, run: Path, progress: Progress) -> dict[str, Any]:
    t_start = time.monotonic()
    ds = load_dataset(cfg.data, cfg.masks, cfg.layout)
    samples = ds.samples
    names, lut = resolve_classes(cfg.classes, ds.classes)
    if cfg.resume and cfg.class_names and cfg.class_names != names:
        raise DatasetError(
            f"{cfg.data}: the run was trained on classes {cfg.class_names}, the data now gives "
            f"{names}; start a new run"
        )
    cfg.class_names = names
    split_path = run / "split.json"
    if cfg.resume and split_path.is_file():
        split = load_split(split_path)
    elif cfg.split_file:
        # Another model's split: the new model is measured on the same test images.
        split = load_split(cfg.split_file)
        for part in (split.train, split.val, split.test):
            select(samples, part)  # a name the data does not hold = one-line error
        split.info["split_from"] = cfg.split_file
        save_split(split, split_path)
    else:
        split = make_split(samples, seed=cfg.seed)
        split.info["data"] = cfg.data  # as given: a run directory records no machine's paths
        save_split(split, split_path)
    if not split.train or not split.val:
        raise DatasetError(f"{cfg.data}: too few images for a train/val split ({len(samples)})")
    if cfg.channels == 0:
        cfg.channels = _detect_channels(samples)
    log.info("data %s: %s", cfg.data, split.info)
    if cfg.auto:
        from training.autoconfig import apply

        cfg.derived = apply(cfg, select(samples, split.train), cfg.auto)
        if "epochs" in cfg.derived and cfg.max_minutes > 0:
            cfg.lr_schedule = "budget"
        for name, reason in cfg.derived.items():
            log.info("derived %s = %s", name, reason)

    if len(names) > 1:
        k = len(names)
        train_arr = load_class_arrays(
            select(samples, split.train), channels=cfg.channels, scale=cfg.frame_scale, lut=lut,
            classes=k,
        )  # fmt: skip
        val_arr = load_class_arrays(
            select(samples, split.val), channels=cfg.channels, scale=cfg.frame_scale, lut=lut,
            classes=k,
        )  # fmt: skip
        log.info("classes %s (%s head)", ", ".join(names), cfg.class_head)
    else:
        train_arr = load_arrays(
            select(samples, split.train), channels=cfg.channels, scale=cfg.frame_scale,
            soft=cfg.frame_scale < 1.0,
        )  # fmt: skip
        val_arr = load_arrays(
            select(samples, split.val), channels=cfg.channels, scale=cfg.frame_scale
        )
    if not train_arr.defective.any():
        raise DatasetError(f"{cfg.data}: the training split holds no defective image")
    if cfg.teacher:
        from training.distill import distill_targets

        train_arr = distill_targets(
            train_arr, select(samples, split.train), cfg.teacher, cfg.teacher_weight
        )
        log.info("targets: %.2f x teacher %s + labels", cfg.teacher_weight, cfg.teacher)
    val_arr = _validation_frames(cfg, val_arr)
    save_json(run / "config.json", asdict(cfg))  # with every derived setting

    from training.keras_loop import fit

    result = fit(cfg, run, train_arr, val_arr, progress, t_start)
    summary: dict[str, Any] = {"run": str(run), **result}
    if cfg.export:
        from training.export import ExportError, export_run

        try:
            exported = export_run(run, run / "model.onnx", progress=progress)
        except ExportError as exc:
            # A long run never ends with nothing: the checkpoints, history and the verification
            # report stay; the summary records why there is no model and the error says how to
            # export anyway (one line, exit 2).
            summary["export_error"] = str(exc)
            save_json(run / "summary.json", summary)
            raise
        summary.update(exported)
    save_json(run / "summary.json", summary)
    return summary


def _validation_frames(cfg: TrainConfig, val: Arrays) -> Arrays:
    """The frames validated every epoch (:func:`training.autoconfig.validation_subset`), and the
    steps per epoch derived from what validating them costs when they were not given."""
    from engines.predict import default_overlap
    from engines.tiling import tile_grid
    from training.autoconfig import steps_per_epoch, validation_subset

    keep = validation_subset(val.defective.tolist(), cfg.seed)
    if len(keep) < len(val.names):
        log.info(
            "validating on %d of %d validation frames (every defective one)",
            len(keep), len(val.names),
        )  # fmt: skip
        val = Arrays(
            [val.names[i] for i in keep], [val.images[i] for i in keep],
            [val.masks[i] for i in keep], val.defective[keep],
        )  # fmt: skip
    if "steps_per_epoch" in cfg.auto:
        tile = cfg.image_size
        overlap = default_overlap(tile, tile)
        pixels = sum(
            len(tile_grid(x.shape[0], x.shape[1], tile, tile, overlap)) * tile * tile
            for x in val.images
        )
        crop = cfg.crop_size or cfg.image_size
        cfg.steps_per_epoch, why = steps_per_epoch(pixels, cfg.batch_size, crop)
        cfg.derived["steps_per_epoch"] = f"{cfg.steps_per_epoch}: {why}"
        log.info("derived steps_per_epoch = %s", cfg.derived["steps_per_epoch"])
    return val


def make_sampler(cfg: TrainConfig, arrays: Arrays) -> BatchSampler:
    side = cfg.crop_size or cfg.image_size
    size = (side, side)
    return BatchSampler(
        arrays, input_size=size, batch_size=cfg.batch_size, defect_share=cfg.defect_share
    )
