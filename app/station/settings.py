"""Station-wide settings (not per product): where data lives, the engineer PIN, history depth.

One frozen dataclass, read from TOML and passed explicitly to the constructors that need it
(``InspectionSession(recipe, settings=...)``, ``ResultsStore(settings.db_path, ...)``); there is
no global getter, so tests build their own ``Settings`` instead of patching a singleton.

Where things are:

- settings file: ``$INSPECTION_STATION_HOME/settings.toml`` when that variable is set, else
  ``~/.config/inspection-station/settings.toml``. A missing file means all defaults.
- data dir: ``data_dir`` from the file, else ``$INSPECTION_STATION_HOME``, else
  ``~/.local/share/inspection-station``. ``db_path`` and ``archive_dir`` default to
  ``DATA/results.sqlite3`` and ``DATA/archive``; relative values resolve against the data dir.
  Recipes' relative ``dataset_dir`` also resolve under it (see :mod:`app.station.recipe`).

The default engineer PIN is ``"1234"``: change it in ``settings.toml`` on a production station
(``engineer_pin = "..."``). It is a lock against accidental edits by operators, not security.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    raise ImportError("the station needs Python >= 3.11 (tomllib)") from None

from app.station._atomic import atomic_write_text
from app.station._recipe_schema import RecipeError, check_dict, take

__all__ = [
    "DEFAULT_PIN",
    "SETTINGS_SCHEMA_VERSION",
    "Settings",
    "SettingsError",
    "default_data_dir",
    "default_settings_path",
    "load_settings",
    "save_settings",
]

SETTINGS_SCHEMA_VERSION = 1
DEFAULT_PIN = "1234"
HOME_ENV = "INSPECTION_STATION_HOME"


class SettingsError(RecipeError):
    """The settings file is unreadable or invalid (message names the file and the key)."""


@dataclass(frozen=True)
class Settings:
    """Station settings.

    Attributes
    ----------
    engineer_pin
        PIN that unlocks editing of rules and recipes in the GUI (default ``"1234"``).
    data_dir
        Writable folder for the results database, the NG archive and datasets.
    db_path, archive_dir
        SQLite results database and the folder of archived NG images + masks.
    keep_last
        Number of recent results whose probability maps stay in memory for re-judging.
    recipe_path
        Recipe opened at start; ``None`` = the bundled demo recipe.
    """

    engineer_pin: str
    data_dir: Path
    db_path: Path
    archive_dir: Path
    keep_last: int = 50
    recipe_path: Path | None = None
    schema_version: int = SETTINGS_SCHEMA_VERSION

    @classmethod
    def defaults(cls, data_dir: str | os.PathLike[str] | None = None) -> Settings:
        """All defaults, with the data under ``data_dir`` (or :func:`default_data_dir`)."""
        d = Path(data_dir) if data_dir is not None else default_data_dir()
        return cls(DEFAULT_PIN, d, d / "results.sqlite3", d / "archive")


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$INSPECTION_STATION_HOME`` or ``~/.local/share/inspection-station``."""
    home = _env(environ).get(HOME_ENV)
    if home:
        return Path(home).expanduser()
    return Path.home() / ".local" / "share" / "inspection-station"


def default_settings_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$INSPECTION_STATION_HOME/settings.toml`` or ``~/.config/inspection-station/settings.toml``."""
    home = _env(environ).get(HOME_ENV)
    if home:
        return Path(home).expanduser() / "settings.toml"
    return Path.home() / ".config" / "inspection-station" / "settings.toml"


_KEYS = {
    "schema_version",
    "engineer_pin",
    "data_dir",
    "db_path",
    "archive_dir",
    "keep_last",
    "recipe_path",
}


def _from_dict(data: dict[str, Any], where: str, environ: Mapping[str, str] | None) -> Settings:
    try:
        d = check_dict(data, where, _KEYS)
        version = take(d, "schema_version", int, where, default=SETTINGS_SCHEMA_VERSION)
        if version > SETTINGS_SCHEMA_VERSION:
            raise SettingsError(
                f"{where}: key 'schema_version': {version} is newer than this station "
                f"understands ({SETTINGS_SCHEMA_VERSION})"
            )
        pin = take(d, "engineer_pin", str, where, default=DEFAULT_PIN)
        if not pin:
            raise SettingsError(f"{where}: key 'engineer_pin': must not be empty")
        data_text = take(d, "data_dir", str, where)
        data_dir = Path(data_text).expanduser() if data_text else default_data_dir(environ)

        def under_data(key: str, default: str) -> Path:
            p = Path(take(d, key, str, where, default=default)).expanduser()
            return p if p.is_absolute() else data_dir / p

        recipe_text = take(d, "recipe_path", str, where)
        return Settings(
            engineer_pin=pin,
            data_dir=data_dir,
            db_path=under_data("db_path", "results.sqlite3"),
            archive_dir=under_data("archive_dir", "archive"),
            keep_last=take(
                d, "keep_last", int, where, default=50, check=(lambda v: v >= 1, ">= 1")
            ),
            recipe_path=Path(recipe_text).expanduser() if recipe_text else None,
        )
    except SettingsError:
        raise
    except RecipeError as exc:
        raise SettingsError(str(exc)) from None


def load_settings(
    path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read the settings file (see the module docstring for where it is looked for).

    Parameters
    ----------
    path
        Explicit settings file; ``None`` = :func:`default_settings_path`. A missing file gives the
        defaults (a fresh station needs no configuration).
    environ
        Environment to read ``INSPECTION_STATION_HOME`` from (``os.environ`` when None).

    Raises
    ------
    SettingsError
        The file exists but is not valid TOML or has an unknown, mistyped or out-of-range key.
    """
    p = Path(path) if path is not None else default_settings_path(environ)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        data = {}
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{p}: settings file unreadable ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{p}: not valid TOML ({exc})") from None
    return _from_dict(data, str(p), environ)


def save_settings(settings: Settings, path: str | os.PathLike[str]) -> Path:
    """Write ``settings`` atomically (temp file + fsync + rename) and return the path."""
    path = Path(path)
    data: dict[str, Any] = {
        "schema_version": SETTINGS_SCHEMA_VERSION,
        "engineer_pin": settings.engineer_pin,
        "data_dir": str(settings.data_dir),
        "db_path": str(settings.db_path),
        "archive_dir": str(settings.archive_dir),
        "keep_last": settings.keep_last,
    }
    if settings.recipe_path is not None:
        data["recipe_path"] = str(settings.recipe_path)
    atomic_write_text(path, tomli_w.dumps(data))
    return path
