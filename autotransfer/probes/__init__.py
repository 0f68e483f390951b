"""Measurements of how well pretrained backbones fit a dataset (domain shift, transferability)."""
