"""CPU emulation of CUDA kernels (the ``cuda-emu`` backend): availability check.

The launcher that compiles a ``.cu`` file with g++ and an emulation header, and runs its grid on
NumPy arrays, is built on top of this module.
"""

from __future__ import annotations

import shutil


def compiler() -> str | None:
    """Path of the C++ compiler the emulator uses (``$CXX`` or g++), or None."""
    import os

    return shutil.which(os.environ.get("CXX", "g++"))


def unavailable_reason() -> str | None:
    if compiler() is None:
        return "no C++ compiler (g++ or $CXX) was found on PATH; apt-get install g++"
    return None
