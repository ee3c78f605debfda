"""Data utilities shared by training and evaluation: window placement and sampling."""
