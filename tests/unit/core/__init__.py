"""Unit tests of tasks/core/."""
