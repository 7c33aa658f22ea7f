"""FacilFlow: the machine-learning lifecycle as Dagster software-defined assets."""
