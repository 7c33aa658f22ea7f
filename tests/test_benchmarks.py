"""Every benchmark still imports: an API it calls that moved or vanished fails here, not the
next time someone measures. The one that needs no built working directory, the approval
sensor's tick, also runs, at a smoke size."""

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from facilflow_assets.environment import PROJECT_ROOT

BENCHMARKS = sorted((PROJECT_ROOT / "benchmarks").glob("*.py"))


def _load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"benchmark_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # its work runs only under __main__
    return module


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda path: path.stem)
def test_the_benchmark_imports_and_has_a_main(path: Path):
    assert callable(_load(path).main)


def test_the_sensor_tick_benchmark_runs_on_a_small_registry(monkeypatch, capsys):
    sensor_tick = _load(PROJECT_ROOT / "benchmarks" / "sensor_tick.py")
    monkeypatch.setattr(sys, "argv", ["sensor_tick.py", "--versions", "12", "--pending", "3"])
    sensor_tick.main()
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (figures["versions"], figures["pending_requests"]) == (12, 3)
    assert figures["tick_s"] > 0
