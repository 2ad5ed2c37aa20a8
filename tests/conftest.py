"""Shared fixtures. Qt runs offscreen unless --headed; real DAGM data is read from ../shared."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DAGM_CLASS1 = ROOT.parent / "shared" / "data" / "dagm2007" / "Class1" / "Test"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--headed", action="store_true", help="show Qt windows (needs a display)")


def pytest_configure(config: pytest.Config) -> None:
    if not config.getoption("--headed"):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    # TensorFlow chatter and oneDNN notes drown test output; keep errors only.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def dagm_class1() -> Path:
    """The real DAGM 2007 Class1 test split, or a skip that says where it was looked for."""
    if not (DAGM_CLASS1 / "Label" / "Labels.txt").is_file():
        pytest.skip(
            f"DAGM 2007 Class1 data not found at {DAGM_CLASS1} (see ../shared/data/README.md)"
        )
    return DAGM_CLASS1


@pytest.fixture(scope="session")
def resources_dir() -> Path:
    return ROOT / "resources"
