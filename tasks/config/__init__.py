"""The release configuration: the typed model loaded from YAML or flow parameters (model.py), resource
names, keys and tags (naming.py), secret references and masking (secret_values.py), and the generated
configuration reference page (reference.py).

May import: tasks.core only.
"""
