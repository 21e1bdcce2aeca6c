"""Undoing broadcasting in backward.

When ``a`` of shape (3, 1) is added to ``b`` of shape (4,), NumPy broadcasts both to (3, 4).
Each element of ``a`` was used 4 times, so its gradient is the sum of the 4 gradients it fed:

    da = sum of dy over the axes that broadcasting added or stretched
"""


def unbroadcast(grad, shape: tuple[int, ...]):
    """Sum ``grad`` down to ``shape``: over leading axes added by broadcasting, and over axes
    where ``shape`` has size 1 but ``grad`` does not."""
    if grad.shape == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad
