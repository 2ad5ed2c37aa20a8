"""The human half of an evaluation: report.md, the PR curve and TP/FP/FN overlay examples."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from training.data.loaders import Sample, read_image


def write_pr_plot(
    path: Path, precision: NDArray, recall: NDArray, ap: float, *, title: str
) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display in a training process or on CI
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.step(recall, precision, where="post")
    ax.set_xlabel("recall (images)")
    ax.set_ylabel("precision (images)")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{title}\nAP {ap:.3f}", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _overlay(
    image: NDArray, prob: NDArray[np.float32], truth: NDArray[np.bool_], threshold: float
) -> NDArray[np.uint8]:
    """Grey frame, truth outlined green, prediction (>= threshold) outlined red."""
    # NDArray[Any]: OpenCV's stubs type every result as "integer or floating".
    grey: NDArray[Any] = (
        image if image.ndim == 2 else cv2.cvtColor(image[:, :, :3], cv2.COLOR_BGR2GRAY)
    )
    if grey.dtype == np.uint16:
        grey = (grey >> 8).astype(np.uint8)
    bgr: NDArray[Any] = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    for mask, colour in ((truth, (0, 200, 0)), (prob >= threshold, (0, 0, 255))):
        contours, _ = cv2.findContours(
            mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
        )
        cv2.drawContours(bgr, contours, -1, colour, 2)
    return bgr


def write_examples(
    out: Path,
    samples: Sequence[Sample],
    probs: Sequence[NDArray[np.float32]],
    masks: Sequence[NDArray[np.bool_]],
    labels: NDArray[np.bool_],
    flagged: NDArray[np.bool_],
    threshold: float,
    min_area: int,
    per_kind: int,
) -> list[Path]:
    """``examples_tp.png`` / ``_fp`` / ``_fn``: up to ``per_kind`` frames side by side each."""
    written = []
    kinds = {"tp": labels & flagged, "fp": ~labels & flagged, "fn": labels & ~flagged}
    for kind, sel in kinds.items():
        path = out / f"examples_{kind}.png"
        idx = np.flatnonzero(sel)[:per_kind]
        if per_kind <= 0 or idx.size == 0:
            path.unlink(missing_ok=True)  # a stale file from an earlier run would mislead
            continue
        tiles = []
        for i in idx:
            tile: NDArray[Any] = _overlay(
                read_image(samples[i].image_path), probs[i], masks[i], threshold
            )
            tile = cv2.resize(tile, (256, int(256 * tile.shape[0] / tile.shape[1])))
            cv2.putText(
                tile,
                samples[i].name[-24:],
                (4, 14),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.4,
                (255, 255, 0),
                1,
                cv2.LINE_AA,
            )
            tiles.append(tile)
        height = max(t.shape[0] for t in tiles)
        tiles = [np.pad(t, ((0, height - t.shape[0]), (0, 4), (0, 0))) for t in tiles]
        cv2.imwrite(str(path), np.hstack(tiles))
        written.append(path)
    return written


def _f(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def write_markdown(
    path: Path,
    report: dict[str, Any],
    names: Sequence[str],
    labels: NDArray[np.bool_],
    flagged: NDArray[np.bool_],
) -> Path:
    split = report["split"]
    px = report["pixel"]
    lines = [
        f"# Evaluation of `{Path(report['model']).name}`",
        "",
        f"- data: `{report['data']}`, split **{split['name']}** "
        f"({split['images']} images, {split['defective']} defective; file `{split.get('file')}`)",
        f"- operating point: threshold {report['threshold']}, minimum defect area "
        f"{report['min_area_px']} px (full-resolution frame pixels)",
        f"- suggested on {report['suggested'].get('basis')}: threshold "
        f"{report['suggested']['threshold']}, min area {report['suggested']['min_area_px']} px",
        f"- {report['backend']}: {report['ms_per_frame']:.1f} ms per frame (tiling included)",
        "",
        "| metric | value |",
        "|---|---|",
        f"| dice (defective images only) | {_f(px['dice'])} |",
        f"| iou (defective images only) | {_f(px['iou'])} |",
        f"| dice_unet_industrial (all images, eps 1e-5) | {_f(px['dice_unet_industrial'])} |",
        f"| same, after the min-area rule | "
        f"{_f(report['pixel_after_min_area']['dice_unet_industrial'])} |",
        f"| AP (largest blob at the threshold) | {_f(report['ap'])} |",
        "",
        f"## Image level (minimum area {report['min_area_px']} px)",
        "",
        "| threshold | TP | TN | FP | FN | precision | recall | FPR |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["image_level"]:
        lines.append(
            f"| {r['threshold']:.1f} | {r['tp']} | {r['tn']} | {r['fp']} | {r['fn']} | "
            f"{r['precision']:.3f} | {r['recall']:.3f} | {r['fpr']:.4f} |"
        )
    wrong = [
        f"- `{n}`: {'missed defect (FN)' if lab else 'false alarm (FP)'}"
        for n, lab, f in zip(names, labels, flagged, strict=True)
        if lab != f
    ]
    lines += _class_lines(report)
    lines += ["", "## Wrong decisions at the operating point", ""] + (wrong or ["none"])
    lines += ["", "Plots: `pr_curve.png`, `examples_tp.png`, `examples_fp.png`, `examples_fn.png`."]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _class_lines(report: dict[str, Any]) -> list[str]:
    """Per-class table and the blob-level class confusion (see training.class_metrics)."""
    per_class = report.get("per_class") or {}
    if not per_class:
        return []
    lines = [
        "",
        f"## Defect classes (model classes: {', '.join(report.get('classes', []))})",
        "",
        "| class | images | dice | iou | found | missed |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in per_class.items():
        lines.append(
            f"| {name} | {m['images']} | {_f(m['dice'])} | {_f(m['iou'])} | {m['found']} | "
            f"{m['missed']} |"
        )
    confusion = report.get("class_confusion") or {}
    if confusion:
        columns = list(next(iter(confusion.values())))
        lines += [
            "",
            "Found defects by true class (rows; `none` = predicted blobs on no true defect) and "
            "predicted class (columns):",
            "",
            "| true \\ predicted | " + " | ".join(columns) + " |",
            "|---|" + "---|" * len(columns),
        ]
        for row, counts in confusion.items():
            lines.append(f"| {row} | " + " | ".join(str(counts.get(c, 0)) for c in columns) + " |")
    return lines
