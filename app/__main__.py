"""``python -m app ...`` is the ``inspection-station`` command (see :mod:`app.cli`)."""

from __future__ import annotations

import sys

from app.cli import main

if __name__ == "__main__":
    sys.exit(main())
