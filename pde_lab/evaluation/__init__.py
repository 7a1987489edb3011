"""Metrics and the comparison of trained models against ground truth."""
from .evaluate import evaluate, format_metrics
from .metrics import compute_metrics, summarize

__all__ = ["evaluate", "format_metrics", "compute_metrics", "summarize"]
