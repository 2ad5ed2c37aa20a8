"""Measure a model the way the station runs it: same preprocessing, tiling and scoring code.

Probability maps come from :func:`engines.predict.predict_maps` (scale, tile, infer, stitch, back
to full resolution) and every number from :mod:`engines.scoring`, so the report, the QC panel and
the line agree. Two pixel metrics are reported on purpose:

* ``dice``: mean Dice over the **defective** images only (the honest one);
* ``dice_unet_industrial``: UNet_Industrial's published "IoU", in fact a per-image Dice with
  eps = 1e-5 averaged over **all** images, so each defect-free image predicted empty scores 1.0.

The operating point (threshold, minimum defect area) is chosen on the validation split, never on
the split being reported; see :func:`suggest_operating_point`.

``classes`` (the model's class names), ``per_class`` and ``class_confusion`` come from
:mod:`training.class_metrics`; image-level metrics stay "any defect = defective".
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engines import scoring
from engines.card import ModelCard, card_path_for
from engines.predict import predict_class_maps, predict_maps
from training.class_metrics import class_report
from training.data import Sample, load_split
from training.data.loaders import DatasetError, read_image, read_mask, select
from training.progress import Progress
from training.report import write_examples, write_markdown, write_pr_plot

log = logging.getLogger("training")

THRESHOLDS = scoring.DEFAULT_THRESHOLDS
UNET_INDUSTRIAL_EPS = 1e-5


class KerasEngine:
    """A run directory's checkpoint behind the :class:`engines.protocol.Engine` protocol."""

    backend = "keras"

    def __init__(self, model: Any, card: ModelCard, class_head: str = "softmax") -> None:
        self.model = model
        self.card = card
        self.class_head = class_head

    def infer_classes(
        self, batch: NDArray[np.float32]
    ) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        from training.export import keras_outputs

        prob, *cls = keras_outputs(self.model, batch, len(self.card.class_names), self.class_head)
        return prob, cls[0] if cls else np.zeros((*prob.shape[:3], 0), np.float32)

    def infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        return self.infer_classes(batch)[0]

    def close(self) -> None:
        self.model = None


def open_model(path: str | Path) -> tuple[Any, ModelCard, Path | None]:
    """``(engine, card, split file or None)`` for an ONNX/TensorRT file or a run directory."""
    path = Path(path)
    if path.is_dir():
        from training.export import base_card, load_run

        cfg, model = load_run(path)
        state_file = path / "state.json"
        state = json.loads(state_file.read_text(encoding="utf-8")) if state_file.is_file() else {}
        card = base_card(cfg, path, path.name, state)
        keras_engine = KerasEngine(model, card, cfg.get("class_head", "softmax"))
        return keras_engine, card, path / "split.json"
    from engines import load_engine

    engine = load_engine(path)
    card = engine.card
    split_file = path.with_suffix(".split.json")
    if not split_file.is_file() and card.training.get("split_file"):
        split_file = path.parent / str(card.training["split_file"])
    return engine, card, split_file if split_file.is_file() else None


def predict_samples(
    engine: Any,
    samples: Sequence[Sample],
    progress: Progress,
    what: str,
    *,
    class_maps: list[NDArray[np.float32] | None] | None = None,
) -> tuple[list[NDArray[np.float32]], list[NDArray[np.bool_]], NDArray[np.bool_], float]:
    """Maps, full-resolution masks, labels and milliseconds per frame for ``samples``.

    With ``class_maps`` (a list) each frame's class map (None for a one-class model) is appended.
    """
    probs: list[NDArray[np.float32]] = []
    masks: list[NDArray[np.bool_]] = []
    seconds = 0.0
    chunk = 8
    for start in range(0, len(samples), chunk):
        part = samples[start : start + chunk]
        images = [read_image(s.image_path) for s in part]
        t0 = time.perf_counter()
        if class_maps is None:
            probs.extend(predict_maps(engine, images))
        else:
            for prob, cmap in predict_class_maps(engine, images):
                probs.append(prob)
                class_maps.append(cmap)
        seconds += time.perf_counter() - t0
        for s, img in zip(part, images, strict=True):
            shape = img.shape[:2]
            masks.append(
                read_mask(s.mask_path, shape) if s.mask_path is not None else np.zeros(shape, bool)
            )
        progress.emit("evaluate", split=what, done=len(probs), total=len(samples))
    labels = np.array([m.any() for m in masks], bool)
    return probs, masks, labels, 1000.0 * seconds / max(1, len(samples))


def remove_small(binary: NDArray[np.bool_], min_area: int) -> NDArray[np.bool_]:
    """Drop 8-connected blobs smaller than ``min_area`` (what the station's rules ignore)."""
    import cv2

    if min_area <= 1 or not binary.any():
        return binary
    n, lab, stats, _ = cv2.connectedComponentsWithStats(binary.astype(np.uint8), connectivity=8)
    keep = np.zeros(n, bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= min_area
    return keep[lab]


def pixel_metrics(
    probs: Sequence[NDArray[np.float32]],
    masks: Sequence[NDArray[np.bool_]],
    threshold: float,
    min_area: int = 0,
) -> dict[str, float]:
    dices, ious, unet = [], [], []
    for p, m in zip(probs, masks, strict=True):
        pred = remove_small(p >= threshold, min_area)
        unet.append(scoring.dice(pred, m, eps=UNET_INDUSTRIAL_EPS))
        if m.any():
            dices.append(scoring.dice(pred, m))
            ious.append(scoring.iou(pred, m))
    nan = float("nan")
    return {
        "dice": float(np.mean(dices)) if dices else nan,
        "iou": float(np.mean(ious)) if ious else nan,
        "dice_unet_industrial": float(np.mean(unet)) if unet else nan,
    }


def suggest_operating_point(
    probs: Sequence[NDArray[np.float32]],
    labels: NDArray[np.bool_],
    *,
    masks: Sequence[NDArray[np.bool_]] | None = None,
    max_false_alarm_rate: float = 0.02,
    thresholds: Sequence[float] = THRESHOLDS,
    min_margin: float = 2.0,
) -> dict[str, Any]:
    """Threshold and minimum defect area from a labelled (validation) set.

    At each threshold the largest blob on any defect-free image (``normal_max``) and the smallest
    "largest blob" over the defective images (``defect_min``) are found. Where
    ``defect_min > normal_max`` the two classes separate and the minimum area is the midpoint,
    leaving equal room on both sides; "largest normal blob + 1" would sit right at the edge of the
    normal images and raised false alarms on unseen ones. Among the thresholds that separate with
    a comfortable ratio ``defect_min / max(normal_max, 1) >= min_margin`` the one with the best
    Dice on the defective images wins when ``masks`` are given (segmentation quality decides once
    the decision is safe), else the widest ratio. Where no threshold separates, the (threshold,
    area) pair with the best recall among those flagging at most ``max_false_alarm_rate`` of the
    defect-free images is taken (fewer false alarms, then the better Dice, break ties). "No false
    alarm at all" would pick a point that finds almost nothing on a weak model; a line states the
    false-alarm rate it can live with (2 % by default, the rate the project's targets are set at).
    """
    labels = np.asarray(labels, bool)
    best: dict[str, Any] | None = None
    fallback: dict[str, Any] | None = None
    for t in thresholds:
        scores = np.array([scoring.image_score(p, t) for p in probs])
        normal_max = int(scores[~labels].max()) if (~labels).any() else 0
        defect_min = int(scores[labels].min()) if labels.any() else 0
        seg = float("nan")
        if masks is not None and labels.any():
            seg = float(
                np.mean(
                    [
                        scoring.dice(p >= t, m)
                        for p, m, d in zip(probs, masks, labels, strict=True)
                        if d
                    ]
                )
            )
        if labels.any() and defect_min > normal_max:
            margin = defect_min / max(normal_max, 1)
            cand = {
                "threshold": float(t),
                "min_area_px": int((normal_max + defect_min + 1) // 2),  # ceil(midpoint)
                "separable": True,
                "normal_max_area": normal_max,
                "defect_min_area": defect_min,
                "margin": float(margin),
                "val_dice": seg,
            }
            if best is None or _better(cand, best, min_margin):
                best = cand
            continue
        for area in sorted({int(s) for s in scores if s > 0}):
            flagged = scores >= area
            row = scoring.confusion_row(t, flagged, labels)
            # equal recall and false alarms at several thresholds: the best segmentation wins
            key = (
                row.fpr <= max_false_alarm_rate + 1e-12, row.recall, -row.fpr,
                -1.0 if np.isnan(seg) else seg,
            )  # fmt: skip
            if fallback is None or key > fallback["_key"]:
                fallback = {
                    "threshold": float(t),
                    "min_area_px": area,
                    "separable": False,
                    "normal_max_area": normal_max,
                    "defect_min_area": defect_min,
                    "precision": row.precision,
                    "recall": row.recall,
                    "false_alarm_rate": row.fpr,
                    "val_dice": seg,
                    "_key": key,
                }
    chosen = best or fallback or {"threshold": 0.5, "min_area_px": 1, "separable": False}
    chosen.pop("_key", None)
    chosen["max_false_alarm_rate"] = max_false_alarm_rate
    return chosen


def _better(a: dict[str, Any], b: dict[str, Any], min_margin: float) -> bool:
    """Is separable candidate ``a`` preferable to ``b`` (see :func:`suggest_operating_point`)?"""
    a_safe, b_safe = a["margin"] >= min_margin, b["margin"] >= min_margin
    if a_safe != b_safe:
        return a_safe
    if a_safe and not np.isnan(a["val_dice"]) and a["val_dice"] != b["val_dice"]:
        return a["val_dice"] > b["val_dice"]
    return (a["margin"], -abs(a["threshold"] - 0.5)) > (b["margin"], -abs(b["threshold"] - 0.5))


def _class_rules(
    val: tuple[Any, Any, Sequence[Sample], Any],
    test: tuple[Any, Any, Any, NDArray[np.bool_]],
    data_classes: Sequence[str],
    model_classes: Sequence[str],
    threshold: float,
    min_area: int,
) -> dict[str, Any]:
    """``suggested_class_rules`` (chosen on validation) and the image-level confusion they give
    on the evaluated split (:mod:`training.class_rules`); {} for a one-class model."""
    from training.class_rules import flag_with_class_rules, suggest_class_rules

    v_probs, v_maps, v_samples, v_masks = val
    if len(model_classes) < 2:
        return {}
    v_truths = [s.labels(m.shape) for s, m in zip(v_samples, v_masks, strict=True)]
    rules = suggest_class_rules(v_probs, v_maps, v_truths, data_classes, model_classes, threshold)
    if not rules:
        return {}
    probs, maps, _, labels = test
    flagged = flag_with_class_rules(probs, maps, threshold, min_area, rules, model_classes)
    row = scoring.confusion_row(threshold, flagged, labels)
    return {"suggested_class_rules": rules, "class_rules_operating_point": row.as_dict()}


def decision_scores(
    probs: Sequence[NDArray[np.float32]], labels: NDArray[np.bool_], threshold: float
) -> dict[str, dict[str, float]]:
    """Image-level AP and recall at 1 % / 2 % false alarms of each way to rank the images.

    ``largest_blob`` (area of the largest blob at the threshold) is what the station decides on;
    ``max_prob`` (the map's maximum) is the simplest learned pooling. Reported side by side so a
    different decision is adopted only where it measures better (issue 9).
    """
    out: dict[str, dict[str, float]] = {}
    if not labels.any() or labels.all():
        return out
    for kind in ("largest_blob", "max_prob"):
        scores = scoring.image_scores(probs, threshold, kind=kind)
        out[kind] = {
            "ap": scoring.average_precision(scores, labels),
            "recall_at_fpr_0.01": scoring.recall_at_fpr(scores, labels, 0.01),
            "recall_at_fpr_0.02": scoring.recall_at_fpr(scores, labels, 0.02),
        }
    return out


def _split_samples(
    samples: list[Sample], split_file: Path | None, which: str
) -> tuple[list[Sample], list[Sample] | None, dict[str, Any]]:
    if which == "all":
        return samples, None, {"name": "all", "file": None}
    if split_file is None:
        raise DatasetError(
            f"--split {which} needs the split recorded with the model (MODEL.split.json or "
            "RUN/split.json); use --split all to measure every image"
        )
    split = load_split(split_file)
    chosen = select(samples, split.names(which))
    val = select(samples, split.val) if split.val else None
    return chosen, val, {"name": which, "file": str(split_file), "seed": split.seed}


def evaluate_model(
    model: str | Path,
    data: str | Path,
    *,
    masks: str | Path | None = None,
    split: str = "test",
    out_dir: str | Path | None = None,
    progress: Progress | None = None,
    adopt_operating_point: bool = False,
    max_false_alarm_rate: float = 0.02,
    examples: int = 4,
    split_file: str | Path | None = None,
    layout: str = "auto",
) -> dict[str, Any]:
    """Evaluate, write ``report.json`` / ``report.md`` / plots, and return the report.

    ``split_file`` overrides the split recorded with the model: two models are compared on the
    same images by evaluating both against one run's ``split.json``.

    With ``adopt_operating_point`` (used by export) the validation-chosen threshold and minimum
    area are written into the model's card; otherwise the card's own operating point is used.
    """
    progress = progress or Progress("none")
    model = Path(model)
    engine, card, own_split = open_model(model)
    if split_file is not None and not Path(split_file).is_file():
        engine.close()
        raise FileNotFoundError(f"split file not found: {split_file}")
    split_file = Path(split_file) if split_file is not None else own_split
    from training.train import load_dataset

    dataset = load_dataset(str(data), None if masks is None else str(masks), layout)
    samples = dataset.samples
    chosen, val, split_info = _split_samples(samples, split_file, split)

    val_pred = None
    v_class_maps: list[NDArray[np.float32] | None] = []
    if val is not None and split != "val":
        val_pred = predict_samples(engine, val, progress, "val", class_maps=v_class_maps)
    class_maps: list[NDArray[np.float32] | None] = []
    probs, gt, labels, ms = predict_samples(engine, chosen, progress, split, class_maps=class_maps)
    v_probs, v_masks, v_labels, _ = val_pred or (probs, gt, labels, ms)
    v_samples = val if val_pred is not None and val is not None else chosen
    v_class_maps = v_class_maps if val_pred is not None else class_maps
    suggested = suggest_operating_point(
        v_probs, v_labels, masks=v_masks, max_false_alarm_rate=max_false_alarm_rate
    )
    suggested["basis"] = "val" if split not in ("val", "all") else split
    if adopt_operating_point or model.is_dir():
        threshold, min_area = suggested["threshold"], suggested["min_area_px"]
    else:
        threshold, min_area = card.threshold, card.min_area_px

    truths = [s.labels(g.shape) for s, g in zip(chosen, gt, strict=True)]
    class_rules = _class_rules(
        (v_probs, v_class_maps, v_samples, v_masks), (probs, class_maps, truths, labels),
        dataset.classes, card.class_names, threshold, min_area,
    )  # fmt: skip
    table = scoring.threshold_table(probs, labels, THRESHOLDS, min_area)
    scores = scoring.image_scores(probs, threshold)
    ap = scoring.average_precision(scores, labels) if labels.any() else float("nan")
    operating = scoring.confusion_row(threshold, scores >= max(1, min_area), labels)
    split_info.update(images=len(chosen), defective=int(labels.sum()))
    report: dict[str, Any] = {
        "model": str(model),
        "model_id": card.model_id,
        "precision": card.precision,
        "data": str(data),
        "split": split_info,
        "threshold": threshold,
        "min_area_px": min_area,
        "pixel": pixel_metrics(probs, gt, threshold),
        "pixel_after_min_area": pixel_metrics(probs, gt, threshold, min_area),
        "image_level": [r.as_dict() for r in table],
        "operating_point": operating.as_dict(),
        "ap": ap,
        "decision_scores": decision_scores(probs, labels, threshold),
        **class_rules,
        "suggested": suggested,
        "classes": list(card.class_names),
        **class_report(
            probs,
            class_maps,
            truths,
            dataset.classes,
            card.class_names,
            threshold,
            min_area,
        ),
        "ms_per_frame": ms,
        "backend": getattr(engine, "backend", ""),
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if out_dir:
        out = Path(out_dir)
    elif model.is_dir():
        out = model / "report"
    else:  # never beside a bundled model: that folder is part of the repository
        out = Path(tempfile.gettempdir()) / "inspection-station-eval" / f"{model.stem}-{split}"
    out.mkdir(parents=True, exist_ok=True)
    report["report_dir"] = str(out)
    (out / "report.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    precision, recall, _ = scoring.pr_curve(scores, labels)
    write_pr_plot(out / "pr_curve.png", precision, recall, ap, title=f"{model.name} ({split})")
    names = [s.name for s in chosen]
    flagged = scores >= max(1, min_area)
    write_examples(out, chosen, probs, gt, labels, flagged, threshold, min_area, examples)
    write_markdown(out / "report.md", report, names, labels, flagged)
    log.info("report %s: %s, AP %.3f", out / "report.json", report["pixel"], ap)

    if adopt_operating_point and not model.is_dir():
        metrics = {
            "split": split_info["name"],
            "split_file": split_info.get("file") and Path(split_info["file"]).name,
            **report["pixel"],
            "ap": ap,
            "operating_point": operating.as_dict(),
            "pixel_after_min_area": report["pixel_after_min_area"],
            "ms_per_frame_cpu": ms,
        }
        card = card.with_updates(threshold=threshold, min_area_px=int(min_area), metrics=metrics)
        card.save(card_path_for(model))
    engine.close()
    return report


def evaluate_cli(args: Any, progress: Progress) -> dict[str, Any]:
    report = evaluate_model(
        args.model,
        args.data,
        masks=args.masks,
        split=args.split,
        out_dir=args.out,
        progress=progress,
        max_false_alarm_rate=args.max_false_alarm_rate,
        examples=args.examples,
        split_file=args.split_file,
        layout=args.layout,
    )
    return {
        "model": report["model"],
        "report": str(Path(report["report_dir"]) / "report.json"),
        "pixel": report["pixel"],
        "ap": report["ap"],
        "operating_point": report["operating_point"],
    }
