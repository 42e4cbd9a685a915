"""Packaging for efficientnet (setuptools; metadata and tool settings in pyproject.toml)."""

from setuptools import setup

setup(
    packages=[
        "efficientnet",
        "efficientnet.weights",
        "efficientnet.training",
        "efficientnet.data",
        "efficientnet.bundled_weights",
    ],
    package_dir={"efficientnet.bundled_weights": "weights"},
    package_data={"efficientnet.data": ["*.json", "*.jpg"], "efficientnet.bundled_weights": ["*.h5", "*.md"]},
)
