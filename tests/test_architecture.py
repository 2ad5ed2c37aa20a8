"""The layering rules of ARCHITECTURE.md, checked by import-linter with pyproject's contracts.

The second test runs the same contracts over a small throwaway tree that breaks each of them, so a
misconfigured checker (wrong root packages, a contract that matches nothing) cannot pass silently.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def contract_names() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return [c["name"] for c in config["tool"]["importlinter"]["contracts"]]


def lint_imports(cwd: Path, *, pythonpath: Path) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.is_file():
        pytest.fail(f"lint-imports not found beside {sys.executable}; install the 'dev' extra")
    env = dict(os.environ, PYTHONPATH=str(pythonpath))
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", "pyproject.toml", "--no-cache", "--no-logo"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_project_keeps_every_import_contract() -> None:
    names = contract_names()
    assert len(names) >= 4
    proc = lint_imports(ROOT, pythonpath=ROOT)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report
    for name in names:
        assert re.search(rf"{re.escape(name)}\s+KEPT", report), f"{name!r} not reported kept"
    assert f"Contracts: {len(names)} kept, 0 broken" in report


# module path -> source; each line breaks one contract of pyproject.toml
VIOLATIONS = {
    "app/__init__.py": "",
    "app/ui/__init__.py": "",
    "app/station/__init__.py": "",
    "app/station/qt_in_core.py": "import PySide6.QtCore\n",
    "app/station/tf_in_app.py": "import tensorflow\n",
    "app/station/ui_in_core.py": "import app.ui\n",
    "app/ui/engines_in_ui.py": "import engines\n",
    "engines/__init__.py": "",
    "engines/station_in_engines.py": "from app.station import qt_in_core\n",
    "training/__init__.py": "",
}


def test_the_checker_fails_on_a_tree_that_breaks_the_contracts(tmp_path: Path) -> None:
    for rel, text in VIOLATIONS.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    proc = lint_imports(tmp_path, pythonpath=tmp_path)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 1, report
    for name in contract_names():
        assert re.search(rf"{re.escape(name)}\s+BROKEN", report), f"{name!r} not broken:\n{report}"
    assert "app.station.qt_in_core -> PySide6" in report  # it names the offending import
