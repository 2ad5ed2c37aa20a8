"""A dataset summary (:meth:`training.data.discovery.Dataset.summary`) as text for a terminal:
what ``python -m training data PATH`` prints."""

from __future__ import annotations

from typing import Any

__all__ = ["format_summary"]


def format_summary(summary: dict[str, Any]) -> str:
    """The summary of :meth:`Dataset.summary` as text for a terminal."""
    s = summary
    lines = [
        f"dataset  {s['root']}",
        f"layout   {s['layout']}   masks: {s['mask_kind']}",
        f"images   {s['images']}  ({s['defective']} defective, {s['defect_free']} defect-free)",
    ]
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(s["image_kinds"].items()))
    if kinds:
        lines.append(f"pixels   {kinds}")
    sizes = s["image_sizes"]
    if sizes["distinct"]:
        common = ", ".join(f"{w}x{h} ({n})" for w, h, n in sizes["most_common"])
        lines.append(
            f"sizes    {sizes['distinct']} distinct, smallest {sizes['smallest'][0]}x"
            f"{sizes['smallest'][1]}, largest {sizes['largest'][0]}x{sizes['largest'][1]}; "
            f"most common {common}"
        )
    lines.append("classes  id  name                 images     defect pixels")
    for c in s["classes"]:
        lines.append(f"         {c['id']:>2}  {c['name']:<20} {c['images']:>6} {c['pixels']:>17,}")
    split = s["split"]
    parts = ", ".join(
        f"{k} {v['images']} ({v['defective']} defective)" for k, v in split["parts"].items()
    )
    source = (
        "given by the data, used as is" if split["given"] else "none given (seeded at training)"
    )
    lines.append(f"split    {source}" + (f": {parts}" if split["given"] else ""))
    for note in s["notes"]:
        lines.append(f"note     {note}")
    problems = s["problems"]
    blocking = sum(1 for p in problems if p["blocking"])
    lines.append(f"problems {len(problems)} ({blocking} must be fixed before training)")
    for p in problems:
        lines.append(f"  {'ERROR' if p['blocking'] else 'warn '} {p['file']}: {p['message']}")
    return "\n".join(lines)
