"""Reading the CUDA C sources: where they live, and what kernels they declare.

The ``.cu`` file is the single source of truth for a kernel's parameters. This module parses
each ``__global__`` function's signature, so that

* the launcher checks every argument against the real C parameter list (a ``const float*``
  needs a C-contiguous float32 array, an ``int`` needs ``np.int32``; see ``launch.py``),
* the emulator can generate one host entry point per kernel instantiation (``emulator.py``),
* CuPy gets the name expressions (``im2col<float>``) of every template instantiation.

Templates: a kernel's template parameters take their types from :data:`TEMPLATE_TYPES` by name,
``T`` (the floating type: float, double) and ``I`` (the pooling-switch type: unsigned char,
int); every combination is instantiated. A kernel is named by its C++ name expression, e.g.
``"max_pool2d_forward<float, unsigned char>"``.

The parser is deliberately small: it expects the style used in ``kernels/`` (one parameter per
comma, no function pointers or default arguments in kernel signatures, comments anywhere).
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import product
from pathlib import Path

import numpy as np

__all__ = [
    "KERNELS_DIR",
    "TEMPLATE_TYPES",
    "CTYPE_DTYPES",
    "Param",
    "Kernel",
    "Instance",
    "SourceFile",
    "kernel_path",
    "load",
    "kernel_files",
    "ctype",
]

KERNELS_DIR = Path(__file__).with_name("kernels")

# The types each template parameter is instantiated with.
TEMPLATE_TYPES: dict[str, tuple[str, ...]] = {
    "T": ("float", "double"),
    "I": ("unsigned char", "int"),
}

# C type -> NumPy dtype, for pointers (the array's dtype) and for scalars (the scalar's dtype).
CTYPE_DTYPES: dict[str, np.dtype] = {
    "float": np.dtype(np.float32),
    "double": np.dtype(np.float64),
    "int": np.dtype(np.int32),
    "unsigned int": np.dtype(np.uint32),
    "unsigned char": np.dtype(np.uint8),
    "long long": np.dtype(np.int64),
    "unsigned long long": np.dtype(np.uint64),
}


def ctype(dtype) -> str:
    """The C type of a NumPy dtype: ``ctype(np.float32) == "float"``."""
    dtype = np.dtype(dtype)
    for name, d in CTYPE_DTYPES.items():
        if d == dtype:
            return name
    raise TypeError(
        f"no CUDA C type for dtype {dtype} (have {sorted(map(str, CTYPE_DTYPES.values()))})"
    )


@dataclass(frozen=True)
class Param:
    """One kernel parameter: ``decl`` is the C type as written (``const T* __restrict__``)."""

    name: str
    decl: str
    base: str  # the type without const, *, __restrict__: "T", "float", "int", ...
    pointer: bool
    const: bool

    def substitute(self, types: dict[str, str]) -> Param:
        """This parameter with template parameters replaced by concrete types."""
        if not types:
            return self
        pattern = r"\b(" + "|".join(map(re.escape, types)) + r")\b"
        decl = re.sub(pattern, lambda m: types[m.group(1)], self.decl)
        base = types.get(self.base, self.base)
        return Param(self.name, decl, base, self.pointer, self.const)

    @property
    def dtype(self) -> np.dtype:
        return CTYPE_DTYPES[self.base]

    def describe(self) -> str:
        return f"{self.decl} {self.name}"


@dataclass(frozen=True)
class Kernel:
    """A ``__global__`` function as declared in a source file."""

    name: str
    template_params: tuple[str, ...]
    params: tuple[Param, ...]
    uses_syncthreads: bool
    line: int

    def instances(self) -> list[Instance]:
        choices = [TEMPLATE_TYPES[t] for t in self.template_params]
        result = []
        for types in product(*choices):
            mapping = dict(zip(self.template_params, types))
            params = tuple(p.substitute(mapping) for p in self.params)
            result.append(Instance(self, tuple(types), params))
        return result


@dataclass(frozen=True)
class Instance:
    """One launchable kernel: a kernel with concrete template arguments."""

    kernel: Kernel
    types: tuple[str, ...]
    params: tuple[Param, ...]

    @property
    def expression(self) -> str:
        """The C++ name expression: ``im2col<float>`` (what CuPy's get_function takes)."""
        if not self.types:
            return self.kernel.name
        return f"{self.kernel.name}<{', '.join(self.types)}>"

    @property
    def symbol(self) -> str:
        """The emulator's extern "C" entry point for this instance."""
        return "msn_emu__" + re.sub(r"\W+", "_", self.expression).strip("_")

    def signature(self) -> str:
        return f"{self.expression}({', '.join(p.describe() for p in self.params)})"


@dataclass(frozen=True)
class SourceFile:
    """A parsed ``.cu`` file: its path, its text with local includes inlined, its kernels."""

    path: Path
    text: str  # includes inlined: what NVRTC/CuPy compile
    digest: str  # sha256 of ``text``
    kernels: tuple[Kernel, ...]
    dynamic_shared: tuple[str, ...]  # names declared `extern __shared__ unsigned char name[]`
    instances: dict = field(default_factory=dict, compare=False, repr=False)  # by expression

    def __post_init__(self):
        self.instances.update({i.expression: i for k in self.kernels for i in k.instances()})

    def instance(self, expression: str) -> Instance:
        """The kernel instance named ``expression`` (spaces normalised), or a clear error."""
        found = self.instances.get(expression) or self.instances.get(
            _normalise_expression(expression)
        )
        if found is None:
            raise ValueError(
                f"kernel {expression!r} is not declared in {self.path.name}; it declares: "
                f"{', '.join(sorted(self.instances))}"
            )
        return found


def _normalise_expression(expression: str) -> str:
    expression = re.sub(r"\s+", " ", expression.strip())
    expression = re.sub(r"\s*<\s*", "<", expression)
    expression = re.sub(r"\s*>", ">", expression)
    return re.sub(r"\s*,\s*", ", ", expression)


def kernel_path(source_file) -> Path:
    """``"conv.cu"`` -> ``minisegnet/cuda/kernels/conv.cu``; an existing path is used as given."""
    path = Path(source_file)
    if path.is_absolute() or path.exists():
        resolved = path.resolve()
    else:
        resolved = KERNELS_DIR / path
    if not resolved.is_file():
        raise FileNotFoundError(
            f"CUDA source {source_file!r} not found (looked for {resolved}); the package's "
            f"kernels are {[p.name for p in kernel_files()]}"
        )
    return resolved


def kernel_files() -> list[Path]:
    """Every ``.cu`` file shipped in ``minisegnet/cuda/kernels``."""
    return sorted(KERNELS_DIR.glob("*.cu"))


def load(source_file) -> SourceFile:
    """Parse ``source_file`` (cached; re-read when the file or one it includes changes)."""
    path = _resolve_cached(str(source_file))
    return _load_cached(str(path), _stamp(path))


@lru_cache(maxsize=256)
def _resolve_cached(source_file: str) -> Path:
    return kernel_path(source_file)


def _stamp(path: Path):
    """A cheap fingerprint of the file and the headers beside it, for the parse cache."""
    stats = [os.stat(path)] + [os.stat(p) for p in _headers_beside(path.parent)]
    return tuple((s.st_mtime_ns, s.st_size) for s in stats)


@lru_cache(maxsize=64)
def _headers_beside(directory: Path) -> tuple[Path, ...]:
    return tuple(sorted(directory.glob("*.cuh")))


@lru_cache(maxsize=64)
def _load_cached(path_str: str, stamp) -> SourceFile:
    path = Path(path_str)
    text = inline_includes(path)
    code = strip_comments(text)
    kernels = tuple(_parse_kernels(code, path))
    shared = tuple(dict.fromkeys(_dynamic_shared_names(code, path)))
    digest = hashlib.sha256(text.encode()).hexdigest()
    return SourceFile(path, text, digest, kernels, shared)


_INCLUDE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"[ \t]*$', re.M)


def inline_includes(path: Path, _seen: set | None = None) -> str:
    """The file's text with every ``#include "local.cuh"`` replaced by that file's text (once),
    so NVRTC and CuPy compile a single self-contained string (and CuPy's cache, keyed by the
    source text, notices a change to a header)."""
    seen = set() if _seen is None else _seen
    seen.add(path.resolve())
    text = path.read_text(encoding="utf-8")

    def replace(match):
        included = (path.parent / match.group(1)).resolve()
        if included in seen:
            return f"// (already included: {match.group(1)})"
        if not included.is_file():
            raise FileNotFoundError(f'{path.name}: #include "{match.group(1)}" not found')
        body = inline_includes(included, seen)
        return f"// ---- begin {match.group(1)}\n{body}\n// ---- end {match.group(1)}"

    return _INCLUDE.sub(replace, text)


def strip_comments(text: str) -> str:
    """Remove // and /* */ comments (keeping newlines, so line numbers stay right)."""

    def blank(match):
        s = match.group(0)
        if s.startswith("/"):
            return re.sub(r"[^\n]", " ", s)
        return s  # a string literal

    return re.sub(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\])*"', blank, text, flags=re.S)


def _top_level_functions(code: str):
    """Yield (header, body, line) for each function defined at namespace scope."""
    depth = 0
    start = 0  # where the current top-level statement began
    i = 0
    n = len(code)
    while i < n:
        ch = code[i]
        if ch == "#" and depth == 0 and (i == 0 or code[i - 1] == "\n"):
            end = code.find("\n", i)
            while end != -1 and code[end - 1] == "\\":
                end = code.find("\n", end + 1)
            i = n if end == -1 else end
            start = i
            continue
        if ch == "{":
            if depth == 0:
                header = code[start:i]
                body_start = i
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                if "(" in header:
                    line = code.count("\n", 0, body_start) + 1
                    yield header.strip(), code[body_start : i + 1], line
                start = i + 1
        elif ch == ";" and depth == 0:
            start = i + 1
        i += 1


_KEYWORDS = {"if", "for", "while", "switch", "return", "sizeof", "template"}


def _function_name(header: str) -> str | None:
    header = re.sub(r"^\s*template\s*<[^>]*>", "", header)
    for match in re.finditer(r"([A-Za-z_]\w*)\s*(?:<[^<>()]*>)?\s*\(", header):
        if match.group(1) not in _KEYWORDS and not match.group(1).startswith("__"):
            return match.group(1)
    return None


def _parse_kernels(code: str, path: Path):
    functions = []
    for header, body, line in _top_level_functions(code):
        name = _function_name(header)
        if name is not None:
            functions.append((name, header, body, line))
    # Which functions (transitively) call __syncthreads?
    syncs = {name for name, _, body, _ in functions if "__syncthreads" in body}
    changed = True
    while changed:
        changed = False
        for name, _, body, _ in functions:
            if name not in syncs and any(
                re.search(rf"\b{s}\s*(<[^;]*?>)?\s*\(", body) for s in syncs
            ):
                syncs.add(name)
                changed = True
    for name, header, _, line in functions:
        if "__global__" not in header:
            continue
        template = re.match(r"\s*template\s*<([^>]*)>", header)
        template_params = ()
        if template:
            template_params = tuple(
                p.split()[-1] for p in (s.strip() for s in template.group(1).split(",")) if p
            )
            for t in template_params:
                if t not in TEMPLATE_TYPES:
                    raise ValueError(
                        f"{path.name}:{line}: kernel {name}: template parameter {t!r} has no "
                        f"instantiation types (known: {sorted(TEMPLATE_TYPES)})"
                    )
        param_text = header[header.index("(", header.index(name)) + 1 : header.rindex(")")]
        params = tuple(_parse_param(p, path, line, name) for p in _split_params(param_text))
        yield Kernel(name, template_params, params, name in syncs, line)


def _split_params(text: str) -> list[str]:
    text = " ".join(text.split())
    return [p.strip() for p in text.split(",") if p.strip() and p.strip() != "void"]


def _parse_param(text: str, path: Path, line: int, kernel: str) -> Param:
    match = re.match(r"^(.*?)([A-Za-z_]\w*)$", text)
    if not match or not match.group(1).strip():
        raise ValueError(f"{path.name}:{line}: kernel {kernel}: cannot parse parameter {text!r}")
    decl = match.group(1).strip()
    words = decl.replace("*", " * ").split()
    pointer = "*" in words
    if words.count("*") > 1:
        raise ValueError(f"{path.name}:{line}: kernel {kernel}: pointer-to-pointer {text!r}")
    const = "const" in words[: words.index("*")] if pointer else False
    base = " ".join(w for w in words if w not in ("const", "*", "__restrict__"))
    if base not in CTYPE_DTYPES and base not in TEMPLATE_TYPES:
        raise ValueError(
            f"{path.name}:{line}: kernel {kernel}: parameter {text!r} has type {base!r}; "
            f"kernel parameters must be one of {sorted(CTYPE_DTYPES)} or a template parameter"
        )
    return Param(match.group(2), decl, base, pointer, const)


def _dynamic_shared_names(code: str, path: Path):
    for match in re.finditer(
        r"\bextern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?([^;\[]+?)\s*\[\s*\]", code
    ):
        words = match.group(1).split()
        name, ctype_ = words[-1], " ".join(words[:-1])
        if ctype_ != "unsigned char":
            raise ValueError(
                f"{path.name}: `extern __shared__ {ctype_} {name}[]`: declare dynamic shared "
                "memory as `extern __shared__ unsigned char name[];` and cast it (the same name "
                "with another type in a template instantiation would not compile in CUDA)"
            )
        yield name
