"""Sensors and schedules that drive the lifecycle from MLflow tags and the clock."""

from sensors.approval import approval_sensor

all_sensors = [approval_sensor]
all_schedules: list = []
