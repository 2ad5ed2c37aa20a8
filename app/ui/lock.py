"""Engineer-mode lock: operators see the live view; editing needs the engineer PIN.

The PIN itself is checked by :class:`app.station.access.EngineerAccess` (scrypt hash, attempt
limit with back-off, failed logins logged); this module only holds the locked state and the
dialog. With no PIN set, the dialog asks the first engineer to set one (twice, to catch typos).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from app.station.access import EngineerAccess, LoginResult
from app.station.settings import Settings, default_settings_path, save_pin_record

log = logging.getLogger(__name__)


class EngineerLock(QObject):
    """Holds the locked state; the station always starts locked.

    Parameters
    ----------
    pin
        A :class:`~app.station.settings.Settings` (its ``engineer_pin`` record, and its ``path``
        as the file a newly set PIN is written to), or just the record / a clear PIN (then a new
        PIN goes to :func:`~app.station.settings.default_settings_path`, the file the station
        reads at start), or a ready :class:`~app.station.access.EngineerAccess`.
    on_event
        ``(kind, message)`` for failed logins and PIN changes (forwarded to the events log).
    """

    locked_changed = Signal(bool)

    def __init__(
        self,
        pin: Settings | EngineerAccess | str,
        parent: QObject | None = None,
        *,
        on_event: Callable[[str, str], None] | None = None,
    ) -> None:
        super().__init__(parent)
        if isinstance(pin, EngineerAccess):
            self.access = pin
        else:
            record = pin.engineer_pin if isinstance(pin, Settings) else str(pin)
            path = pin.path if isinstance(pin, Settings) else None
            target = path if path is not None else default_settings_path()
            self.access = EngineerAccess(
                record, persist=lambda rec: save_pin_record(target, rec), on_event=on_event
            )
        self._locked = True

    @property
    def locked(self) -> bool:
        return self._locked

    @property
    def has_pin(self) -> bool:
        return self.access.has_pin

    def try_unlock(self, pin: str) -> LoginResult:
        """Check ``pin``; unlock when right. The result says why not (wrong, wait N s, no PIN)."""
        result = self.access.check(pin)
        if result.ok:
            self._set(False)
        return result

    def unlock(self, pin: str) -> bool:
        """True and unlocked when ``pin`` is right; a wrong PIN changes nothing but the count."""
        return self.try_unlock(pin).ok

    def set_first_pin(self, pin: str) -> LoginResult:
        """Set the PIN when none is set yet; the engineer who set it is then unlocked."""
        if self.access.has_pin:
            return LoginResult(False, "A PIN is already set.")
        result = self.access.set_pin(pin)
        if result.ok:
            self._set(False)
        return result

    def grant(self, other: EngineerLock) -> None:
        """Carry an unlocked state over from ``other`` (a window replaced while unlocked)."""
        if not other.locked:
            self._set(False)

    def unlock_trusted(self, reason: str) -> None:
        """Unlock without a PIN, for the station's own tooling (``gui --screenshot``): whoever
        runs it from the command line can edit settings.toml anyway. Logged with ``reason``."""
        log.info("engineer mode opened without a PIN: %s", reason)
        self._set(False)

    def lock(self) -> None:
        self._set(True)

    def _set(self, locked: bool) -> None:
        if locked != self._locked:
            self._locked = locked
            self.locked_changed.emit(locked)


class PinDialog(QDialog):
    """Asks for the PIN and tries it; stays open with a message on a wrong PIN.

    With no PIN set yet it asks for a new PIN twice instead and sets it (the first engineer
    login); ``setting_pin`` tells which of the two it is.
    """

    def __init__(self, lock: EngineerLock, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._lock = lock
        self.setting_pin = not lock.has_pin
        self.setWindowTitle("Set the engineer PIN" if self.setting_pin else "Engineer mode")
        self.pin_edit = QLineEdit(self)
        self.pin_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.repeat_edit = QLineEdit(self)
        self.repeat_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.repeat_edit.setPlaceholderText("repeat the new PIN")
        self.repeat_edit.setVisible(self.setting_pin)
        if self.setting_pin:
            self.pin_edit.setPlaceholderText("new engineer PIN")
            text = (
                "No engineer PIN is set on this station yet. Choose one (at least 4 characters);"
                " it will be needed to edit rules, zones and models."
            )
        else:
            self.pin_edit.setPlaceholderText("engineer PIN")
            text = "Enter the engineer PIN to edit rules, zones and models."
        self.message = QLabel(text, self)
        self.message.setWordWrap(True)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        buttons.accepted.connect(self.try_pin)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.message)
        layout.addWidget(self.pin_edit)
        layout.addWidget(self.repeat_edit)
        layout.addWidget(buttons)

    def try_pin(self) -> None:
        if self.setting_pin:
            self._set_pin()
            return
        result = self._lock.try_unlock(self.pin_edit.text())
        if result.ok:
            self.accept()
        else:
            self.pin_edit.clear()
            self.message.setText(result.message)

    def _set_pin(self) -> None:
        pin, again = self.pin_edit.text(), self.repeat_edit.text()
        self.pin_edit.clear()
        self.repeat_edit.clear()
        if pin != again:
            self.message.setText("The two PINs differ. Nothing was set.")
            return
        result = self._lock.set_first_pin(pin)
        if result.ok:
            self.accept()
        else:
            self.message.setText(result.message)
