"""The engine: builders from config, the training launcher, hooks and the evaluator."""
