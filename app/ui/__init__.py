"""The station GUI (PySide6 + pyqtgraph): a thin shell over ``app.station``. See docs/gui.md.

Names are resolved lazily so that importing one module (e.g. the bridge in a test) does not pull
in every panel and pyqtgraph.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["MainWindow", "SessionBridge", "run_gui"]

_WHERE = {
    "MainWindow": "app.ui.main_window",
    "SessionBridge": "app.ui.bridge",
    "run_gui": "app.ui.app",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'app.ui' has no attribute {name!r}")
