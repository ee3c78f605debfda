"""SimpleCV-style building blocks for FactSeg-Paddle: configs, registries, encoder, engine.

Nothing in this package knows FactSeg by name; the model lives in :mod:`module`.
"""
