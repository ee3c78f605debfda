"""User-facing helpers: building models from configs, preprocessing transforms."""
