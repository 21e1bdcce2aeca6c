"""minisegnet: a from-scratch deep-learning framework for semantic segmentation, to be studied.

import minisegnet as ms
import minisegnet.functional as F

x = ms.tensor(np.random.rand(2, 3), requires_grad=True)
loss = F.cross_entropy(x, [0, 2])
loss.backward()
"""

import os
import sys


def _interrupt_as_one_line(kind, value, traceback, _previous=sys.excepthook):
    """Ctrl-C while ``minisegnet`` or ``python -m minisegnet`` is still loading this package
    (importing NumPy takes a tenth of a second or more): the command's one line and exit code
    130, as ``cli.main`` gives for a Ctrl-C once it runs, instead of a traceback. Installed only
    for the command (``sys.argv[0]``: ``-m`` while ``python -m`` loads the package, or the
    ``minisegnet`` script); any other exception, and other programs, keep Python's behaviour."""
    argv0 = sys.argv[0] if sys.argv else ""
    if issubclass(kind, KeyboardInterrupt) and (
        argv0 == "-m" or os.path.basename(argv0) == "minisegnet"
    ):
        sys.stderr.write("minisegnet: interrupted\n")
        sys.stderr.flush()
        os._exit(130)
    _previous(kind, value, traceback)


if sys.argv and (sys.argv[0] == "-m" or os.path.basename(sys.argv[0]) == "minisegnet"):
    sys.excepthook = _interrupt_as_one_line

# Numba's OpenMP worker threads and OpenBLAS's threads both spin-wait after a job by default; on
# a 2-core machine every switch between a Numba kernel and a matrix product then waits for the
# other pool to stop spinning (measured: 1-28 ms per switch instead of 0.35 ms). Passive waiting
# makes idle threads sleep. It must be chosen before OpenMP is loaded (Numba loads it at its
# first parallel kernel); if another library loaded it first, with spinning threads, Numba's
# kernels run on one thread instead and a warning says why (``openmp.py``).
from minisegnet import openmp as _openmp  # noqa: E402

_openmp.choose_passive_waiting()

# Importing ``tensor_methods`` attaches Tensor's operator methods (``a + b``, ``t.sum()``, ...),
# before any tensor exists: see ``tensor.py``'s docstring.
from minisegnet import backend, tensor_methods  # noqa: E402, F401
from minisegnet.autograd import Function, enable_grad, is_grad_enabled, no_grad  # noqa: E402
from minisegnet.tensor import Tensor, ones, randn, tensor, zeros  # noqa: E402


def __getattr__(name: str):
    """``cat`` and ``stack`` are ops whose arguments are checked in ``minisegnet.functional``;
    that module imports the kernels (Numba), so it is loaded on first use, which keeps
    ``import minisegnet`` light."""
    if name in ("cat", "stack"):
        from minisegnet import functional

        return getattr(functional, name)
    raise AttributeError(f"module 'minisegnet' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "backend",
    "Function",
    "no_grad",
    "enable_grad",
    "is_grad_enabled",
    "Tensor",
    "tensor",
    "zeros",
    "ones",
    "randn",
    "cat",
    "stack",
    "__version__",
]
