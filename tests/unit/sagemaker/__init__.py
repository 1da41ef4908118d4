"""Unit tests of tasks/sagemaker/."""
