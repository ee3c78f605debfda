"""Moved to :mod:`simplecv.io`; only :mod:`simplecv.inference.sliding_window` still imports from here.

Delete this file once that module imports ``ArrayImage`` from :mod:`simplecv.io.images`.
"""
from simplecv.io.images import ArrayImage, RasterImage  # noqa: F401
