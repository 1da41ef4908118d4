"""Predictors: one forward pass over a list of inputs for a Hugging Face model folder, per task."""
