"""Prefect tasks: thin wrappers over ``recsys.pipeline`` that add retries, logging and artifacts."""
