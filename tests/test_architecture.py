"""The layers of docs/architecture.md hold: import-linter's contract in pyproject.toml
passes on the project, and fails on a copy of it with one upward import."""

import shutil
import subprocess
import sys
from pathlib import Path

from facilflow_assets.environment import PROJECT_ROOT

PACKAGES = ("facilflow_assets", "resources", "jobs", "sensors")


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    """`lint-imports` over the packages under `root`, with pyproject.toml's contract."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": str(Path(sys.executable).parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_project_keeps_its_layers():
    result = _lint_imports(PROJECT_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    for package in PACKAGES:
        shutil.copytree(PROJECT_ROOT / package, tmp_path / package)
    shutil.copy(PROJECT_ROOT / "pyproject.toml", tmp_path)
    scope = tmp_path / "facilflow_assets" / "scope.py"  # the foundation...
    scope.write_text(scope.read_text() + "\nimport facilflow_assets.cli  # ...imports the CLI\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0
    assert "facilflow_assets.scope -> facilflow_assets.cli" in result.stdout, result.stdout
