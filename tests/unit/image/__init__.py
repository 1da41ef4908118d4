"""Unit tests of tasks/image/."""
