"""What every room uses: cached boto3 clients (aws.py), the typed errors (errors.py), retry rules and
task options (retry.py), waits on an injectable clock (waiting.py), run loggers, transfer progress,
the state folder and the purpose tag.

May import: no other room of tasks/ (the standard library, boto3, botocore, prefect). Never flows/ or
emulator/.
"""
