"""Reading the lifecycle events as a person or a test does: every event once, by event id,
from the topic, or from the outbox where no broker is configured."""

import time
import uuid
from collections.abc import Iterator

from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, TopicPartition

from facilflow_assets.events.envelope import EventError, LifecycleEvent
from facilflow_assets.events.outbox import Outbox

OUTBOX_POLL_S = 1.0


class _Parser:
    """Counts what is not a lifecycle event instead of failing on it."""

    skipped = 0
    first_problem = ""

    def _parse(self, value: str | bytes | None) -> LifecycleEvent | None:
        try:
            if value is None:  # a Kafka message may have no value
                raise EventError("not a lifecycle event: the message has no value")
            return LifecycleEvent.from_json(value)
        except EventError as error:
            self.skipped += 1
            self.first_problem = self.first_problem or str(error)
            return None


class OutboxReader(_Parser):
    """The outbox read as the topic would be: every event recorded, published or still
    waiting, oldest first (or only those stored from now on)."""

    def __init__(self, outbox: Outbox, from_beginning: bool = True):
        self.outbox = outbox
        self._after = 0 if from_beginning else outbox.newest_seq()

    def events(self, follow: bool = False) -> Iterator[LifecycleEvent]:
        while True:
            rows = self.outbox.stored(self._after, limit=500)
            for row in rows:
                self._after = row.seq
                event = self._parse(row.body)
                if event is not None:
                    yield event
            if not rows:
                if not follow:
                    return
                time.sleep(OUTBOX_POLL_S)

    def __enter__(self) -> "OutboxReader":
        return self

    def __exit__(self, *_exc) -> None:
        pass


class EventReader(_Parser):
    """Reads `topic` from the start (or only what arrives from now), dropping repeats.

    It reads every partition directly, with no consumer group, so nothing is committed and
    any number of readers can look at once. Messages that are not lifecycle events are
    counted in `skipped` with the first problem in `first_problem`; repeats of an event
    already read (a relay may send one twice) in `duplicates`.
    """

    def __init__(self, bootstrap_servers: str, topic: str, from_beginning: bool = True):
        self.topic = topic
        self.skipped = 0
        self.duplicates = 0
        self.first_problem = ""
        self._seen: set[uuid.UUID] = set()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap_servers,
                "group.id": f"facilflow-reader-{uuid.uuid4()}",
                "enable.auto.commit": False,
            }
        )
        metadata = self._consumer.list_topics(topic, timeout=10).topics[topic]
        if metadata.error is not None:
            self._consumer.close()
            raise EventError(f"cannot read topic {topic}: {metadata.error.str()}")
        partitions = metadata.partitions
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        self._consumer.assign([TopicPartition(topic, p, start) for p in partitions])

    def events(self, idle_s: float = 2.0, follow: bool = False) -> Iterator[LifecycleEvent]:
        """Events as they come; stops after `idle_s` without a message unless following."""
        last = time.monotonic()
        while follow or time.monotonic() - last < idle_s:
            for message in self._consumer.consume(500, 0.5):
                if message.error():
                    continue  # end-of-partition notices and transient broker errors
                last = time.monotonic()
                event = self._parse(message.value())
                if event is None:
                    continue
                if event.event_id in self._seen:
                    self.duplicates += 1
                    continue
                self._seen.add(event.event_id)
                yield event

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> "EventReader":
        return self

    def __exit__(self, *_exc) -> None:
        self.close()
