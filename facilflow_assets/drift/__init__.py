"""The drift test: its per-column statistics, their thresholds calibrated on the training
days, and the reference each model version is tested against, logged at its evaluation."""
