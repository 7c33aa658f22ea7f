"""Sensors and schedules that drive the lifecycle from MLflow tags and the clock."""

import dagster as dg

from jobs import monitoring_job, serving_health_job
from sensors.approval import approval_sensor
from sensors.drift_retraining import drift_retraining_sensor
from sensors.event_relay import event_relay_sensor
from sensors.promote_tag import promote_tag_sensor
from sensors.redeploy import redeploy_sensor

all_sensors = [
    approval_sensor,
    promote_tag_sensor,
    event_relay_sensor,
    redeploy_sensor,
    drift_retraining_sensor,
]
# Each day's partition once the day is over: batch scores, then feature and prediction drift.
daily_monitoring = dg.build_schedule_from_partitioned_job(
    monitoring_job, hour_of_day=6, description="Score and check drift for yesterday's rows."
)
serving_health_every_15_minutes = dg.ScheduleDefinition(
    job=serving_health_job,
    cron_schedule="*/15 * * * *",
    description="The endpoint's last hour of requests against the SLA, every quarter hour.",
)
all_schedules = [daily_monitoring, serving_health_every_15_minutes]
