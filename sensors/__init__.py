"""Sensors and schedules that drive the lifecycle from MLflow tags and the clock."""

from sensors.approval import approval_sensor
from sensors.event_relay import event_relay_sensor
from sensors.promote_tag import promote_tag_sensor
from sensors.redeploy import redeploy_sensor

all_sensors = [approval_sensor, promote_tag_sensor, event_relay_sensor, redeploy_sensor]
all_schedules: list = []
