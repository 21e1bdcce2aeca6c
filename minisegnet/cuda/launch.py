"""The one launcher interface both CUDA backends share.

Every wrapper in ``minisegnet/cuda/*.py`` is written once against two functions:

    xp()                                           the array module to allocate with
    launch(source_file, kernel_name, grid, block, args, shared_mem=0)

``launch("pooling.cu", "max_pool2d_forward<float, unsigned char>", grid, block, (x, y, idx,
np.int32(N), ...))`` runs the kernel ``max_pool2d_forward<float, unsigned char>`` of
``kernels/pooling.cu`` as ``kernel<<<grid, block, shared_mem>>>(args...)``:

* under the ``cuda`` backend, on the GPU (``gpu.py``: compiled once per process by NVRTC through
  ``cupy.RawModule``, and kept in CuPy's on-disk cache), on CuPy arrays only;
* under every other backend (``cuda-emu``, or a wrapper called directly from a CPU backend), on
  the CPU (``emulator.py``: the same source compiled by g++), on NumPy arrays only.

The backend decides, never the array type: a host array handed to a kernel under ``cuda`` (or a
GPU array under ``cuda-emu``) is an error that names the argument and says how to move it, not a
silent run somewhere else (the device rule, ``minisegnet/arrays.py``).

Two shorthands for the common launch shapes: ``launch_1d(source_file, kernel_name, count,
args)`` (one thread per element of the array written) and ``launch_plane_map`` (the pooling and
resizing kernels that map (N, C, H, W) planes to (N, C, Ho, Wo) planes; ``plane_sizes`` checks
their arguments).

Before either, every argument is checked against the kernel's C signature as parsed from the
source (``source.py``), so a mistake is a clear TypeError/ValueError naming the argument rather
than memory corruption:

    pointer parameter ``const float* x``    a C-contiguous float32 array (numpy or cupy); a
                                            non-const pointer also needs a writeable array
    ``int``, ``long long``                  np.int32, np.int64 (a Python int is refused: the C
                                            side reads exactly 4 or 8 bytes)
    ``float``, ``double``                   np.float32, np.float64
    ``unsigned long long``                  np.uint64

Host work per launch (it is most of a small op's time on a GPU: issue 15 measured 41 us per
one-element op, PyTorch 16 us): the parsed source and the kernel's signature are looked up in a
dict and the package's own files are re-checked for edits at most every ``RECHECK_SECONDS``
(any other .cu file at every launch); a (grid, block,
shared_mem) shape already checked is not checked again. :func:`launch_count` counts launches,
so a benchmark can report the launches of one training step (CuPy's own elementwise and
reduction kernels, and cuBLAS, are not counted: only the CUDA C kernels of this package).

The shape of the launch is checked against CUDA's limits (at most 1024 threads per block,
grid.y and grid.z at most 65535, dynamic shared memory at most 48 KiB) on both backends, so the
emulator refuses what a GPU would refuse.
"""

from __future__ import annotations

import functools
import time

import numpy as np

from minisegnet import backend
from minisegnet.arrays import DeviceError, array_module, is_device_array
from minisegnet.cuda import source as _source
from minisegnet.ops.geometry import pair

__all__ = [
    "launch",
    "launch_1d",
    "launch_plane_map",
    "plane_sizes",
    "launch_count",
    "xp",
    "grid_1d",
    "int32",
    "ctype",
    "check_array",
    "MAX_THREADS_PER_BLOCK",
    "MAX_DYNAMIC_SHARED",
]

MAX_THREADS_PER_BLOCK = 1024
MAX_BLOCK_DIMS = (1024, 1024, 64)
MAX_GRID_DIMS = (2**31 - 1, 65535, 65535)
MAX_DYNAMIC_SHARED = 48 * 1024
DEFAULT_BLOCK = 256
RECHECK_SECONDS = 1.0  # how often launch() looks whether a .cu file was edited

_launches = 0
_kernels: dict[tuple[str, str], tuple] = {}  # (source_file, kernel_name) -> (src, inst, checked)

ctype = _source.ctype


def xp():
    """The array module the CUDA wrappers allocate with: CuPy on the ``cuda`` backend, NumPy
    otherwise (``cuda-emu``, or a wrapper called directly from a CPU backend)."""
    current = backend.current()
    return current.xp if current.name == "cuda" else np


def grid_1d(total: int, block: int = DEFAULT_BLOCK):
    """(grid, block) for one thread per element of a flat range of ``total`` elements."""
    blocks = max(1, -(-int(total) // block))
    return (blocks, 1, 1), (block, 1, 1)


def int32(*values) -> tuple:
    """Python ints as np.int32 kernel arguments, refusing values that do not fit."""
    out = []
    for v in values:
        if not -(2**31) <= int(v) < 2**31:
            raise ValueError(f"kernel argument {v} does not fit a 32-bit int parameter")
        out.append(np.int32(v))
    return tuple(out)


def check_array(op: str, name: str, array, ndim=None, dtypes=("float32", "float64")):
    """Wrapper-level input check: an array (numpy or cupy) of an allowed dtype and rank, C-
    contiguous. Raises TypeError/ValueError naming ``op`` and the argument."""
    if not (isinstance(array, np.ndarray) or is_device_array(array)):
        raise TypeError(f"{op}: {name} must be a NumPy or CuPy array, got {type(array).__name__}")
    if dtypes is not None and str(array.dtype) not in dtypes:
        raise TypeError(f"{op}: {name} must have dtype {' or '.join(dtypes)}, got {array.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
        if array.ndim not in allowed:
            raise ValueError(
                f"{op}: {name} must have {' or '.join(map(str, allowed))} dimensions, got shape "
                f"{tuple(array.shape)}"
            )
    if not array.flags.c_contiguous:
        raise ValueError(
            f"{op}: {name} must be C-contiguous (the kernels index it as a flat row-major "
            f"array); got strides {array.strides} for shape {tuple(array.shape)}. Pass "
            "xp.ascontiguousarray(...) if a copy is what you want"
        )


def _dims(value, what: str, limits) -> tuple[int, int, int]:
    if isinstance(value, (int, np.integer)):
        value = (value,)
    value = tuple(int(v) for v in value)
    if not 1 <= len(value) <= 3:
        raise ValueError(f"launch: {what} must have 1 to 3 dimensions, got {value}")
    value = value + (1,) * (3 - len(value))
    for axis, (v, limit) in enumerate(zip(value, limits)):
        if not 1 <= v <= limit:
            raise ValueError(
                f"launch: {what}.{'xyz'[axis]} must be in [1, {limit}] (CUDA's limit), got {v}"
            )
    return value


def check_args(inst: _source.Instance, args) -> str:
    """Check ``args`` against the kernel's parameters and the device rule: every array on the
    device the active backend launches on (GPU memory under ``cuda``, host memory otherwise).
    Returns ``"cuda"`` or ``"cpu"``. Raises TypeError/ValueError naming the kernel, parameter
    and problem (:class:`DeviceError` for an array on the wrong device)."""
    on_gpu = backend.current().name == "cuda"
    args = tuple(args)
    where = f"{inst.expression}"
    if len(args) != len(inst.params):
        raise TypeError(
            f"{where}: expected {len(inst.params)} arguments ({inst.signature()}), got {len(args)}"
        )
    for position, (param, value) in enumerate(zip(inst.params, args)):
        if param.pointer and type(value) is np.ndarray and not on_gpu:  # the common case, fast
            if (
                value.dtype == param.dtype
                and value.flags.c_contiguous
                and (param.const or value.flags.writeable)
            ):
                continue
        elif not param.pointer and type(value) is param.dtype.type:
            continue
        label = f"{where}: argument {position} '{param.name}' ({param.decl})"
        if param.pointer:
            on_device = is_device_array(value)
            if not (on_device or isinstance(value, np.ndarray)):
                raise TypeError(f"{label} must be an array, got {type(value).__name__}")
            if on_gpu and not on_device:
                raise DeviceError(
                    f"{label} is a NumPy array in host memory, but the backend 'cuda' launches "
                    "on the GPU: move the data first (Tensor.to('cuda'), or ms.tensor(...) under "
                    "the 'cuda' backend; cupy.asarray(...) for a raw array)"
                )
            if on_device and not on_gpu:
                raise DeviceError(
                    f"{label} is a GPU array, but the backend {backend.current().name!r} runs "
                    "kernels on the CPU: move it back (Tensor.to('cpu'); .get() for a raw "
                    "array), or switch to the 'cuda' backend"
                )
            if value.dtype != param.dtype:
                raise TypeError(f"{label} must be a {param.dtype} array, got dtype {value.dtype}")
            if not value.flags.c_contiguous:
                raise ValueError(
                    f"{label} must be a C-contiguous array; got strides {value.strides} for "
                    f"shape {tuple(value.shape)}"
                )
            if not param.const and not on_device and not value.flags.writeable:
                raise ValueError(f"{label} is written by the kernel, but the array is read-only")
        else:
            if not isinstance(value, np.generic) or value.dtype != param.dtype:
                got = (
                    f"{type(value).__name__} {value!r}"
                    if not isinstance(value, np.generic)
                    else f"{value.dtype} scalar"
                )
                raise TypeError(
                    f"{label} must be a np.{param.dtype.name} scalar (the kernel reads exactly "
                    f"{param.dtype.itemsize} bytes), got {got}; write np.{param.dtype.name}(...)"
                )
    return "cuda" if on_gpu else "cpu"


def launch_count() -> int:
    """How many kernels :func:`launch` has started in this process (both backends). The
    launches of one training step are the difference of two readings around it."""
    return _launches


def _kernel(source_file, kernel_name: str):
    """(src, inst) of ``kernel_name``; the source is re-parsed when its file (or a header
    beside it) changed, looked at no more often than every RECHECK_SECONDS for the files in
    ``kernels/`` (at every launch for any other file, such as a lesson's own kernel)."""
    key = (str(source_file), kernel_name)
    now = time.monotonic()
    hit = _kernels.get(key)
    if hit is not None and now - hit[2] < RECHECK_SECONDS:
        return hit[0], hit[1]
    src = _source.load(source_file)
    inst = src.instance(kernel_name)
    if src.path.parent == _source.KERNELS_DIR:  # a file of your own is re-checked every launch
        _kernels[key] = (src, inst, now)
    return src, inst


@functools.lru_cache(maxsize=4096)
def _launch_shape(grid, block, shared_mem) -> tuple:
    """(grid, block, shared_mem) normalised and checked against CUDA's limits (cached: a
    training step launches the same few shapes again and again)."""
    grid = _dims(grid, "grid", MAX_GRID_DIMS)
    block = _dims(block, "block", MAX_BLOCK_DIMS)
    if block[0] * block[1] * block[2] > MAX_THREADS_PER_BLOCK:
        raise ValueError(
            f"launch: a block has at most {MAX_THREADS_PER_BLOCK} threads, got {block} "
            f"({block[0] * block[1] * block[2]})"
        )
    shared_mem = int(shared_mem)
    if not 0 <= shared_mem <= MAX_DYNAMIC_SHARED:
        raise ValueError(
            f"launch: shared_mem must be in [0, {MAX_DYNAMIC_SHARED}] bytes, got {shared_mem}"
        )
    return grid, block, shared_mem


def launch(source_file, kernel_name: str, grid, block, args, shared_mem: int = 0) -> None:
    """Run ``kernel_name`` from ``source_file`` as ``kernel<<<grid, block, shared_mem>>>(args)``.

    ``source_file`` is a file name in ``minisegnet/cuda/kernels`` (or a path to any ``.cu``);
    ``kernel_name`` a name expression such as ``"im2col<float>"``; ``grid`` and ``block`` ints or
    1-3 tuples; ``shared_mem`` the bytes of dynamic (``extern __shared__``) shared memory.
    Under the ``cuda`` backend it runs on the GPU (CuPy arrays only); under any other backend
    in the CPU emulator (NumPy arrays only).
    """
    global _launches
    src, inst = _kernel(source_file, kernel_name)
    try:
        grid, block, shared_mem = _launch_shape(grid, block, shared_mem)
    except TypeError:  # an unhashable shape (a list): checked without the cache
        grid, block, shared_mem = _launch_shape.__wrapped__(grid, block, shared_mem)
    if check_args(inst, args) == "cuda":
        from minisegnet.cuda import gpu

        gpu.launch(src, inst, grid, block, tuple(args), shared_mem)
    else:
        from minisegnet.cuda import emulator

        emulator.launch(src, inst, grid, block, tuple(args), shared_mem)
    _launches += 1


def launch_1d(source_file, kernel_name: str, count: int, args, block: int = DEFAULT_BLOCK) -> None:
    """:func:`launch` with one thread per element of a flat range of ``count`` elements (the
    array the kernel writes), in blocks of ``block`` threads; no launch when ``count`` is 0."""
    if count:
        launch(source_file, kernel_name, *grid_1d(count, block), args)


def plane_sizes(op, src, size, grad, least=0, nonempty_input=False):
    """((H, W), (Ho, Wo)) of a plane-map kernel (:func:`launch_plane_map`), arguments checked:
    forward, src is x (N, C, H, W) and ``size`` the ``out_size`` (Ho, Wo); backward
    (``grad``), src is dy (N, C, Ho, Wo) and ``size`` the ``in_size`` (H, W). Sizes must be
    ints >= ``least``; with ``nonempty_input`` a forward's x must have a non-empty plane (an
    average or an interpolation of nothing has no value)."""
    check_array(op, "dy" if grad else "x", src, ndim=4)
    given = pair(op, "in_size" if grad else "out_size", size, least)
    plane = tuple(src.shape[2:])
    if grad:
        return given, plane
    if nonempty_input and (plane[0] < 1 or plane[1] < 1):
        raise ValueError(f"{op}: x must have a non-empty plane, got shape {tuple(src.shape)}")
    return plane, given


def launch_plane_map(source_file, kernel: str, src, in_size, out_size, extra=(), grad=False):
    """The output of a kernel that maps (N, C, H, W) planes to (N, C, Ho, Wo) planes, one thread
    per output element (the average pooling and resizing kernels), whose parameters are

        kernel<T>(const T* src, T* out, int N, int C, int H, int W, int Ho, int Wo, extra...)

    forward (``grad=False``): src is x (N, C, H, W) and out y (N, C, Ho, Wo); backward: src is
    dy (N, C, Ho, Wo) and out dx (N, C, H, W). (H, W) = ``in_size``, (Ho, Wo) = ``out_size``;
    T is src's C type; ``extra`` are the kernel's remaining arguments, already typed."""
    n, c = src.shape[:2]
    out = array_module(src).empty((n, c, *(in_size if grad else out_size)), src.dtype)
    launch_1d(
        source_file,
        f"{kernel}<{ctype(src.dtype)}>",
        out.size,
        (src, out, *int32(n, c, *in_size, *out_size), *extra),
    )
    return out
