"""Every benchmark still imports: an API it calls that moved or vanished fails here, not the
next time someone measures."""

import importlib.util
from pathlib import Path

import pytest

from facilflow_assets.environment import PROJECT_ROOT

BENCHMARKS = sorted((PROJECT_ROOT / "benchmarks").glob("*.py"))


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda path: path.stem)
def test_the_benchmark_imports_and_has_a_main(path: Path):
    spec = importlib.util.spec_from_file_location(f"benchmark_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # its work runs only under __main__
    assert callable(module.main)
