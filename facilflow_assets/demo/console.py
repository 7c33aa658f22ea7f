"""The demo's terminal: one line per stage, with everything else in a log file."""

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def quiet_console(log_path: Path) -> Iterator[Callable[[str], None]]:
    """Everything this process, and any process it starts, writes to stdout and stderr
    goes to `log_path` (Dagster's logs, the libraries' warnings and progress bars, Ray's
    workers); the function yielded writes a line to the terminal."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(saved[0]), "w", buffering=1)
    try:
        with (
            log_path.open("a", buffering=1) as log,
            contextlib.redirect_stdout(log),  # Python's own writes, whatever sys.stdout was
            contextlib.redirect_stderr(log),
        ):
            os.dup2(log.fileno(), 1)  # the libraries' and child processes' writes
            os.dup2(log.fileno(), 2)
            yield lambda line: print(line, file=terminal, flush=True)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for descriptor in saved:
            os.close(descriptor)
        terminal.close()
