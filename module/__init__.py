"""FactSeg and its parts; importing this package registers the model in ``MODEL``."""

from module import factseg  # noqa: F401  (registers 'FactSeg')
