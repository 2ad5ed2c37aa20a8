"""Engineer access: the PIN stored as a salted scrypt hash, checked with an attempt limit.

The PIN guards rules, zones, recipes and models against an operator's accidental (or curious)
edits. What is stored is a record ``scrypt$N$r$p$SALT$HASH`` (base64 salt and hash; a fresh
16-byte salt per PIN), never the PIN: ``inspection-station set-pin`` writes it to
``settings.toml`` (mode 0600), and so does the GUI when the first engineer login sets the PIN.
There is no default PIN: with none set, :attr:`EngineerAccess.has_pin` is False and nothing
unlocks until one is set.

:class:`EngineerAccess` is Qt-free so the headless core and the GUI share one checker:

- Comparison is constant-time (``hmac.compare_digest`` on the derived keys).
- After ``free_attempts`` consecutive wrong PINs, every further wrong PIN imposes a wait of
  ``2 ** (failures - free_attempts + 1)`` s (2, 4, 8 ... capped at ``max_delay_s``); attempts
  during the wait are refused without being checked. A right PIN resets the count. The count
  lives in memory: restarting the station resets it (restarting the GUI takes longer than the
  first waits, and the station is not a network service).
- Every failed login, lock-out and PIN change is logged and passed to ``on_event(kind,
  message)`` with ``kind`` in ``"alarm"`` (failures) / ``"info"`` (success, PIN set), the kinds
  of :class:`app.station.events.EventRecord`, so the session or the GUI can show them.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "EngineerAccess",
    "LoginResult",
    "PinError",
    "hash_pin",
    "is_pin_hash",
    "pin_problem",
    "verify_pin",
]

log = logging.getLogger(__name__)

# scrypt cost: N=2**14, r=8, p=1 is the interactive-login setting of the scrypt paper and of
# Python's docs; it takes 0.05-0.2 s and 16 MiB here, so a stolen settings file costs an attacker
# that much per guess while a login stays instant.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
_DKLEN = 32
_SALT_BYTES = 16
_PREFIX = "scrypt"
# Records with a cost beyond this are refused: a tampered file must not make a login hang.
_MAX_N = 2**20
MIN_PIN_LENGTH = 4
MAX_PIN_LENGTH = 128

EventCallback = Callable[[str, str], None]


class PinError(ValueError):
    """A PIN record is malformed, or a new PIN is not acceptable (the message says why)."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _derive(pin: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    # maxmem above 128 * n * r (the memory scrypt needs) or OpenSSL refuses the call
    return hashlib.scrypt(
        pin.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r + 2**20, dklen=_DKLEN
    )


def hash_pin(pin: str) -> str:
    """The storable record of ``pin``: ``scrypt$N$r$p$SALT$HASH`` with a fresh random salt."""
    salt = secrets.token_bytes(_SALT_BYTES)
    key = _derive(pin, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"{_PREFIX}${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


@functools.lru_cache(maxsize=8)
def _hash_clear(pin: str) -> str:
    # Settings built in code (tests, tools) hold the clear PIN in memory anyway; hashing it once
    # per process instead of once per window keeps GUI start-up fast. Nothing here is written.
    return hash_pin(pin)


def _parse(record: str) -> tuple[int, int, int, bytes, bytes]:
    parts = record.split("$")
    if len(parts) != 6 or parts[0] != _PREFIX:
        raise PinError(
            "engineer PIN record is not an scrypt hash (expected scrypt$N$r$p$salt$hash)"
        )
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        key = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error):
        raise PinError("engineer PIN record is malformed (bad numbers or base64)") from None
    if not (2 <= n <= _MAX_N and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
        raise PinError(f"engineer PIN record has unusable scrypt parameters N={n} r={r} p={p}")
    if len(salt) < 8 or len(key) < 16:
        raise PinError("engineer PIN record has a salt or hash that is too short")
    return n, r, p, salt, key


def is_pin_hash(text: str) -> bool:
    """True when ``text`` is a well-formed PIN record (not a clear-text PIN)."""
    try:
        _parse(text)
    except PinError:
        return False
    return True


def verify_pin(pin: str, record: str) -> bool:
    """True when ``pin`` matches ``record``; compared in constant time.

    Raises
    ------
    PinError
        ``record`` is not a well-formed record.
    """
    n, r, p, salt, key = _parse(record)
    return hmac.compare_digest(_derive(pin, salt, n, r, p), key)


def pin_problem(pin: str) -> str | None:
    """Why ``pin`` cannot be the new engineer PIN, or None when it can."""
    if len(pin) < MIN_PIN_LENGTH:
        return f"the PIN must have at least {MIN_PIN_LENGTH} characters"
    if len(pin) > MAX_PIN_LENGTH:
        return f"the PIN must have at most {MAX_PIN_LENGTH} characters"
    if pin.strip() != pin:
        return "the PIN must not start or end with a space"
    if any(not ch.isprintable() for ch in pin):
        return "the PIN must not contain control characters"
    return None


@dataclass(frozen=True)
class LoginResult:
    """Outcome of :meth:`EngineerAccess.check` / :meth:`EngineerAccess.set_pin`.

    ``wait_s`` > 0: further attempts are refused for that many seconds.
    """

    ok: bool
    message: str
    wait_s: float = 0.0


class EngineerAccess:
    """Checks engineer logins against the stored PIN record, with back-off after failures.

    Parameters
    ----------
    pin_record
        ``Settings.engineer_pin``: an scrypt record, ``""`` for no PIN set, or (settings built in
        code, e.g. by tests) a clear-text PIN, which is hashed here and never kept.
    persist
        Called with the new record when a PIN is set; typically :func:`app.station.settings.save_pin_record` bound to
        the settings file. None = the PIN lasts for this process only.
    on_event
        ``(kind, message)`` for failed logins (``"alarm"``) and successes / PIN changes
        (``"info"``).
    clock
        Monotonic seconds (injectable for tests).
    """

    def __init__(
        self,
        pin_record: str,
        *,
        persist: Callable[[str], object] | None = None,
        on_event: EventCallback | None = None,
        clock: Callable[[], float] = time.monotonic,
        free_attempts: int = 3,
        max_delay_s: float = 300.0,
    ) -> None:
        if pin_record and not is_pin_hash(pin_record):
            if pin_record.startswith(f"{_PREFIX}$") or pin_record.count("$") == 5:
                _parse(pin_record)  # raises with the reason: a damaged record is not a PIN
            pin_record = _hash_clear(pin_record)
        self._record = pin_record
        self._persist = persist
        self._on_event = on_event
        self._clock = clock
        self._free = free_attempts
        self._max_delay = max_delay_s
        self._failures = 0
        self._blocked_until = 0.0

    @property
    def has_pin(self) -> bool:
        """False until a PIN is set (then no login succeeds; the GUI asks to set one)."""
        return bool(self._record)

    @property
    def record(self) -> str:
        """The stored scrypt record (``""`` when none)."""
        return self._record

    @property
    def failures(self) -> int:
        """Consecutive wrong PINs since the last right one."""
        return self._failures

    def wait_s(self) -> float:
        """Seconds until the next attempt is accepted (0 when it may be tried now)."""
        return max(0.0, self._blocked_until - self._clock())

    def check(self, pin: str) -> LoginResult:
        """Try ``pin``. Refused without checking while a back-off wait runs."""
        if not self.has_pin:
            return LoginResult(False, "No engineer PIN is set yet: set one first.")
        wait = self.wait_s()
        if wait > 0:
            msg = f"Too many wrong PINs: try again in {_seconds(wait)}."
            return LoginResult(False, msg, wait)
        if verify_pin(pin, self._record):
            self._failures = 0
            self._emit("info", "engineer login")
            return LoginResult(True, "Unlocked.")
        self._failures += 1
        wait = 0.0
        if self._failures >= self._free:
            wait = min(self._max_delay, 2.0 ** (self._failures - self._free + 1))
            self._blocked_until = self._clock() + wait
        msg = f"engineer login failed: wrong PIN ({self._failures} in a row)"
        if wait:
            msg += f"; next attempt in {_seconds(wait)}"
        self._emit("alarm", msg)
        text = "Wrong PIN. Still locked."
        if wait:
            text += f" Too many wrong PINs: try again in {_seconds(wait)}."
        return LoginResult(False, text, wait)

    def set_pin(self, new_pin: str, *, current: str | None = None) -> LoginResult:
        """Set the PIN: the first one freely, a later one only with the ``current`` PIN.

        The record is handed to ``persist`` before it takes effect here, so a PIN that could not
        be saved is reported and not in force.
        """
        problem = pin_problem(new_pin)
        if problem:
            return LoginResult(False, problem[0].upper() + problem[1:] + ".")
        if self.has_pin:
            if current is None:
                return LoginResult(False, "Changing the PIN needs the current PIN.")
            result = self.check(current)
            if not result.ok:
                return result
        record = hash_pin(new_pin)
        if self._persist is not None:
            try:
                self._persist(record)
            except OSError as exc:
                self._emit("alarm", f"engineer PIN not saved: {exc}")
                return LoginResult(False, f"The PIN could not be saved ({exc}); nothing changed.")
        self._record = record
        self._failures = 0
        self._blocked_until = 0.0
        self._emit("info", "engineer PIN set")
        return LoginResult(True, "PIN set.")

    def _emit(self, kind: str, message: str) -> None:
        (log.warning if kind == "alarm" else log.info)("%s", message)
        if self._on_event is not None:
            try:
                self._on_event(kind, message)
            except Exception:  # a broken listener must not break the login itself
                log.exception("access event listener failed")


def _seconds(s: float) -> str:
    return f"{max(1, math.ceil(s))} s"
