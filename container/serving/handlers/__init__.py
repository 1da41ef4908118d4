"""Served models: a Hugging Face folder (batched predictor) or a SageMaker-style code/inference.py."""
