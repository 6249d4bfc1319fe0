"""Class lists and class matching, kept importable here: they live in :mod:`lightdet.categories`, below
both ``lightdet.data`` and ``lightdet.evaluation``."""

from lightdet.categories import ClassesSpec, load_class_names, match_categories

__all__ = ["ClassesSpec", "load_class_names", "match_categories"]
