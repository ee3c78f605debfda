"""Optimizers and learning-rate schedules built from a config; importing registers ``sgd`` and ``poly``."""

from simplecv.opt.learning_rate import PolyLearningRate, make_learning_rate
from simplecv.opt.optimizer import make_optimizer, sgd

__all__ = ['PolyLearningRate', 'make_learning_rate', 'make_optimizer', 'sgd']
