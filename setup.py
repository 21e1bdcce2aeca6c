"""Installs minisegnet. ``pip install -e ".[test]"`` for development."""

from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="minisegnet",
    version="0.1.0",
    description=(
        "A from-scratch deep-learning framework for semantic segmentation, written to be "
        "studied: FCN, DeconvNet, SegNet and PSPNet on NumPy, Numba and CUDA C."
    ),
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["minisegnet", "minisegnet.*"]),
    package_data={
        "minisegnet": [
            "cuda/*.cu",
            "cuda/*.h",
            "cuda/kernels/*.cu",
            "cuda/kernels/*.cuh",
            "cuda/emu/*.h",
        ]
    },
    include_package_data=True,
    install_requires=[
        "numpy>=1.24",
        "numba>=0.59",
        "matplotlib>=3.7",
        "tqdm>=4.60",
        "safetensors>=0.4",
        "pillow>=9.0",
    ],
    extras_require={
        "test": [
            "pytest>=7",
            "hypothesis>=6.80",
            "ruff>=0.5",
            "nbclient>=0.8",
            "nbformat>=5.7",
            "ipykernel>=6",
            "scikit-image>=0.21",  # the lessons' real photographs (skimage.data)
        ],
        "lessons": ["jupyterlab>=4", "ipykernel>=6", "scikit-image>=0.21", "ipywidgets>=8"],
        "gpu": ["cupy-cuda12x>=13", "nvidia-cuda-nvrtc-cu12"],
        # optional: the authors' dense CRF code, compared with minisegnet/ops/crf.py
        "crf": ["pydensecrf2>=1.1"],
    },
    entry_points={"console_scripts": ["minisegnet=minisegnet.cli:main"]},
)
