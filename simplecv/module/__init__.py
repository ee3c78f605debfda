"""Backbone building blocks: the ResNet encoder and the FPN."""
