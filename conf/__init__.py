"""Hydra configuration tree, shipped inside the package as ``lightdet.conf``."""
