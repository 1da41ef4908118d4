"""Prefect flows and their command lines: release a model (release.py), clean up after a dead release or
sweep orphans (cleanup.py), roll an endpoint back on demand (rollback.py); cli.py holds what their
command lines share.

May import: any room of tasks/; never emulator/ or the serving package. Flows build no boto3 client:
they call tasks (flows/cleanup.py still does, see ARCHITECTURE.md).
"""
