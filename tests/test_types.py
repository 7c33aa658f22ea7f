"""The type check of make lint: basedpyright, with pyrightconfig.json, finds no error in the
packages, and finds the ones put into a copy of them (a wrong resource, a scope given as a
name, a scope's property misspelt)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

from facilflow_assets.environment import PROJECT_ROOT

PACKAGES = ("facilflow_assets", "resources", "jobs", "sensors")
CONFIG = "pyrightconfig.json"


def _basedpyright(root: Path, *files: Path) -> dict:
    """basedpyright's JSON report on the project under `root` (only `files`, if given)."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "basedpyright"), "--outputjson", *map(str, files)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
    )
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        problem = f"basedpyright did not report: {result.stdout}{result.stderr}"
        raise AssertionError(problem) from None


def _errors(report: dict) -> list[tuple[Path, int, str]]:
    """Each error as (file, line counted from 1, rule)."""
    return [
        (Path(d["file"]), d["range"]["start"]["line"] + 1, d.get("rule", ""))
        for d in report["generalDiagnostics"]
        if d["severity"] == "error"
    ]


def _described(report: dict) -> str:
    return "\n".join(
        f"{d['file']}:{d['range']['start']['line'] + 1}: {d['message']} ({d.get('rule')})"
        for d in report["generalDiagnostics"]
    )


def test_the_packages_type_check():
    report = _basedpyright(PROJECT_ROOT)
    assert report["summary"]["errorCount"] == 0, _described(report)
    modules = [p for package in PACKAGES for p in (PROJECT_ROOT / package).rglob("*.py")]
    assert report["summary"]["filesAnalyzed"] >= len(modules)


def _append(module: Path, code: str) -> dict[str, int]:
    """Append `code` to `module`; the line number of each of its lines that ends in a
    `# wrong: <name>` comment, by name."""
    before = module.read_text()
    module.write_text(before + code)
    first = before.count("\n") + 1
    return {
        line.split("# wrong: ")[1]: first + offset
        for offset, line in enumerate(code.split("\n"))
        if "# wrong: " in line
    }


def test_a_wrong_resource_or_scope_fails_the_check(tmp_path):
    for package in PACKAGES:
        shutil.copytree(PROJECT_ROOT / package, tmp_path / package)
    config = json.loads((PROJECT_ROOT / CONFIG).read_text())
    (tmp_path / CONFIG).write_text(json.dumps({**config, "venvPath": str(PROJECT_ROOT)}))
    approval = tmp_path / "sensors" / "approval.py"
    asset_keys = tmp_path / "facilflow_assets" / "asset_keys.py"
    in_sensor = _append(
        approval,
        """

def _miswired(
    context: dg.SensorEvaluationContext,
    scope: ModelScope,
    mlflow: MlflowResource,
    events: EventsResource,
) -> dg.SensorResult:
    return review_approvals(context, scope, mlflow, mlflow, events)  # wrong: resource


def _misread(scope: ModelScope) -> str:
    return scope.registred_model_name  # wrong: property
""",
    )
    in_keys = _append(asset_keys, '\nUNSCOPED = UseCaseKeys("demo")  # wrong: scope\n')
    report = _basedpyright(tmp_path, approval, asset_keys)
    errors = _errors(report)
    expected = [
        (approval, in_sensor["resource"], "reportArgumentType"),
        (approval, in_sensor["property"], "reportAttributeAccessIssue"),
        (asset_keys, in_keys["scope"], "reportArgumentType"),
    ]
    for error in expected:
        assert error in errors, _described(report)
    assert len(errors) == len(expected), _described(report)
