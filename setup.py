#!/usr/bin/env python
"""reid2: person re-identification and person search on Detectron2."""
import re
from pathlib import Path

from setuptools import find_packages, setup


def get_version():
    text = (Path(__file__).parent / "reid2" / "__init__.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"', text, re.M).group(1)


setup(
    name="reid2",
    version=get_version(),
    description="Person re-identification and end-to-end person search on Detectron2",
    packages=find_packages(include=("reid2", "reid2.*")),
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.0",
        "torchvision",
        "numpy",
        "scipy",
        "scikit-learn",
        "opencv-python-headless",
        "pycocotools",
        "fvcore",
        "tabulate",
        "tqdm",
    ],
    extras_require={"test": ["pytest", "pytest-timeout"]},
)
