"""Lifecycle events: the outbox they are written to, and the Kafka topic they are relayed to."""

from collections.abc import Iterable

from dagster import ConfigurableResource
from pydantic import Field

from facilflow_assets.events.envelope import LifecycleEvent
from facilflow_assets.events.outbox import Outbox
from facilflow_assets.events.relay import RelayReport, relay

DEFAULT_TOPIC = "facilflow.lifecycle"


class EventsResource(ConfigurableResource):
    """Events are stored in the outbox first; the relay publishes them when a broker is set."""

    outbox_url: str = Field(
        description="SQLAlchemy URL of the outbox: sqlite:///path locally, postgresql://... in prod"
    )
    bootstrap_servers: str = Field(
        default="", description="Kafka bootstrap servers; empty keeps events in the outbox."
    )
    topic: str = Field(default=DEFAULT_TOPIC, description="The lifecycle events topic.")

    def outbox(self) -> Outbox:
        return Outbox(self.outbox_url)

    def record(self, events: Iterable[LifecycleEvent]) -> int:
        """Store `events` in one transaction; returns how many were new."""
        return self.outbox().append(events)

    def relay(self) -> RelayReport | None:
        """Publish what waits; None when no broker is configured."""
        if not self.bootstrap_servers:
            return None
        return relay(self.outbox(), self.bootstrap_servers, self.topic)
