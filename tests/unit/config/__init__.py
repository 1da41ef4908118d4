"""Unit tests of tasks/config/."""
