"""The relay: publish what waits in the outbox to Kafka and mark what the broker acknowledged.

The producer is idempotent with acks=all. An event is marked published only on its delivery
report; anything else stays waiting and goes again on the next pass, so a relay that dies
between sending and marking may send an event twice, and consumers drop repeats by event id.
"""

from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # pyright: ignore[reportPrivateImportUsage]  # public, re-exported without __all__

from facilflow_assets.events.outbox import Outbox, StoredEvent


@dataclass(frozen=True)
class RelayReport:
    published: int
    failed: int
    waiting: int
    error: str = ""  # the last delivery error, when any event failed


def producer_config(bootstrap_servers: str, timeout_s: float) -> dict[str, object]:
    return {
        "bootstrap.servers": bootstrap_servers,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        # An unreachable broker fails a delivery within the pass instead of stalling it.
        "message.timeout.ms": int(timeout_s * 1000),
        "socket.connection.setup.timeout.ms": int(timeout_s * 1000),
    }


def ensure_topic(bootstrap_servers: str, topic: str, timeout_s: float) -> None:
    """Create `topic` with one partition if the broker does not have it yet."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    if topic in admin.list_topics(timeout=timeout_s).topics:
        return
    future = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic]
    try:
        future.result(timeout=timeout_s)
    except KafkaException as error:
        if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise


def relay(
    outbox: Outbox,
    bootstrap_servers: str,
    topic: str,
    batch_size: int = 1000,
    timeout_s: float = 10.0,
) -> RelayReport:
    """Publish waiting events in batches, oldest first, until none wait or a batch fails."""
    try:
        ensure_topic(bootstrap_servers, topic, timeout_s)
    except KafkaException as error:
        return RelayReport(0, 0, outbox.waiting_count(), f"broker unreachable: {error}")
    producer = Producer(producer_config(bootstrap_servers, timeout_s))
    published = failed = 0
    error = ""
    while batch := outbox.waiting(batch_size):
        delivered, errors = _send(producer, topic, batch, timeout_s)
        outbox.mark_published(delivered)
        acknowledged = set(delivered)
        failures = [event.seq for event in batch if event.seq not in acknowledged]
        if failures:
            error = errors[-1] if errors else f"no delivery report within {timeout_s:g}s"
            outbox.mark_failed(failures, error)
        published += len(delivered)
        failed += len(failures)
        if failures:
            break  # the broker is struggling: leave the rest for the next pass
    return RelayReport(published, failed, outbox.waiting_count(), error)


def _send(
    producer: Producer, topic: str, batch: list[StoredEvent], timeout_s: float
) -> tuple[list[int], list[str]]:
    delivered: list[int] = []
    errors: list[str] = []

    def report(seq: int):
        def on_delivery(err, _message) -> None:
            if err is None:
                delivered.append(seq)
            else:
                errors.append(str(err))

        return on_delivery

    for event in batch:
        while True:
            try:
                producer.produce(
                    topic,
                    key=event.message_key.encode(),
                    value=event.body.encode(),
                    headers={"event_id": event.event_id, "event_type": event.event_type},
                    on_delivery=report(event.seq),
                )
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.1)
        producer.poll(0)
    producer.flush(timeout_s * 2)
    return delivered, errors
