"""``inspection-station new-recipe``: a recipe from a model's card and its evaluation report.

Training chooses the operating point (threshold, minimum area) on the validation split and
writes it into the card; for a multi-class model its report also suggests per-class minimum
areas (``suggested_class_rules``, :mod:`training.class_rules`). This command turns both into a
recipe, so nobody copies numbers by hand. Classes the report could not separate on validation
get no rule of their own: the global minimum area is their fallback.

Exit codes: 0 written, 2 refused (missing or broken card / report, classes the model does not
know, an existing file without ``--force``).
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("inspection-station")

EXIT_REFUSED = 2


def add_parser(sub: Any) -> None:
    """Register ``new-recipe`` on the CLI's subparsers."""
    p = sub.add_parser(
        "new-recipe",
        help="write a recipe from a model's card (operating point) and report (per-class rules)",
    )
    p.add_argument("--model", type=Path, required=True, help="MODEL.onnx with MODEL.json beside it")
    p.add_argument("--out", type=Path, required=True, help="recipe TOML to write")
    p.add_argument(
        "--report",
        type=Path,
        help="evaluation report.json (default: MODEL-report.json beside the model, if there)",
    )
    p.add_argument("--name", help="recipe name (default: the model file's stem)")
    p.add_argument("--source", default="", help="frame source, e.g. folder:PATH (default: none)")
    p.add_argument("--force", action="store_true", help="replace an existing recipe file")


def class_rules_from_report(report: dict[str, Any], class_names: tuple[str, ...]) -> list[Any]:
    """``ClassRules`` for the report's separable classes; unknown class names are an error."""
    from app.station.inspection import ClassRules

    suggested = report.get("suggested_class_rules") or {}
    unknown = [name for name in suggested if name not in class_names]
    if unknown:
        raise ValueError(
            f"the report suggests rules for {', '.join(unknown)}, which the model does not know "
            f"(its classes: {', '.join(class_names)}); is it this model's report?"
        )
    out = []
    for name in class_names:  # the model's order
        rule = suggested.get(name) or {}
        if rule.get("separable") and rule.get("min_area_px") is not None:
            out.append(ClassRules(name=name, min_area_px=int(rule["min_area_px"])))
    return out


def cmd_new_recipe(args: argparse.Namespace) -> int:
    from app.station.inspection import Rules
    from app.station.recipe import Recipe, SourceSettings, save_recipe
    from engines.card import CardError, card_path_for, load_card_for

    model: Path = args.model
    out: Path = args.out
    if not model.is_file():
        log.error("%s: model not found", model)
        return EXIT_REFUSED
    if out.exists() and not args.force:
        log.error("%s exists; give --force to replace it", out)
        return EXIT_REFUSED
    try:
        card = load_card_for(model)
    except (CardError, OSError, ValueError) as exc:
        log.error("%s: no usable model card (%s)", card_path_for(model), exc)
        return EXIT_REFUSED
    report_path = args.report or model.with_name(f"{model.stem}-report.json")
    report: dict[str, Any] = {}
    if args.report or report_path.is_file():
        try:
            report = json.loads(report_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.error("%s: cannot read the report (%s)", report_path, exc)
            return EXIT_REFUSED
    try:
        classes = class_rules_from_report(report, tuple(card.class_names))
    except ValueError as exc:
        log.error("%s: %s", report_path, exc)
        return EXIT_REFUSED
    rules = Rules(threshold=card.threshold, min_area_px=card.min_area_px, classes=tuple(classes))
    recipe = Recipe(
        name=args.name or model.stem,
        model=model.resolve(),
        rules=rules,
        version=0,  # save_recipe counts this save as version 1
        source=SourceSettings(spec=args.source),
        dataset_dir=Path("datasets") / (args.name or model.stem),
    )
    try:
        saved = save_recipe(recipe, out)
    except OSError as exc:
        log.error("%s: cannot write the recipe (%s)", out, exc)
        return EXIT_REFUSED
    per_class = ", ".join(f"{c.name} >= {c.min_area_px} px" for c in classes) or "none"
    log.info(
        "%s: threshold %g, minimum area %d px (the card's operating point); per-class minimum "
        "areas: %s",
        saved.path, card.threshold, card.min_area_px, per_class,
    )  # fmt: skip
    return 0
