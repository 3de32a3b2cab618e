"""Metrics, threshold selection and scoring summaries (host-side numpy, and on-device AUC)."""
