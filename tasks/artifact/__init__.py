"""The model from its source to S3: download (model_source.py), deterministic packaging and parallel
gzip (packaging.py, parallel_gzip.py, package_cache.py), content-addressed upload (storage.py), and
references that keep shared model data alive (model_refs.py).

May import: tasks.core, tasks.config, and tasks.lifecycle's ledger and kinds (to record what it writes).
"""
