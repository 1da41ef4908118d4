"""Unit tests of flows/: the command lines and what the flows decide before calling tasks."""
