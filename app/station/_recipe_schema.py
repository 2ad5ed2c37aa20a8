"""Validation helpers for recipe and settings files: typed key access with clear errors.

Every error names where it happened (file and table), the key and what is wrong, e.g.
``demo.toml: [rules]: key 'threshold': must be in (0, 1), not 1.5``. Unknown keys are rejected
rather than ignored, because a misspelt rule (``treshold``) silently falling back to its default
would judge parts with the wrong setting.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

from app.station.inspection import ClassRules, Rules, Zone


class RecipeError(ValueError):
    """A recipe or settings file is missing, unreadable or invalid (the message says where)."""


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}


def check_dict(data: Any, where: str, known: Iterable[str]) -> dict[str, Any]:
    """``data`` as a dict whose keys are all in ``known``."""
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: must be a table, not {type(data).__name__}")
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise RecipeError(
            f"{where}: unknown key {', '.join(repr(k) for k in unknown)} "
            f"(known: {', '.join(sorted(known))})"
        )
    return data


def _typed(value: Any, typ: type, where: str, key: str) -> Any:
    ok = (
        type(value) is typ
        if typ in (int, bool, str)
        else (type(value) in (int, float) and math.isfinite(value))
    )
    if not ok:
        raise RecipeError(f"{where}: key '{key}': must be {_TYPE_NAMES[typ]}, not {value!r}")
    return float(value) if typ is float else value


def take(
    d: dict[str, Any],
    key: str,
    typ: type,
    where: str,
    *,
    required: bool = False,
    default: Any = None,
    check: tuple[Callable[[Any], bool], str] | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """``d[key]`` checked for type (bool is not an int; ints are accepted as floats), range and
    allowed values; ``default`` when absent unless ``required``."""
    if key not in d:
        if required:
            raise RecipeError(f"{where}: missing key '{key}'")
        return default
    value = _typed(d[key], typ, where, key)
    if choices is not None and value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise RecipeError(f"{where}: key '{key}': must be one of {allowed}, not {value!r}")
    if check is not None and not check[0](value):
        raise RecipeError(f"{where}: key '{key}': must be {check[1]}, not {value!r}")
    return value


def _polygon(value: Any, where: str) -> tuple[tuple[float, float], ...]:
    if not isinstance(value, list) or len(value) < 3:
        raise RecipeError(f"{where}: key 'polygon': needs at least 3 [x, y] points, not {value!r}")
    points = []
    for i, pt in enumerate(value):
        if not (isinstance(pt, list) and len(pt) == 2):
            raise RecipeError(f"{where}: key 'polygon': point {i} must be [x, y], not {pt!r}")
        points.append(tuple(_typed(c, float, where, f"polygon[{i}]") for c in pt))
    return tuple(points)


def zone_from_dict(data: Any, where: str) -> Zone:
    d = check_dict(data, where, {"name", "kind", "polygon", "min_area_px"})
    name = take(d, "name", str, where, required=True, check=(lambda v: bool(v.strip()), "named"))
    kind = take(d, "kind", str, where, required=True, choices=("include", "exclude", "critical"))
    if "polygon" not in d:
        raise RecipeError(f"{where}: missing key 'polygon'")
    return Zone(
        name=name,
        kind=kind,
        polygon=_polygon(d["polygon"], where),
        min_area_px=take(d, "min_area_px", int, where, default=0, check=(lambda v: v >= 0, ">= 0")),
    )


_CLASS_RULE_KEYS = ("min_area_px", "max_count", "max_total_area_px", "always_ng")


def class_rules_from_dict(data: Any, where: str = "<rules.classes>") -> tuple[ClassRules, ...]:
    """Validate ``[rules.classes.<name>]`` tables (name -> rules), in the file's order."""
    if not isinstance(data, dict):
        raise RecipeError(f"{where}: must be a table of classes ([rules.classes.NAME]), not "
                          f"{type(data).__name__}")  # fmt: skip
    out = []
    non_negative = (lambda v: v >= 0, ">= 0")
    for name, table in data.items():
        if not name.strip():
            raise RecipeError(f"{where}: a class needs a name ([rules.classes.NAME])")
        sub = f"{where[:-1]}.{name}]" if where.endswith("]") else f"{where}.{name}"
        d = check_dict(table, sub, _CLASS_RULE_KEYS)
        out.append(
            ClassRules(
                name=name,
                min_area_px=take(d, "min_area_px", int, sub, check=non_negative),
                max_count=take(d, "max_count", int, sub, check=non_negative),
                max_total_area_px=take(d, "max_total_area_px", int, sub, check=non_negative),
                always_ng=take(d, "always_ng", bool, sub, default=False),
            )
        )
    return tuple(out)


def rules_from_dict(data: Any, where: str = "<rules>") -> Rules:
    """Validate a ``[rules]`` table (with its ``[[rules.zones]]`` and ``[rules.classes.NAME]``)
    and build :class:`Rules`."""
    d = check_dict(
        data,
        where,
        {"threshold", "min_area_px", "max_count", "max_total_area_px", "zones", "classes"},
    )
    non_negative = (lambda v: v >= 0, ">= 0")
    zones_raw = d.get("zones", [])
    if not isinstance(zones_raw, list):
        raise RecipeError(f"{where}: key 'zones': must be an array of tables ([[rules.zones]])")
    zones = tuple(zone_from_dict(z, f"{where} zones[{i}]") for i, z in enumerate(zones_raw))
    names = [z.name for z in zones]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RecipeError(f"{where}: key 'zones': duplicate zone names {dupes}")
    return Rules(
        threshold=take(
            d, "threshold", float, where, default=0.5, check=(lambda v: 0 < v < 1, "in (0, 1)")
        ),
        min_area_px=take(d, "min_area_px", int, where, default=0, check=non_negative),
        max_count=take(d, "max_count", int, where, default=0, check=non_negative),
        max_total_area_px=take(d, "max_total_area_px", int, where, check=non_negative),
        zones=zones,
        classes=class_rules_from_dict(d.get("classes", {}), f"{where[:-1]}.classes]"
                                      if where.endswith("]") else f"{where}.classes"),
    )  # fmt: skip


def rules_to_dict(rules: Rules) -> dict[str, Any]:
    """TOML/JSON-ready dict of ``rules`` (``max_total_area_px`` left out when None)."""
    out: dict[str, Any] = {
        "threshold": float(rules.threshold),
        "min_area_px": int(rules.min_area_px),
        "max_count": int(rules.max_count),
    }
    if rules.max_total_area_px is not None:
        out["max_total_area_px"] = int(rules.max_total_area_px)
    if rules.zones:
        out["zones"] = [
            {
                "name": z.name,
                "kind": z.kind,
                "polygon": [[float(x), float(y)] for x, y in z.polygon],
                "min_area_px": int(z.min_area_px),
            }
            for z in rules.zones
        ]
    if rules.classes:
        # Only the keys a class sets: an absent key falls back to the global rule.
        out["classes"] = {
            c.name: {
                **{k: int(v) for k in _CLASS_RULE_KEYS[:3] if (v := getattr(c, k)) is not None},
                **({"always_ng": True} if c.always_ng else {}),
            }
            for c in rules.classes
        }
    return out


# -- [outputs]: plant outputs, each off unless its table is present ------------------------------


def _host_port(value: str) -> bool:
    host, sep, port = value.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


_POSITIVE = (lambda v: v > 0, "> 0")
# Output name -> key -> (type, check or None). The MQTT output's keys are read by
# app.station.outputs.mqtt; the OPC UA and Modbus keys by their modules (docs/integration.md).
OUTPUT_KEYS: dict[str, dict[str, tuple[type, tuple[Callable[[Any], bool], str] | None]]] = {
    "opcua": {
        "endpoint": (str, (lambda v: v.startswith("opc.tcp://"), "an opc.tcp://HOST:PORT url")),
        "job_deadline_ms": (float, _POSITIVE),
    },
    "modbus": {
        "address": (str, (_host_port, "HOST:PORT")),
        "unit_id": (int, (lambda v: 0 <= v <= 255, "in 0..255")),
        "job_deadline_ms": (float, _POSITIVE),
    },
    "mqtt": {
        "url": (
            str,
            (lambda v: v.startswith(("mqtt://", "mqtts://")), "an mqtt(s)://HOST:PORT url"),
        ),
        "prefix": (str, None),
        "station": (str, None),
        "qos": (int, (lambda v: v in (0, 1, 2), "0, 1 or 2")),
        "queue_max": (int, _POSITIVE),
    },
}


def outputs_from_dict(data: Any, where: str = "<outputs>") -> dict[str, Any]:
    """Validate an ``[outputs]`` table: ``job_deadline_ms`` (ms, the default for every output)
    and one sub-table per output (``[outputs.opcua]``, ``[outputs.modbus]``, ``[outputs.mqtt]``).
    Returns it as read (a copy), with only the outputs that are present."""
    d = check_dict(data, where, {"job_deadline_ms", *OUTPUT_KEYS})
    out: dict[str, Any] = {}
    deadline = take(d, "job_deadline_ms", float, where, check=_POSITIVE)
    if deadline is not None:
        out["job_deadline_ms"] = deadline
    for name, keys in OUTPUT_KEYS.items():
        if name not in d:
            continue
        sub_where = f"{where[:-1]}.{name}]" if where.endswith("]") else f"{where}.{name}"
        table = check_dict(d[name], sub_where, keys)
        out[name] = {
            key: take(table, key, typ, sub_where, check=check)
            for key, (typ, check) in keys.items()
            if key in table
        }
    return out
