"""The code is ruff clean, as `make lint` checks, and a call from it to anything deprecated
fails the suite (pyproject.toml's filterwarnings)."""

import subprocess
import sys

import dagster as dg
import pytest

from facilflow_assets.environment import PROJECT_ROOT


def test_ruff_reports_nothing():
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "."],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout


def test_a_deprecated_call_from_the_projects_code_is_an_error():
    context = dg.build_init_resource_context()
    with pytest.raises(DeprecationWarning, match="dagster_run is deprecated"):
        context.dagster_run  # noqa: B018 - reading the deprecated property is the call
