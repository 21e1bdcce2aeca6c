"""The ``cuda-emu`` backend: the package's CUDA C kernels compiled by g++ and run on the CPU.

How it works
------------
For a source such as ``kernels/pooling.cu`` the emulator writes a small C++ translation unit::

    #include "cuda_emu.h"              // __global__, threadIdx, __syncthreads, atomicAdd, ...
    #include ".../kernels/pooling.cu"  // the very file NVRTC compiles for the GPU
    extern "C" int msn_emu__max_pool2d_forward_float_unsigned_char(
            unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
            unsigned long long shared_mem, int flags, const float* x, float* y, ...) {
        return msn_emu::launch(..., [&] { max_pool2d_forward<float, unsigned char>(x, y, ...); });
    }

one entry point per kernel instantiation (generated from the signatures ``source.py`` parses),
compiles it with ``g++ -shared``, loads it with ctypes and calls the entry with the NumPy arrays'
data pointers. ``msn_emu::launch`` (in ``emu/cuda_emu.h``) loops over the grid's blocks and, in
each block, over its threads, setting ``blockIdx``/``threadIdx`` before each call of the kernel
body. A kernel that calls ``__syncthreads()`` (directly or through a ``__device__`` function it
calls) runs each thread of a block as a fiber (its own stack) that yields at every barrier.

The compiled library is cached in ``$MINISEGNET_CACHE/cuda-emu`` (default
``~/.cache/minisegnet/cuda-emu``) under a hash of the generated code, the kernel source with its
includes, the emulation header, the compiler and the flags; a file lock and an atomic rename let
several processes (pytest-xdist, notebooks) share the cache. Only the first use of a source
compiles (about a second per file); later processes just load the library.

Build modes (``MINISEGNET_EMU_BUILD`` or :func:`set_build`)
-----------------------------------------------------------
``release``  ``-O2``, the default.
``debug``    ``-O0 -g``: set a breakpoint inside a CUDA kernel and step through it::

                 MINISEGNET_EMU_BUILD=debug gdb --args python my_script.py
                 (gdb) set breakpoint pending on
                 (gdb) break pooling.cu:61              # or: break max_pool2d_forward<float, int>
                 (gdb) run
                 (gdb) print threadIdx                  # which CUDA thread stopped here
                 (gdb) print blockIdx

``asan``     ``-O1 -g -fsanitize=address``: every out-of-bounds read or write of an array, or of
             dynamic shared memory past the size given at launch, stops the program with a
             report. Python itself is not built with ASan, so its runtime must be preloaded::

                 LD_PRELOAD=$(g++ -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0 \\
                     MINISEGNET_EMU_BUILD=asan python -m pytest tests/test_cuda_emu_conv.py

``MINISEGNET_EMU_FIBERS=1`` runs every kernel with fibers (useful to check the detection).
``MINISEGNET_EMU_UCONTEXT=1`` switches fibers with glibc's swapcontext instead of the header's
dozen lines of x86-64 assembly (the fallback on other CPUs; about 1 us per switch, not 60 ns).

Limits (read before trusting a green test)
------------------------------------------
* Threads run one after another (or, with ``__syncthreads``, in lock-step rounds between
  barriers), never at the same time: a data race, a missing ``__syncthreads``, or a missing
  atomic usually gives the right answer here and a wrong one on a GPU. The kernels here avoid
  races by construction (one thread per destination element, gathers instead of scatters); the
  emulator cannot prove that.
* Because one fiber runs to its barrier before the next starts, a kernel whose correctness
  needs threads to interleave differently (spin-waiting on another thread) deadlocks or passes
  by accident.
* No warp intrinsics (``__shfl_*_sync``, ``__ballot_sync``, ``__syncwarp``; they fail to
  compile with a message), no warp-synchronous programming, no streams, textures, cooperative
  groups or ``__constant__`` memory semantics; ``printf`` is the C library's.
* ``extern __shared__`` arrays with different names do not alias as they do in CUDA; declare one
  ``unsigned char`` buffer and cast it.
* Floating point: g++ does not contract a*b+c into an FMA here (x86-64 baseline) while nvcc
  does; results differ from a GPU's in the last bits.
* Performance is not representative of anything: a launch is a C loop on one CPU core (about
  the speed of a plain C loop per thread, plus about 20 us of Python per launch), and fibers
  cost a context switch per thread per barrier. It is a correctness and teaching tool.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from minisegnet.cuda import source as _source

__all__ = [
    "compiler",
    "unavailable_reason",
    "BUILD_MODES",
    "build_mode",
    "set_build",
    "cache_dir",
    "generate_wrapper",
    "library",
    "launch",
    "EmulatorError",
]

HEADER_DIR = Path(__file__).with_name("emu")
HEADER = HEADER_DIR / "cuda_emu.h"

BUILD_MODES = {
    "release": ["-O2"],
    "debug": ["-O0", "-g3", "-fno-omit-frame-pointer"],
    "asan": ["-O1", "-g", "-fsanitize=address", "-fno-omit-frame-pointer"],
}
COMMON_FLAGS = ["-std=c++17", "-shared", "-fPIC", "-Wall", "-Wno-unused-function"]

FORCE_FIBERS = 1  # msn_emu::FORCE_FIBERS

_build_override: str | None = None
_launch_lock = threading.Lock()  # the emulated built-ins (threadIdx, ...) are globals


class EmulatorError(RuntimeError):
    """A kernel failed to compile or to run under emulation (the message says which and why)."""


def compiler() -> str | None:
    """Path of the C++ compiler the emulator uses (``$CXX`` or g++), or None."""
    return shutil.which(os.environ.get("CXX", "g++"))


@functools.lru_cache(maxsize=1)
def unavailable_reason() -> str | None:
    """None when g++ can build an emulated kernel library here; otherwise why not.

    Compiles a one-thread kernel with the emulation header once per process (about 0.3 s).
    """
    cxx = compiler()
    if cxx is None:
        return "no C++ compiler (g++ or $CXX) was found on PATH; apt-get install g++"
    program = '#include "cuda_emu.h"\n__global__ void probe(int* x) { x[threadIdx.x] = 1; }\n'
    with tempfile.TemporaryDirectory() as tmp:
        cpp, so = Path(tmp, "probe.cpp"), Path(tmp, "probe.so")
        cpp.write_text(program)
        command = [cxx, *COMMON_FLAGS, "-O0", f"-I{HEADER_DIR}", str(cpp), "-o", str(so)]
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as error:
            return f"{cxx} could not be run ({error})"
        if result.returncode != 0:
            return f"{cxx} cannot compile the CUDA emulation header: {result.stderr.strip()[:500]}"
    return None


def build_mode() -> str:
    """The build in force: :func:`set_build`'s choice, else ``$MINISEGNET_EMU_BUILD``, else
    ``release``."""
    mode = _build_override or os.environ.get("MINISEGNET_EMU_BUILD", "release") or "release"
    if mode not in BUILD_MODES:
        raise ValueError(
            f"MINISEGNET_EMU_BUILD: expected one of {sorted(BUILD_MODES)}, got {mode!r}"
        )
    return mode


def set_build(mode: str | None) -> None:
    """Choose ``release``, ``debug`` or ``asan`` for libraries loaded from now on (None: back to
    the environment variable). Libraries already loaded stay loaded."""
    global _build_override
    if mode is not None and mode not in BUILD_MODES:
        raise ValueError(f"set_build: mode must be one of {sorted(BUILD_MODES)}, got {mode!r}")
    _build_override = mode


def cache_dir() -> Path:
    """Where compiled libraries are kept: ``$MINISEGNET_CACHE/cuda-emu``, else
    ``$XDG_CACHE_HOME/minisegnet/cuda-emu`` (``~/.cache/minisegnet/cuda-emu``)."""
    root = os.environ.get("MINISEGNET_CACHE")
    if root:
        base = Path(root)
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "minisegnet"
    path = base / "cuda-emu"
    path.mkdir(parents=True, exist_ok=True)
    return path


# --------------------------------------------------------------------------- code generation
_CTYPES = {
    "float": ctypes.c_float,
    "double": ctypes.c_double,
    "int": ctypes.c_int,
    "unsigned int": ctypes.c_uint,
    "unsigned char": ctypes.c_ubyte,
    "long long": ctypes.c_longlong,
    "unsigned long long": ctypes.c_ulonglong,
}
_LAUNCH_CTYPES = [ctypes.c_uint] * 6 + [ctypes.c_ulonglong, ctypes.c_int]


def emulation_copy(src: _source.SourceFile) -> str:
    """The text of ``src`` as g++ compiles it: unchanged but for ``extern __shared__``, which
    reads ``extern`` (a macro cannot turn it into valid C++; see emu/cuda_emu.h). Line for line
    the same, so the ``#line`` directive in front of it keeps messages and gdb in the real file.
    """
    text = src.path.read_text(encoding="utf-8")
    for header in src.path.parent.glob("*.cuh"):
        if _EXTERN_SHARED.search(_source.strip_comments(header.read_text(encoding="utf-8"))):
            raise EmulatorError(
                f"{header.name}: declare `extern __shared__` memory in the .cu file, not in a "
                "header (the emulator rewrites only the .cu file)"
            )
    return _EXTERN_SHARED.sub(r"extern /*__shared__*/", text)


_EXTERN_SHARED = re.compile(r"\bextern\s+__shared__\b")


def generate_wrapper(src: _source.SourceFile, filename: str = "generated.cpp") -> str:
    """The C++ translation unit holding one extern "C" entry point per kernel instance."""
    lines = [
        f"// Generated by minisegnet.cuda.emulator from {src.path.name}: one host entry point per",
        "// kernel instantiation, running the grid on the CPU (see emu/cuda_emu.h).",
        '#include "cuda_emu.h"',
        "",
    ]
    for name in src.dynamic_shared:
        lines.append(
            f"alignas(16) static unsigned char {name}[MSN_EMU_DYNAMIC_SHARED_MAX];"
            "  // extern __shared__"
        )
    lines.append("static void msn_emu_prepare_shared(unsigned long long bytes) {")
    for name in src.dynamic_shared:
        lines.append(f"    msn_emu::prepare_shared({name}, bytes);")
    if not src.dynamic_shared:
        lines.append("    (void)bytes;")
    lines += ["}", "", f'#line 1 "{src.path}"', emulation_copy(src).rstrip("\n")]
    here = len("\n".join(lines).split("\n")) + 1  # the line the next directive is on
    lines.append(f'#line {here + 1} "{filename}"')  # back to numbering this file
    for kernel in src.kernels:
        for inst in kernel.instances():
            params = ", ".join(p.describe() for p in inst.params)
            names = ", ".join(p.name for p in inst.params)
            sync = "true" if kernel.uses_syncthreads else "false"
            lines += [
                f'extern "C" int {inst.symbol}(unsigned gx, unsigned gy, unsigned gz,',
                "        unsigned bx, unsigned by, unsigned bz, unsigned long long shared_mem,",
                f"        int flags{', ' if params else ''}{params}) {{",
                f'    return msn_emu::launch("{inst.expression}", dim3{{gx, gy, gz}},'
                " dim3{bx, by, bz}, shared_mem, flags,",
                f"        /*uses_syncthreads=*/{sync}, msn_emu_prepare_shared,",
                f"        [&] {{ {inst.expression}({names}); }});",
                "}",
                "",
            ]
    lines += [
        'extern "C" const char* msn_emu_last_error(void) { return msn_emu::last_error.c_str(); }',
        "",
    ]
    return "\n".join(lines)


@functools.lru_cache(maxsize=1)
def _compiler_identity() -> str:
    cxx = compiler() or "g++"
    try:
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    except OSError:
        version = ""
    return f"{cxx}\n{version}"


class _Library:
    """A loaded kernel library: entry points by instance symbol, with their ctypes signatures."""

    def __init__(self, path: Path, src: _source.SourceFile):
        self.path = path
        self.dll = ctypes.CDLL(str(path))
        self.entries = {}
        for kernel in src.kernels:
            for inst in kernel.instances():
                fn = getattr(self.dll, inst.symbol)
                fn.restype = ctypes.c_int
                fn.argtypes = _LAUNCH_CTYPES + [
                    ctypes.c_void_p if p.pointer else _CTYPES[p.base] for p in inst.params
                ]
                self.entries[inst.symbol] = fn
        self.last_error = self.dll.msn_emu_last_error
        self.last_error.restype = ctypes.c_char_p


_libraries: dict[tuple[str, str], _Library] = {}


def _asan_runtime_loaded() -> bool:
    try:
        with open("/proc/self/maps") as maps:
            return "libasan" in maps.read()
    except OSError:  # pragma: no cover - not Linux
        return False


def library(src: _source.SourceFile, mode: str | None = None) -> _Library:
    """The compiled, loaded library of ``src`` in build ``mode`` (compiling it if needed)."""
    mode = mode or build_mode()
    flags = COMMON_FLAGS + BUILD_MODES[mode] + [f"-I{HEADER_DIR}", f"-I{src.path.parent}"]
    if os.environ.get("MINISEGNET_EMU_UCONTEXT", "") not in ("", "0"):
        flags.append("-DMSN_EMU_UCONTEXT")  # portable (slow) fiber switches, see cuda_emu.h
    key = (src.digest, mode, tuple(flags))
    lib = _libraries.get(key)
    if lib is not None:
        return lib
    if mode == "asan" and not _asan_runtime_loaded():
        asan = "$(g++ -print-file-name=libasan.so)"
        raise EmulatorError(
            "the asan build needs the AddressSanitizer runtime loaded before Python starts: run "
            f"with LD_PRELOAD={asan} ASAN_OPTIONS=detect_leaks=0 (loading it now would abort "
            "the process)"
        )
    h = hashlib.sha256()
    wrapper = generate_wrapper(src)  # named generated.cpp here, for hashing
    for part in (wrapper, src.text, HEADER.read_text(), " ".join(flags), _compiler_identity()):
        h.update(part.encode())
        h.update(b"\0")
    stem = f"{src.path.stem}-{mode}-{h.hexdigest()[:20]}"
    wrapper = generate_wrapper(src, str(cache_dir() / f"{stem}.cpp"))
    directory = cache_dir()
    so_path = directory / f"{stem}.so"
    if not so_path.exists():
        reason = unavailable_reason()
        if reason is not None:
            raise EmulatorError(f"cuda-emu cannot compile kernels here: {reason}")
        with open(directory / f"{stem}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be compiling the same thing
            if not so_path.exists():
                _compile(wrapper, directory, stem, flags, src)
    lib = _Library(so_path, src)
    _libraries[key] = lib
    return lib


def _compile(wrapper: str, directory: Path, stem: str, flags: list[str], src) -> None:
    cpp_path = directory / f"{stem}.cpp"  # kept beside the library: gdb shows it
    cpp_path.write_text(wrapper)
    fd, tmp = tempfile.mkstemp(prefix=f".{stem}-", suffix=".so", dir=directory)
    os.close(fd)
    command = [compiler() or "g++", *flags, str(cpp_path), "-o", tmp]
    try:
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise EmulatorError(
                f"cuda-emu: g++ failed to compile {src.path.name}\n$ {' '.join(command)}\n"
                f"{result.stderr}"
            )
        os.replace(tmp, directory / f"{stem}.so")  # atomic: readers see all or nothing
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def launch(src, inst, grid, block, args, shared_mem: int = 0) -> None:
    """Run ``inst`` over ``grid`` x ``block`` on NumPy arrays (arguments already checked by
    ``launch.launch``: pointer arguments are C-contiguous arrays of the right dtype, scalars
    NumPy scalars of the right dtype)."""
    lib = library(src)
    fn = lib.entries[inst.symbol]
    values = []
    for param, value in zip(inst.params, args):
        if param.pointer:
            values.append(value.ctypes.data if value.size else None)
        elif param.base in ("float", "double"):
            values.append(float(value))
        else:
            values.append(int(value))
    flags = FORCE_FIBERS if os.environ.get("MINISEGNET_EMU_FIBERS", "") not in ("", "0") else 0
    with _launch_lock:
        status = fn(*grid, *block, int(shared_mem), flags, *values)
        message = lib.last_error().decode(errors="replace") if status else ""
    if status:
        raise EmulatorError(f"cuda-emu: kernel failed: {message}")
