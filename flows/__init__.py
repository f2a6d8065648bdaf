"""Prefect flows: wiring and parameters only."""
