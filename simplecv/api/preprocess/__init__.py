"""NumPy transforms at the import paths SimpleCV configs use (``simplecv.api.preprocess.segm``)."""

from simplecv.api.preprocess import comm, segm

__all__ = ['comm', 'segm']
