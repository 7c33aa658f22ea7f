"""event_relay_sensor: publish the outbox's waiting lifecycle events to Kafka."""

import dagster as dg

from resources import EventsResource


@dg.sensor(
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Relays lifecycle events from the outbox to the Kafka topic; launches no runs.",
)
def event_relay_sensor(
    context: dg.SensorEvaluationContext, events: EventsResource
) -> dg.SkipReason:
    report = events.relay()
    if report is None:
        waiting = events.outbox().waiting_count()
        return dg.SkipReason(f"no broker configured: {waiting} event(s) wait in the outbox")
    if report.error:
        context.log.warning(f"{report.failed} event(s) not delivered: {report.error}")
    return dg.SkipReason(
        f"published {report.published}, {report.waiting} waiting"
        + (f" (last error: {report.error})" if report.error else "")
    )
