"""Unit tests of tasks/lifecycle/."""
