"""Evaluation: metrics and plots of decoded modalities."""
