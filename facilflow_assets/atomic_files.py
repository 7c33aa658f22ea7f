"""Atomic file writes: readers see the old file or the new one, never half of one."""

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import polars as pl


def write_parquet_atomic(frame: pl.DataFrame, path: Path) -> Path:
    return _write_atomic(
        path, lambda tmp: frame.write_parquet(tmp, compression="zstd", statistics=True)
    )


def write_json_atomic(document: object, path: Path) -> Path:
    return write_text_atomic(json.dumps(document, indent=2), path)


def write_text_atomic(text: str, path: Path) -> Path:
    return _write_atomic(path, lambda tmp: Path(tmp).write_text(text))


def _write_atomic(path: Path, write: Callable[[str], object]) -> Path:
    """Write through a temporary file in the same folder, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp_name)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path
