"""Configs, registries, errors, checkpoints and the training loop."""
