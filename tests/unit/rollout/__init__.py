"""Unit tests of tasks/rollout/."""
