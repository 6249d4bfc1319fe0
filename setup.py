"""Package layout that pyproject.toml cannot express: the top-level ``conf/`` tree ships as ``lightdet.conf``."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages("src"), "lightdet.conf"],
    package_dir={"": "src", "lightdet.conf": "conf"},
)
