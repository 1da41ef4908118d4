"""Whole flows on the local stack."""
