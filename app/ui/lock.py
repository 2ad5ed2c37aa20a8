"""Engineer-mode lock: operators see the live view; editing needs the engineer PIN."""

from __future__ import annotations

import hmac

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)


class EngineerLock(QObject):
    """Holds the locked state; the PIN comes from ``Settings.engineer_pin``.

    The station starts locked: a line operator walking up to it must not be one click away from
    moving a threshold. An empty PIN in the settings means the site chose not to lock, so the
    station then starts unlocked and ``lock()`` stays possible but any PIN (even empty) unlocks.
    """

    locked_changed = Signal(bool)

    def __init__(self, pin: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pin = str(pin)
        self._locked = bool(self._pin)

    @property
    def locked(self) -> bool:
        return self._locked

    def unlock(self, pin: str) -> bool:
        """True and unlocked when ``pin`` is right; a wrong PIN changes nothing."""
        # compare_digest so the time taken does not tell how many leading digits were right
        if self._pin and not hmac.compare_digest(pin.encode(), self._pin.encode()):
            return False
        self._set(False)
        return True

    def lock(self) -> None:
        self._set(True)

    def _set(self, locked: bool) -> None:
        if locked != self._locked:
            self._locked = locked
            self.locked_changed.emit(locked)


class PinDialog(QDialog):
    """Asks for the PIN and tries it; stays open with a message on a wrong PIN."""

    def __init__(self, lock: EngineerLock, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Engineer mode")
        self._lock = lock
        self.pin_edit = QLineEdit(self)
        self.pin_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.pin_edit.setPlaceholderText("engineer PIN")
        self.message = QLabel("Enter the engineer PIN to edit rules, zones and models.", self)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        buttons.accepted.connect(self.try_pin)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.message)
        layout.addWidget(self.pin_edit)
        layout.addWidget(buttons)

    def try_pin(self) -> None:
        if self._lock.unlock(self.pin_edit.text()):
            self.accept()
        else:
            self.pin_edit.clear()
            self.message.setText("Wrong PIN. Still locked.")
