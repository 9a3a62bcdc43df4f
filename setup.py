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
    # Detectron2 v0.6 is installed apart (tools/setup.sh) with --no-deps: what it needs is listed here too.
    # tools/make_offline_bundle.py bundles this list (less torch/torchvision) and the extras it is asked for.
    install_requires=[
        "torch>=2.0",
        "torchvision",
        "numpy",
        "scipy",
        "scikit-learn",
        "opencv-python-headless",
        "Pillow>=7.1",  # >= 10 too: reid2.utils.compat restores the names Detectron2 v0.6 uses
        "pycocotools>=2.0.2",
        "fvcore>=0.1.5,<0.1.6",  # the ranges Detectron2 v0.6 pins
        "iopath>=0.1.7,<0.1.10",
        "yacs>=0.1.8",
        "termcolor>=1.1",
        "tabulate",
        "cloudpickle",
        "tqdm>4.29.0",
        "omegaconf>=2.1",
        "hydra-core>=1.1",
        "PyYAML",
        "tensorboard",  # Detectron2's default event writer
        "h5py",  # CUHK03's .mat files
    ],
    extras_require={
        "test": ["pytest", "pytest-timeout"],
        "vis": ["matplotlib"],  # tools/visualize_results.py, SLSR's cluster plots
        "export": ["onnx", "onnxruntime"],  # tools/export.py
        "dev": ["ruff", "import-linter"],
    },
)
