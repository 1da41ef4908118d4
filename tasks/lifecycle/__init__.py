"""What a release owns and how it is undone: the ledger (ledger.py, kinds.py), ownership and adoption
(ownership.py), the unwind's deleters (unwind.py), one release per endpoint (lock.py), retiring older
releases (retention.py) and rollback on demand (rollback.py).

May import: tasks.core, tasks.config; unwind, retention and rollback also import tasks.artifact,
tasks.image and tasks.sagemaker, which import the ledger back (a room cycle: ARCHITECTURE.md).
"""
