"""GenTL producers (CTI files), the GenICam devices they expose, and writing camera settings.

A GenTL producer can be opened only once per process: a second ``Harvester`` loading the same CTI
sees no devices, and ``Harvester.update()`` destroys every image acquirer it created. So the
process shares one Harvester (``_HUB``): sources lease it, device listing re-scans only while no
camera is open, and it is reset (releasing the producers) when the last camera closes.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.station.sources.base import SourceError
from app.station.sources.spec import SourceOptions, Trigger

log = logging.getLogger(__name__)

GENTL_PATH_VAR = "GENICAM_GENTL64_PATH"
_WRITABLE = (2, 4)  # GenApi EAccessMode WO and RW (the enum is not exported by the genicam wheel)


@dataclass(frozen=True)
class DeviceInfo:
    """One GenICam device as the producers list it (``index`` is the position in that list)."""

    index: int
    id: str
    serial: str
    model: str
    vendor: str
    tl_type: str
    cti: str

    def matches(self, key: str) -> bool:
        return key in (self.id, self.serial)


def default_ctis() -> tuple[Path, ...]:
    """The Viky GenTL simulator shipped inside the ``genicam`` wheel, when installed."""
    spec = importlib.util.find_spec("genicam")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        cti = Path(folder) / "viky.cti"
        if cti.is_file():
            return (cti,)
    return ()


def env_ctis() -> tuple[Path, ...]:
    """``*.cti`` files in the folders of GENICAM_GENTL64_PATH (the GenTL standard's discovery)."""
    found: list[Path] = []
    for entry in os.environ.get(GENTL_PATH_VAR, "").split(os.pathsep):
        folder = Path(entry.strip()) if entry.strip() else None
        if folder is not None and folder.is_dir():
            found.extend(sorted(p for p in folder.iterdir() if p.suffix.lower() == ".cti"))
        elif folder is not None and folder.suffix.lower() == ".cti" and folder.is_file():
            found.append(folder)  # some installers put the file itself in the variable
    return tuple(found)


def resolve_ctis(extra: Iterable[str | Path] = ()) -> tuple[str, ...]:
    """GENICAM_GENTL64_PATH producers plus ``extra``; the Viky simulator when there are none."""
    given = [Path(c).expanduser() for c in extra]
    for cti in given:
        if not cti.is_file():
            raise SourceError(f"GenTL producer (CTI file) not found: {cti}")
    ctis = [*env_ctis(), *given] or list(default_ctis())
    if not ctis:
        raise SourceError(
            f"no GenTL producer: set {GENTL_PATH_VAR} to your camera vendor's CTI folder or pass"
            " a .cti file (the fallback Viky simulator from the 'genicam' package is not installed)"
        )
    unique: dict[str, None] = {}
    for cti in ctis:
        unique.setdefault(str(cti.resolve()), None)
    return tuple(unique)


def list_devices(ctis: Sequence[str | Path] = ()) -> list[DeviceInfo]:
    """Devices of the configured producers (see ``resolve_ctis``) plus ``ctis``."""
    return _HUB.devices(resolve_ctis(ctis))


def _text(info: Any, attribute: str) -> str:
    # Producers raise NotAvailable for properties they don't implement (Viky: user_defined_name).
    try:
        value = getattr(info, attribute)
    except Exception:
        return ""
    return "" if value is None else str(value)


def _cti_of(info: Any) -> str:
    try:  # DeviceInfo -> Interface -> System -> Producer
        return str(info.parent.parent.parent.path_name)
    except Exception:
        return ""


class _HarvesterHub:
    """The process's one Harvester, leased by open cameras (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._harvester: Any = None
        self._ctis: tuple[str, ...] = ()
        self._leases = 0

    def devices(self, ctis: tuple[str, ...]) -> list[DeviceInfo]:
        with self._lock:
            harvester = self._load(ctis)
            try:
                return [self._info(i, d) for i, d in enumerate(harvester.device_info_list)]
            finally:
                if self._leases == 0:
                    self._reset()

    def open(self, key: str, ctis: tuple[str, ...]) -> tuple[Any, DeviceInfo]:
        """Create an ImageAcquirer for the device whose id, serial or index is ``key``."""
        with self._lock:
            harvester = self._load(ctis)
            raw = list(harvester.device_info_list)
            infos = [self._info(i, d) for i, d in enumerate(raw)]
            match = next((i for i in infos if i.matches(key)), None)
            if match is None and key.isdigit() and int(key) < len(infos):
                match = infos[int(key)]
            if match is None:
                if self._leases == 0:
                    self._reset()
                found = "; ".join(f"[{i.index}] {i.id} (serial {i.serial})" for i in infos)
                raise SourceError(
                    f"GenICam device {key!r} not found (by id, serial or index) among"
                    f" {len(infos)} device(s): {found or 'none'}; producers: {', '.join(ctis)}"
                )
            try:
                acquirer = harvester.create(raw[match.index])
            except Exception as exc:
                if self._leases == 0:
                    self._reset()
                raise SourceError(
                    f"cannot open GenICam device {match.id} (serial {match.serial}): {exc}"
                ) from exc
            self._leases += 1
            return acquirer, match

    def release(self, acquirer: Any) -> None:
        """Destroy an acquirer from ``open``; the last release frees the producers."""
        with self._lock:
            try:
                acquirer.destroy()
            except Exception as exc:  # already half gone (device lost): nothing left to free
                log.debug("destroying image acquirer: %s", exc)
            self._leases = max(0, self._leases - 1)
            if self._leases == 0:
                self._reset()

    def _load(self, ctis: tuple[str, ...]) -> Any:
        if self._harvester is not None and self._leases > 0:
            missing = [c for c in ctis if c not in self._ctis]
            if missing:
                # update() would destroy the open cameras' acquirers; list what is loaded instead.
                log.warning(
                    "GenTL producers %s not loaded: a camera is open (close it to rescan)",
                    ", ".join(missing),
                )
            return self._harvester
        from harvesters.core import Harvester

        self._reset()
        harvester = Harvester()
        loaded = []
        for cti in ctis:
            try:  # ctypes-loads the file: a broken producer is skipped here, not half-opened later
                harvester.add_file(cti, check_existence=True, check_validity=True)
            except OSError as exc:
                log.warning("GenTL producer %s skipped: not loadable (%s)", cti, exc)
            else:
                loaded.append(cti)
        if not loaded:
            raise SourceError(f"no loadable GenTL producer among: {', '.join(ctis)}")
        harvester.update()  # rescans only here, with no camera open, so plugged devices appear
        self._harvester, self._ctis = harvester, tuple(loaded)
        return harvester

    def _reset(self) -> None:
        if self._harvester is not None:
            try:
                self._harvester.reset()
            except Exception as exc:
                log.debug("resetting harvester: %s", exc)
        self._harvester, self._ctis = None, ()

    @staticmethod
    def _info(index: int, raw: Any) -> DeviceInfo:
        return DeviceInfo(
            index=index,
            id=_text(raw, "id_"),
            serial=_text(raw, "serial_number"),
            model=_text(raw, "model"),
            vendor=_text(raw, "vendor"),
            tl_type=_text(raw, "tl_type"),
            cti=_cti_of(raw),
        )


_HUB = _HarvesterHub()


# -- camera settings (node map writes) ----------------------------------------------------------


def effective_trigger(options: SourceOptions) -> Trigger | None:
    """The trigger to set: the camera setting, else "hardware" in triggered mode, else leave it."""
    if options.camera.trigger is not None:
        return options.camera.trigger
    return "hardware" if options.mode == "triggered" else None


# The operator-facing camera controls and the GenICam (SFNC) nodes that implement each one.
CONTROL_NODES: dict[str, tuple[str, ...]] = {
    "exposure_us": ("ExposureTime", "ExposureTimeAbs"),
    "gain_db": ("Gain",),
    "trigger": ("TriggerMode",),
}


def missing_controls(node_map: Any) -> dict[str, str]:
    """{control: why the device cannot take it} for exposure, gain and trigger.

    Asked whatever the recipe requests, so a GUI can grey out exactly the controls the device
    lacks (the Viky simulator has none of the three).
    """
    return {
        control: f"the device has no {' or '.join(names)} node"
        for control, names in CONTROL_NODES.items()
        if not any(node_map.has_node(n) for n in names)
    }


def apply_settings(
    node_map: Any, options: SourceOptions, trigger: Trigger | None, pixel_formats: tuple[str, ...]
) -> dict[str, str]:
    """Write the requested settings; return {setting: why not applied} for missing nodes.

    A value the camera rejects (out of range, unknown pixel format) raises SourceError: running
    with a different image size or format than the recipe asks for would judge the wrong thing.
    """
    cam = options.camera
    unsupported: dict[str, str] = {}

    def want(setting: str, value: Any, *names: str) -> None:
        node = next((n for n in names if node_map.has_node(n)), None)
        if node is None:
            unsupported[setting] = f"no {' or '.join(names)} node"
        elif not _set(node_map, node, value):
            unsupported[setting] = f"{node} is not writable"

    if cam.pixel_format is not None:
        if cam.pixel_format not in pixel_formats:
            raise SourceError(
                f"pixel format {cam.pixel_format} is not supported (use one of"
                f" {', '.join(pixel_formats)})"
            )
        want("pixel_format", cam.pixel_format, "PixelFormat")
    if node_map.has_node("PixelFormat"):
        current = str(node_map.PixelFormat.value)
        if current not in pixel_formats:
            raise SourceError(
                f"camera pixel format {current} is not supported; set camera.pixel_format to one"
                f" of {', '.join(f for f in pixel_formats if f in _symbolics(node_map))}"
            )
    if cam.width is not None:
        want("width", cam.width, "Width")
    if cam.height is not None:
        want("height", cam.height, "Height")
    if cam.exposure_us is not None:
        _set_if_present(node_map, "ExposureAuto", "Off")  # else auto exposure overrides the value
        want("exposure_us", float(cam.exposure_us), "ExposureTime", "ExposureTimeAbs")
    if cam.gain_db is not None:
        _set_if_present(node_map, "GainAuto", "Off")
        # GainRaw exists on older cameras but is in device units, not dB: not a substitute.
        want("gain_db", float(cam.gain_db), "Gain")
    if options.fps:
        _set_if_present(node_map, "AcquisitionFrameRateEnable", True)
        want("fps", float(options.fps), "AcquisitionFrameRate", "AcquisitionFrameRateAbs")
    if trigger is not None:
        _apply_trigger(node_map, trigger, cam.trigger_source, unsupported)
    return unsupported


def _apply_trigger(
    node_map: Any, trigger: Trigger, line: str | None, unsupported: dict[str, str]
) -> None:
    if not node_map.has_node("TriggerMode"):
        if trigger != "off":  # no trigger at all = free-running, which "off" asks for anyway
            unsupported["trigger"] = "no TriggerMode node"
        return
    if node_map.has_node("TriggerSelector") and "FrameStart" in _symbolics(
        node_map, "TriggerSelector"
    ):
        _set(node_map, "TriggerSelector", "FrameStart")
    if trigger == "off":
        _set(node_map, "TriggerMode", "Off")
        return
    source = "Software" if trigger == "software" else line
    if source is not None:
        if not node_map.has_node("TriggerSource"):
            unsupported["trigger"] = "no TriggerSource node"
            return
        if source not in _symbolics(node_map, "TriggerSource"):
            raise SourceError(
                f"camera TriggerSource has no {source!r} (it has"
                f" {', '.join(_symbolics(node_map, 'TriggerSource'))})"
            )
        _set(node_map, "TriggerSource", source)
    if trigger == "software" and not node_map.has_node("TriggerSoftware"):
        unsupported["trigger"] = "no TriggerSoftware node"
        return
    if not _set(node_map, "TriggerMode", "On"):
        unsupported["trigger"] = "TriggerMode is not writable"


def _symbolics(node_map: Any, name: str = "PixelFormat") -> tuple[str, ...]:
    try:
        return tuple(getattr(node_map, name).symbolics)
    except Exception:
        return ()


def _set_if_present(node_map: Any, name: str, value: Any) -> None:
    if node_map.has_node(name):
        try:
            _set(node_map, name, value)
        except SourceError as exc:
            log.debug("%s", exc)


def _set(node_map: Any, name: str, value: Any) -> bool:
    """Write a node; False when it is not writable; SourceError when the value is refused."""
    node = getattr(node_map, name)
    try:
        if node.get_access_mode() not in _WRITABLE:
            return False
    except Exception:
        return False
    low, high = getattr(node, "min", None), getattr(node, "max", None)
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if numeric and low is not None and high is not None:
        if not low <= value <= high:
            raise SourceError(f"camera {name}={value} is outside its range [{low}, {high}]")
    symbolics = _symbolics(node_map, name) if isinstance(value, str) else ()
    if isinstance(value, str) and symbolics and value not in symbolics:
        raise SourceError(f"camera {name} has no {value!r} (it has {', '.join(symbolics)})")
    try:
        node.value = value
    except Exception as exc:  # genapi raises OutOfRange, InvalidArgument, Access ... exceptions
        detail = str(exc).split(" : ")[0]
        raise SourceError(f"camera refused {name}={value}: {detail}") from exc
    return True
