"""Training: tuned models tracked in MLflow, and the views people compare them in."""
