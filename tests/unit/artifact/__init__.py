"""Unit tests of tasks/artifact/."""
