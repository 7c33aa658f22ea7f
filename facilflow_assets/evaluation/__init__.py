"""Evaluation of a trained candidate against the baseline on the holdout months."""
