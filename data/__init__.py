"""Data sets and loaders; importing this package registers ``ISAIDSegmmDataLoader``."""

from data import isaid

__all__ = ['isaid']
