"""Prefect flows: release a model, clean up after a dead release."""
