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

The engineer PIN is stored as a salted scrypt hash (``engineer_pin_hash``, see
:mod:`app.station.access`), set with ``inspection-station set-pin`` or at the first engineer login;
there is no default PIN. A clear-text ``engineer_pin`` left in an older file is migrated to the hash
on first load (the file is rewritten without it). The settings file is written 0600 in a 0700
folder, and a file found readable by others is tightened on load.
"""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tomli_w

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover
    raise ImportError("the station needs Python >= 3.11 (tomllib)") from None

from app.station._recipe_schema import RecipeError, check_dict, take

__all__ = [
    "SETTINGS_SCHEMA_VERSION",
    "Settings",
    "SettingsError",
    "default_data_dir",
    "default_settings_path",
    "load_settings",
    "save_settings",
    "update_settings_file",
]

log = logging.getLogger(__name__)

SETTINGS_SCHEMA_VERSION = 1
HOME_ENV = "INSPECTION_STATION_HOME"


class SettingsError(RecipeError):
    """The settings file is unreadable or invalid (message names the file and the key)."""


@dataclass(frozen=True)
class OpcuaSettings:
    """``[opcua]``: who may write and call methods on the OPC UA server, and its certificate.

    ``users`` maps a user name to an scrypt record (``app.station.access.hash_pin``); without
    users the server is read-only for everyone. With ``certificate`` + ``private_key`` (PEM or
    DER files) the server also offers Basic256Sha256 Sign&Encrypt endpoints.
    """

    users: tuple[tuple[str, str], ...] = ()
    certificate: Path | None = None
    private_key: Path | None = None


def _opcua_from(data: Any, where: str) -> OpcuaSettings:
    d = check_dict(data, where, {"users", "certificate", "private_key"})
    users = d.get("users", {})
    if not isinstance(users, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) and v.startswith("scrypt$")
        for k, v in users.items()
    ):
        raise SettingsError(
            f"{where}: key 'users': must be a table of name = \"scrypt$...\" records "
            "(made by app.station.access.hash_pin), not clear-text passwords"
        )
    cert, key = take(d, "certificate", str, where), take(d, "private_key", str, where)
    if (cert is None) != (key is None):
        raise SettingsError(f"{where}: 'certificate' and 'private_key' go together")
    return OpcuaSettings(
        users=tuple(sorted(users.items())),
        certificate=Path(cert).expanduser() if cert else None,
        private_key=Path(key).expanduser() if key else None,
    )


@dataclass(frozen=True)
class MqttSettings:
    """``[mqtt]``: the broker account and TLS files of the MQTT output (recipe ``[outputs.mqtt]``).

    The password is kept in clear text because the broker needs it; the settings file is 0600.
    ``ca_file`` turns TLS on (also implied by an ``mqtts://`` url); ``cert_file`` + ``key_file``
    add a client certificate.
    """

    username: str | None = None
    password: str | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None


def _mqtt_from(data: Any, where: str) -> MqttSettings:
    keys = ("username", "password", "ca_file", "cert_file", "key_file")
    d = check_dict(data, where, set(keys))
    v = {k: take(d, k, str, where) or None for k in keys}
    if (v["cert_file"] is None) != (v["key_file"] is None):
        raise SettingsError(f"{where}: 'cert_file' and 'key_file' go together")
    if v["password"] and not v["username"]:
        raise SettingsError(f"{where}: 'password' needs 'username'")
    files = {k: Path(f).expanduser() if (f := v[k]) else None for k in keys[2:]}
    return MqttSettings(username=v["username"], password=v["password"], **files)


@dataclass(frozen=True)
class Settings:
    """Station settings.

    Attributes
    ----------
    engineer_pin
        The engineer PIN's scrypt record (``scrypt$N$r$p$salt$hash``), ``""`` when none is set
        (the first engineer login then sets one). Settings built in code may hold a clear-text
        PIN: :class:`app.station.access.EngineerAccess` hashes it, and :func:`save_settings`
        writes only the hash.
    data_dir
        Writable folder for the results database, the NG archive and datasets.
    db_path, archive_dir
        SQLite results database and the folder of archived NG images + masks.
    keep_last
        Number of recent results whose probability maps stay in memory for re-judging.
    recipe_path
        Recipe opened at start; ``None`` = the bundled demo recipe.
    min_free_mb
        The station refuses to start with less free space (MiB) where the database lives.
    archive_min_free_mb
        Below this free space (MiB) the NG image archive stops (verdict rows go on), with an alarm.
    path
        The file these settings were loaded from (where a PIN set in the GUI is written);
        ``None`` when built in code.
    """

    engineer_pin: str
    data_dir: Path
    db_path: Path
    archive_dir: Path
    keep_last: int = 50
    recipe_path: Path | None = None
    schema_version: int = SETTINGS_SCHEMA_VERSION
    path: Path | None = field(default=None, compare=False)
    opcua: OpcuaSettings = field(default_factory=OpcuaSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    min_free_mb: float = 200.0
    archive_min_free_mb: float = 1000.0

    @classmethod
    def defaults(cls, data_dir: str | os.PathLike[str] | None = None) -> Settings:
        """All defaults, with the data under ``data_dir`` (or :func:`default_data_dir`)."""
        d = Path(data_dir) if data_dir is not None else default_data_dir()
        return cls("", d, d / "results.sqlite3", d / "archive")


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
    "engineer_pin_hash",
    "data_dir",
    "db_path",
    "archive_dir",
    "keep_last",
    "recipe_path",
    "opcua",
    "mqtt",
    "min_free_mb",
    "archive_min_free_mb",
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
        pin = _pin_from(d, where)
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
            opcua=_opcua_from(d.get("opcua", {}), f"{where}: [opcua]"),
            mqtt=_mqtt_from(d.get("mqtt", {}), f"{where}: [mqtt]"),
            min_free_mb=take(
                d, "min_free_mb", float, where, default=200.0, check=(lambda v: v >= 0, ">= 0")
            ),
            archive_min_free_mb=take(
                d,
                "archive_min_free_mb",
                float,
                where,
                default=1000.0,
                check=(lambda v: v >= 0, ">= 0"),
            ),  # fmt: skip
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
    data = _read_toml(p)
    settings = replace(_from_dict(data, str(p), environ), path=p)
    if data:
        _tighten_mode(p)
    if "engineer_pin" in data:
        settings = _migrate_clear_pin(settings, p)
    return settings


def _pin_from(d: dict[str, Any], where: str) -> str:
    """The PIN record from ``engineer_pin_hash``, or a legacy clear ``engineer_pin``, or ""."""
    from app.station.access import is_pin_hash

    record = take(d, "engineer_pin_hash", str, where, default="")
    if record and not is_pin_hash(record):
        raise SettingsError(
            f"{where}: key 'engineer_pin_hash': not an scrypt PIN record; set the PIN again with"
            " `inspection-station set-pin`"
        )
    clear = take(d, "engineer_pin", str, where)
    if clear is not None and not record:
        if not clear:
            raise SettingsError(f"{where}: key 'engineer_pin': must not be empty")
        return clear
    return record


def _migrate_clear_pin(settings: Settings, path: Path) -> Settings:
    """Replace a clear-text ``engineer_pin`` in the file by its hash (the hash wins if both)."""
    from app.station.access import hash_pin, is_pin_hash

    record = settings.engineer_pin
    if not is_pin_hash(record):
        record = hash_pin(record)
    try:
        update_settings_file(path, {"engineer_pin_hash": record}, remove=("engineer_pin",))
    except OSError as exc:
        log.warning(
            "%s: could not replace the clear-text engineer_pin by its hash (%s); the PIN is "
            "hashed in memory only, run `inspection-station set-pin`",
            path,
            exc,
        )
    else:
        log.warning("%s: clear-text engineer_pin replaced by its scrypt hash", path)
    return replace(settings, engineer_pin=record)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{path}: settings file unreadable ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML ({exc})") from None


def _tighten_mode(path: Path) -> None:
    # The file holds the PIN hash: readable by its owner only, like ~/.ssh files.
    try:
        if stat.S_IMODE(path.stat().st_mode) & 0o077:
            path.chmod(0o600)
            log.info("%s: permissions set to 0600", path)
    except OSError as exc:
        log.warning("%s: cannot restrict permissions to 0600 (%s)", path, exc)


def _write_private(path: Path, text: str) -> Path:
    """Atomically replace ``path`` with ``text``, created 0600 in a 0700 folder."""
    folder = path.parent
    if not folder.exists():
        folder.mkdir(mode=0o700, parents=True)
    try:
        if stat.S_IMODE(folder.stat().st_mode) & 0o077:
            folder.chmod(0o700)
    except OSError as exc:  # e.g. a folder owned by another user: the file itself is still 0600
        log.warning("%s: cannot restrict folder permissions to 0700 (%s)", folder, exc)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")  # 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def update_settings_file(
    path: str | os.PathLike[str],
    values: Mapping[str, Any],
    *,
    remove: Iterable[str] = (),
) -> Path:
    """Set ``values`` (and drop ``remove``) in the settings file, keeping its other keys.

    A missing file is created. Written atomically, 0600.

    Raises
    ------
    SettingsError
        The existing file is not valid TOML (it is left alone).
    OSError
        The file could not be written.
    """
    p = Path(path)
    data = _read_toml(p)
    for key in remove:
        data.pop(key, None)
    data.update(values)
    data.setdefault("schema_version", SETTINGS_SCHEMA_VERSION)
    return _write_private(p, tomli_w.dumps(data))


def save_settings(settings: Settings, path: str | os.PathLike[str]) -> Path:
    """Write ``settings`` atomically (temp file + fsync + rename, mode 0600) and return the path.

    The PIN is written as its scrypt record (a clear-text PIN held in memory is hashed first).
    """
    from app.station.access import hash_pin, is_pin_hash

    path = Path(path)
    pin = settings.engineer_pin
    data: dict[str, Any] = {
        "schema_version": SETTINGS_SCHEMA_VERSION,
        "data_dir": str(settings.data_dir),
        "db_path": str(settings.db_path),
        "archive_dir": str(settings.archive_dir),
        "keep_last": settings.keep_last,
        "min_free_mb": settings.min_free_mb,
        "archive_min_free_mb": settings.archive_min_free_mb,
    }
    if pin:
        data["engineer_pin_hash"] = pin if is_pin_hash(pin) else hash_pin(pin)
    if settings.recipe_path is not None:
        data["recipe_path"] = str(settings.recipe_path)
    if settings.opcua != OpcuaSettings():
        opcua: dict[str, Any] = {"users": dict(settings.opcua.users)}
        if settings.opcua.certificate and settings.opcua.private_key:
            opcua["certificate"] = str(settings.opcua.certificate)
            opcua["private_key"] = str(settings.opcua.private_key)
        data["opcua"] = opcua
    mqtt = {k: str(v) for k, v in vars(settings.mqtt).items() if v is not None}
    if mqtt:
        data["mqtt"] = mqtt
    return _write_private(path, tomli_w.dumps(data))


def save_pin_record(path: str | os.PathLike[str], record: str) -> Path:
    """Write ``record`` as ``engineer_pin_hash`` into the settings file ``path`` (0600).

    Other keys in the file are kept; a clear-text ``engineer_pin`` key is removed.
    """
    return update_settings_file(path, {"engineer_pin_hash": record}, remove=("engineer_pin",))
