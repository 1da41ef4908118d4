"""Unit tests of tasks/report/."""
