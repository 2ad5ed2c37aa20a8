"""Is the new model worse than the running one? Two evaluation reports at the station's point.

Both reports come from ``python -m training evaluate`` on the same held-out split. The station's
operating point is its threshold now; each report's image-level table (0.1 … 0.9) is read at the
row nearest to it. The new model is *worse* when its recall is lower or it raises more false
alarms there — or when that cannot be told (a table missing, different images): a deploy then
needs an explicit override, never a silent swap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

RECALL_TOLERANCE = 1e-9


@dataclass(frozen=True)
class PointMetrics:
    threshold: float
    recall: float
    precision: float
    fp: int
    fn: int


@dataclass(frozen=True)
class Comparison:
    """The guard's verdict and the table shown beside it."""

    worse: bool
    reasons: tuple[str, ...]  # why it is worse (or cannot be told); empty when not worse
    threshold: float
    current: PointMetrics | None
    new: PointMetrics | None
    rows: tuple[tuple[str, str, str], ...]  # (metric, current, new) as text
    pr: dict[str, tuple[list[float], list[float]]]  # which -> (recall, precision)


def _nearest(rows: list[dict[str, Any]], threshold: float) -> dict[str, Any]:
    return min(rows, key=lambda r: abs(float(r["threshold"]) - threshold)) if rows else {}


def _point(report: dict[str, Any], threshold: float) -> PointMetrics | None:
    at = _nearest(report.get("image_level") or [], threshold)
    try:
        return PointMetrics(
            float(at["threshold"]), float(at["recall"]), float(at["precision"]),
            int(at["fp"]), int(at["fn"]),
        )  # fmt: skip
    except (KeyError, TypeError, ValueError):
        return None


def compare_reports(current: dict[str, Any], new: dict[str, Any], threshold: float) -> Comparison:
    """Compare at the station's ``threshold`` (see the module docstring)."""
    cur_p, new_p = _point(current, threshold), _point(new, threshold)
    reasons: list[str] = []
    if cur_p is None or new_p is None:
        reasons.append("the comparison has no threshold table: it cannot tell which is better")
    else:
        t = new_p.threshold
        if new_p.recall < cur_p.recall - RECALL_TOLERANCE:
            reasons.append(
                f"lower recall at threshold {t:.2f}: {new_p.recall:.3f} vs {cur_p.recall:.3f}"
            )
        if new_p.fp > cur_p.fp:
            reasons.append(f"more false alarms at threshold {t:.2f}: {new_p.fp} vs {cur_p.fp}")
    n_cur = (current.get("split") or {}).get("images")
    n_new = (new.get("split") or {}).get("images")
    if n_cur != n_new:
        reasons.append(f"not measured on the same images ({n_cur} vs {n_new})")
    return Comparison(
        worse=bool(reasons),
        reasons=tuple(reasons),
        threshold=threshold,
        current=cur_p,
        new=new_p,
        rows=tuple(comparison_rows(current, new, threshold)),
        pr={"current": pr_points(current), "new": pr_points(new)},
    )


def comparison_rows(
    current: dict[str, Any], new: dict[str, Any], threshold: float
) -> list[tuple[str, str, str]]:
    """``(metric, current, new)`` rows from two evaluation reports, as text."""

    def pick(report: dict[str, Any], key: str) -> Any:
        pixel = report.get("pixel") or {}
        op = report.get("operating_point") or {}
        at = _nearest(report.get("image_level") or [], threshold)
        return {
            "images": (report.get("split") or {}).get("images"),
            "dice": pixel.get("dice"),
            "iou": pixel.get("iou"),
            "ap": report.get("ap"),
            "precision": at.get("precision"),
            "recall": at.get("recall"),
            "fp": at.get("fp"),
            "fn": at.get("fn"),
            "op": f"t={_fmt(report.get('threshold'))}, min {report.get('min_area_px')} px",
            "op_precision": op.get("precision"),
            "op_recall": op.get("recall"),
            "op_fp": op.get("fp"),
        }[key]

    labels_ = (
        ("images", "test images"),
        ("dice", "Dice (defective images)"),
        ("iou", "IoU"),
        ("ap", "average precision"),
        ("precision", f"precision @ station threshold {threshold:.2f}"),
        ("recall", f"recall @ {threshold:.2f}"),
        ("fp", f"false alarms (FP) @ {threshold:.2f}"),
        ("fn", f"missed (FN) @ {threshold:.2f}"),
        ("op", "model's own operating point"),
        ("op_precision", "precision @ own point"),
        ("op_recall", "recall @ own point"),
        ("op_fp", "false alarms @ own point"),
    )
    return [(label, _fmt(pick(current, k)), _fmt(pick(new, k))) for k, label in labels_]


def pr_points(report: dict[str, Any]) -> tuple[list[float], list[float]]:
    """(recall, precision) of the report's threshold table (0.1 … 0.9), by recall."""
    rows = sorted(report.get("image_level") or [], key=lambda r: float(r["recall"]))
    return [float(r["recall"]) for r in rows], [float(r["precision"]) for r in rows]


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
