"""Inference helpers: the batched, banded sliding-window predictor and the CPU fast path."""
