"""The packaging promises: README's two commands, CI runs the same, the bundle spec is coherent."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_readme_opens_with_the_two_commands() -> None:
    head = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()[:15]
    commands = [line.strip() for line in head if line.strip().startswith("make ")]
    assert commands[:2] == ["make run", "make test"]


def test_ci_runs_the_readme_test_command_and_nothing_else() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert "make test" in lines
    assert not [line for line in lines if re.search(r"\b(pip|pytest|python)\b", line)]


def test_console_script_points_at_a_callable() -> None:
    target = _pyproject()["project"]["scripts"]["inspection-station"]
    module, _, func = target.partition(":")
    path = ROOT / (module.replace(".", "/") + ".py")
    tree = ast.parse(path.read_text(encoding="utf-8"))
    assert func in {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}


def test_extras_split_runtime_from_training_and_gpu() -> None:
    project = _pyproject()["project"]
    base = " ".join(project["dependencies"]).lower()
    assert "onnxruntime" in base and "opencv-python-headless" in base
    assert "tensorflow" not in base and "tensorrt" not in base
    extras = project["optional-dependencies"]
    assert any("tensorflow" in d for d in extras["train"])
    assert any(d.startswith("tensorrt") for d in extras["gpu"])
    assert any(d.startswith("cuda-python") for d in extras["gpu"])


def test_build_spec_bundles_the_station_without_tensorflow() -> None:
    source = (ROOT / "build.spec").read_text(encoding="utf-8")
    tree = ast.parse(source)  # the spec is Python: it must at least parse
    calls = {
        n.func.id: n
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    }
    analysis = calls["Analysis"]
    entry = ast.literal_eval(analysis.args[0])[0]
    assert (ROOT / entry).is_file()
    excludes = next(k.value for k in analysis.keywords if k.arg == "excludes")
    assert "tensorflow" in ast.literal_eval(excludes)


def test_bundled_resources_are_package_data() -> None:
    patterns = _pyproject()["tool"]["setuptools"]["package-data"]["resources"]
    shipped = [
        p
        for p in (ROOT / "resources").rglob("*")
        if p.is_file() and p.suffix not in {".py", ".pyc"} and "__pycache__" not in p.parts
    ]
    assert shipped, "resources/ is empty"
    for path in shipped:
        rel = path.relative_to(ROOT / "resources")
        assert any(rel.match(pat.removeprefix("**/")) for pat in patterns), f"{rel} not packaged"
