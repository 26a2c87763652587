"""Evaluation: zero-shot MCQA through lm-evaluation-harness with the project's own task definitions."""
