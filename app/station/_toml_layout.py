"""Write a TOML document over an existing file, keeping its comments, order and layout (tomlkit).

A recipe is a file people edit and annotate ("chosen on the validation split", "relative to this
file's folder"); saving it from the station must change the values, not the file's words. Keys
the new data no longer has are removed, new keys are appended to their table, values that are
equal (``0.5`` written as ``0.50``) keep their spelling. Whatever cannot be merged (no file yet, a
file that is not valid TOML) is written fresh. The result is checked: it must read back as
exactly ``data``, else it is written fresh too.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError

log = logging.getLogger(__name__)


def dumps_keeping_layout(data: dict[str, Any], path: Path) -> str:
    """``data`` as TOML text, laid out like the file at ``path`` when there is one."""
    try:
        doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return tomlkit.dumps(data)
    except (OSError, UnicodeDecodeError, TOMLKitError) as exc:
        log.warning("%s: written afresh (the old layout could not be read: %s)", path, exc)
        return tomlkit.dumps(data)
    try:
        _merge(doc, data)
        text = tomlkit.dumps(doc)
        if tomllib.loads(text) == data:
            return text
        log.warning("%s: layout merge did not read back as saved; written afresh", path)
    except (TOMLKitError, tomllib.TOMLDecodeError, TypeError, ValueError) as exc:
        log.warning("%s: written afresh (layout merge failed: %s)", path, exc)
    return tomlkit.dumps(data)


def _merge(table: MutableMapping[str, Any], data: dict[str, Any]) -> None:
    for key in [k for k in table if k not in data]:
        del table[key]
    for key, value in data.items():
        old = table.get(key)
        if isinstance(value, dict) and isinstance(old, MutableMapping):
            _merge(old, value)
        elif key in table and _plain(old) == value and type(_plain(old)) is type(value):
            continue  # same value: keep how the file spells it (and its comment)
        elif _is_table_list(value):
            table[key] = _aot(value)
        else:
            table[key] = value


def _is_table_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


def _aot(rows: list[dict[str, Any]]) -> Any:
    """``[[name]]`` tables, with a blank line after the last so the next table stands apart."""
    aot = tomlkit.aot()
    for row in rows:
        t = tomlkit.table()
        t.update(row)
        aot.append(t)
    aot[-1].add(tomlkit.nl())
    return aot


def _plain(item: Any) -> Any:
    unwrap = getattr(item, "unwrap", None)
    return unwrap() if callable(unwrap) else item
