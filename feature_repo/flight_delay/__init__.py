"""Feast definitions of the flight-delay use case."""
