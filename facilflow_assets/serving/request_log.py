"""The request log: every served request, appended off the hot path to daily parquet files.

A request only puts a record in memory; a background thread writes what has gathered every
`flush_seconds` as one file per flush, `<root>/date=YYYY-MM-DD/<writer>-<n>.parquet`,
written atomically. Monitoring reads the day's folder as one table.
"""

import itertools
import threading
import uuid
from collections import deque
from collections.abc import Set
from datetime import UTC, datetime
from pathlib import Path

import polars as pl

from facilflow_assets.atomic_files import write_parquet_atomic

RECORD_SCHEMA = {
    "time": pl.Datetime("us", "UTC"),
    "request_id": pl.String,
    "model": pl.String,
    "model_version": pl.String,
    "role": pl.String,
    "outcome": pl.String,  # ok | invalid | error
    "status": pl.Int32,
    "latency_ms": pl.Float64,
    "prediction": pl.Float64,
    "error": pl.String,
}


class RequestLog:
    """Appends records of a fixed schema plus one column per feature: Float64, or text for
    the `categorical` ones."""

    def __init__(
        self,
        root: Path,
        feature_names: list[str],
        flush_seconds: float = 1.0,
        categorical: Set[str] = frozenset(),
    ):
        self.root = root
        self.schema = {
            **RECORD_SCHEMA,
            **{n: pl.String if n in categorical else pl.Float64 for n in feature_names},
        }
        self._pending: deque[dict] = deque()
        self._writer = f"{uuid.uuid4().hex[:12]}"
        self._sequence = itertools.count()
        self._stop = threading.Event()
        self._flush_lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._run, args=(flush_seconds,), name="request-log", daemon=True
        )
        self._thread.start()

    def append(self, record: dict) -> None:
        """Queue one request's record (`time` is set here if absent); never blocks on I/O."""
        record.setdefault("time", datetime.now(UTC))
        self._pending.append(record)

    def flush(self) -> int:
        """Write what is queued now; returns how many records were written."""
        with self._flush_lock:
            records = [self._pending.popleft() for _ in range(len(self._pending))]
            if not records:
                return 0
            frame = pl.DataFrame(records, schema=self.schema)
            for (day,), rows in frame.group_by(pl.col("time").dt.date(), maintain_order=True):
                name = f"{self._writer}-{next(self._sequence):06d}.parquet"
                write_parquet_atomic(rows, self.root / f"date={day}" / name)
            return len(records)

    def _run(self, flush_seconds: float) -> None:
        while not self._stop.wait(flush_seconds):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.flush()


def read_requests(root: Path, day: str) -> pl.DataFrame:
    """Every logged request of `day` (YYYY-MM-DD, UTC); an empty frame if none."""
    folder = root / f"date={day}"
    files = sorted(folder.glob("*.parquet")) if folder.exists() else []
    if not files:
        return pl.DataFrame(schema=RECORD_SCHEMA)
    return pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")
