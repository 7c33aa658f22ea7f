"""Sensors and schedules that drive the lifecycle from MLflow tags and the clock."""

all_sensors: list = []
all_schedules: list = []
