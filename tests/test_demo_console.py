"""The demo's terminal shows its stage lines alone; everything else, from this process and
the processes it starts, lands in the log file."""

import logging
import subprocess
import sys

from facilflow_assets.demo.console import quiet_console
from facilflow_assets.demo.run import Stopwatch, model_line


def test_the_terminal_gets_the_stage_lines_and_the_log_file_the_rest(tmp_path, capfd):
    log_path = tmp_path / "logs" / "demo.log"
    # A handler made before, on the process's stderr, as Dagster's console logger is.
    noisy = logging.getLogger("noisy")
    handler = logging.StreamHandler(sys.__stderr__)
    noisy.addHandler(handler)
    with quiet_console(log_path) as progress:
        sys.stdout.write("a print\n")
        noisy.warning("a library's warning")
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; print('child out'); print('child err', file=sys.stderr)",
            ],
            check=True,
        )
        Stopwatch(progress).lap("warehouse", "6 tables")
    noisy.removeHandler(handler)
    terminal = capfd.readouterr()
    assert terminal.err == ""
    lines = terminal.out.splitlines()
    assert len(lines) == 1, terminal.out
    [line] = lines
    assert line.split() == ["warehouse", "0", "s", "6", "tables"]
    logged = log_path.read_text()
    for noise in ("a print", "a library's warning", "child out", "child err"):
        assert noise in logged
    sys.stdout.write("after\n")  # the terminal is back
    assert capfd.readouterr().out == "after\n"


def test_a_models_line_names_its_metric_against_the_baseline_and_its_version():
    regression = {
        "rmse": 37.9221,
        "baseline_rmse": 39.9242,
        "baseline": "route-hour mean",
        "version": "1",
        "stage": "Staging",
    }
    assert model_line(regression) == (
        "holdout RMSE 37.922 vs 39.924 (route-hour mean); version 1 in Staging"
    )
    failed = {"auc": 0.61, "baseline_auc": 0.66, "baseline": "carrier-hour rate"}
    assert model_line(failed).endswith("; not registered")
    assert model_line({}) == "not evaluated: its run failed (see the log)"
