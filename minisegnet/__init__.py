"""minisegnet: a from-scratch deep-learning framework for semantic segmentation, to be studied.

import minisegnet as ms
import minisegnet.functional as F

x = ms.tensor(np.random.rand(2, 3), requires_grad=True)
loss = F.cross_entropy(x, [0, 2])
loss.backward()
"""

from minisegnet import backend
from minisegnet.autograd import Function, enable_grad, is_grad_enabled, no_grad
from minisegnet.tensor import Tensor, cat, ones, randn, stack, tensor, zeros

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
