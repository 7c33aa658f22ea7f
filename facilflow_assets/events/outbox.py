"""The outbox: lifecycle events stored durably before any broker sees them.

A step appends its events in one transaction (sqlite by default, PostgreSQL in prod); the
relay publishes what waits and marks it. An event id is unique here, so a step or sensor
tick that runs again appends nothing new. Published events are kept: after a broker loses
messages it had acknowledged, `republish` sends a time range again.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql, sqlite

from facilflow_assets.events.envelope import LifecycleEvent

_metadata = sa.MetaData()
outbox_table = sa.Table(
    "lifecycle_outbox",
    _metadata,
    sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
    sa.Column("event_id", sa.String(36), nullable=False, unique=True),
    sa.Column("event_type", sa.String(64), nullable=False),
    sa.Column("tenant", sa.String(64), nullable=False),
    sa.Column("message_key", sa.String(255), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("published_at", sa.DateTime(timezone=True)),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("last_error", sa.Text),
    sa.Index("lifecycle_outbox_waiting", "published_at", "seq"),
)


@dataclass(frozen=True)
class StoredEvent:
    seq: int
    event_id: str
    event_type: str
    message_key: str
    body: str
    attempts: int


@cache
def _engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        database = sa.engine.make_url(url).database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # Writers from several processes (daemon, runs, CLI) wait for each other.
        engine = sa.create_engine(url, connect_args={"timeout": 30})
        sa_event.listen(engine, "connect", lambda conn, _: conn.execute("PRAGMA journal_mode=WAL"))
    else:
        engine = sa.create_engine(url, pool_pre_ping=True)
    _metadata.create_all(engine)
    return engine


class Outbox:
    """The events table at a SQLAlchemy URL (sqlite:///path or postgresql://...)."""

    def __init__(self, url: str):
        self.url = url
        self.engine = _engine(url)

    def append(self, events: Iterable[LifecycleEvent]) -> int:
        """Store `events` in one transaction; returns how many were new."""
        now = datetime.now(UTC)
        rows = [
            {
                "event_id": str(event.event_id),
                "event_type": event.type.value,
                "tenant": event.tenant,
                "message_key": event.key,
                "body": event.to_json(),
                "created_at": now,
            }
            for event in events
        ]
        if not rows:
            return 0
        insert = (postgresql if self.engine.dialect.name == "postgresql" else sqlite).insert
        statement = insert(outbox_table).on_conflict_do_nothing(index_elements=["event_id"])
        with self.engine.begin() as connection:
            return sum(connection.execute(statement, row).rowcount for row in rows)

    def waiting(self, limit: int) -> list[StoredEvent]:
        """The oldest unpublished events, in the order they were stored."""
        return self._select(outbox_table.c.published_at.is_(None), limit)

    def stored(self, after_seq: int, limit: int) -> list[StoredEvent]:
        """Events stored after `after_seq`, published or not, in the order they were stored."""
        return self._select(outbox_table.c.seq > after_seq, limit)

    def newest_seq(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(sa.select(sa.func.max(outbox_table.c.seq))).scalar() or 0

    def _select(self, condition, limit: int) -> list[StoredEvent]:
        columns = [outbox_table.c[name] for name in StoredEvent.__dataclass_fields__]
        query = sa.select(*columns).where(condition).order_by(outbox_table.c.seq).limit(limit)
        with self.engine.connect() as connection:
            return [StoredEvent(**row._mapping) for row in connection.execute(query)]

    def mark_published(self, seqs: Sequence[int]) -> None:
        if seqs:
            self._update(seqs, published_at=datetime.now(UTC), last_error=None)

    def mark_failed(self, seqs: Sequence[int], error: str) -> None:
        if seqs:
            self._update(seqs, attempts=outbox_table.c.attempts + 1, last_error=error)

    def _update(self, seqs: Sequence[int], **values) -> None:
        statement = outbox_table.update().where(outbox_table.c.seq.in_(seqs)).values(**values)
        with self.engine.begin() as connection:
            connection.execute(statement)

    def republish(self, since: datetime, tenant: str | None = None) -> int:
        """Send again every event stored since `since` (of `tenant`, or all): for a broker
        that lost messages it had acknowledged. Consumers drop the repeats by event id."""
        statement = (
            outbox_table.update()
            .where(outbox_table.c.created_at >= since, outbox_table.c.published_at.is_not(None))
            .values(published_at=None)
        )
        if tenant is not None:
            statement = statement.where(outbox_table.c.tenant == tenant)
        with self.engine.begin() as connection:
            return connection.execute(statement).rowcount

    def waiting_count(self, tenant: str | None = None) -> int:
        query = sa.select(sa.func.count()).where(outbox_table.c.published_at.is_(None))
        if tenant is not None:
            query = query.where(outbox_table.c.tenant == tenant)
        with self.engine.connect() as connection:
            return connection.execute(query).scalar_one()
