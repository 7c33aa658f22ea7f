"""Registered model versions of the use case and their stages."""
