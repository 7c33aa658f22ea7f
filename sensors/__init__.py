"""Sensors and schedules that drive each use case's lifecycle from MLflow tags and the clock."""

import dagster as dg
from dagster._core.definitions.partitions.partitioned_schedule import (
    UnresolvedPartitionedAssetScheduleDefinition,
)

from facilflow_assets.scope import ModelScope
from facilflow_assets.use_case import UseCase
from jobs import UseCaseJobs
from sensors.approval import build_approval_sensor
from sensors.drift_retraining import build_drift_retraining_sensor
from sensors.promote_tag import build_promote_tag_sensor
from sensors.redeploy import build_redeploy_sensor


def build_use_case_sensors(
    use_case: UseCase, scope: ModelScope, jobs: UseCaseJobs
) -> list[dg.SensorDefinition]:
    return [
        build_approval_sensor(scope, jobs.promotion),
        build_promote_tag_sensor(use_case, scope, jobs.candidate),
        build_redeploy_sensor(scope, jobs.deployment),
        build_drift_retraining_sensor(scope, jobs.training),
    ]


def build_use_case_schedules(
    scope: ModelScope, jobs: UseCaseJobs
) -> list[dg.ScheduleDefinition | UnresolvedPartitionedAssetScheduleDefinition]:
    return [
        # Each day's partition once the day is over: batch scores, then feature and
        # prediction drift.
        dg.build_schedule_from_partitioned_job(
            jobs.monitoring,
            name=scope.definition_name("daily_monitoring"),
            hour_of_day=6,
            description="Score and check drift for yesterday's rows.",
        ),
        dg.ScheduleDefinition(
            name=scope.definition_name("serving_health_every_15_minutes"),
            job=jobs.serving_health,
            cron_schedule="*/15 * * * *",
            description="The endpoint's last hour of requests against the SLA, every quarter hour.",
        ),
    ]
