"""A benchmark of benchmarks/ loaded as a module, and run in this process as its command
line would run it."""

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from facilflow_assets.environment import PROJECT_ROOT

BENCHMARKS_DIR = PROJECT_ROOT / "benchmarks"


def load_benchmark(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"benchmark_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # its work runs only under __main__
    return module


def run_benchmark(
    name: str,
    arguments: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> dict[str, object]:
    """Run benchmarks/<name>.py's main with `arguments`; the figures of its last line."""
    benchmark = load_benchmark(BENCHMARKS_DIR / f"{name}.py")
    monkeypatch.setattr(sys, "argv", [f"{name}.py", *arguments])
    assert benchmark.main() in (None, 0)
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])
