"""Unit tests of tasks/checks/."""
