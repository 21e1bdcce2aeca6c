"""The floors of the house: which module may import which (issue 16).

The package is built in floors, bottom up. A module may import modules on its own floor or
below, never above, and no group of modules may import each other in a circle, except the one
pair that is the autograd engine itself: ``tensor.py`` (the array plus its graph bookkeeping)
and ``autograd.py`` (``Function`` makes tensors, ``Tensor.backward`` runs the engine).

The import graph is read from the source with ``ast``: every ``import`` statement counts, at
module level and inside functions alike (a function-level import is still an arrow between two
files; it only hides it from the reader). Imports done by name at run time (``backend.lazy``,
``importlib.import_module``) are not counted, as in ``/tmp/hfloor_circles.py``, the measure
issue 16 uses.
"""

from __future__ import annotations

import ast
import fnmatch
import textwrap
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "minisegnet"

# One row per floor, bottom up: a name, then the modules on it (dotted names inside
# ``minisegnet``; ``__init__`` is the package itself, ``ops`` a subpackage's ``__init__``;
# ``ops.*`` every other module of that subpackage). A name written out beats a pattern.
FLOORS: list[tuple[str, list[str]]] = [
    # Backends, where arrays live (the one device rule), the shape formulas, and the CUDA
    # toolchain the backends ask whether they can run (g++ for cuda-emu, NVRTC for cuda).
    # The permutohedral lattice imports nothing of the package: the Numba CRF (ops.crf) and
    # the CUDA CRF (cuda.crf) both build their filters on it. OpenMP's waiting policy is
    # chosen at ``import minisegnet``, before anything else loads.
    (
        "foundations",
        """backend arrays openmp ops.geometry ops.crf_lattice cuda cuda.source cuda.gpu
        cuda.emulator""".split(),
    ),
    # The autograd engine: Tensor and Function (the one allowed circle).
    ("engine", "autograd tensor".split()),
    # Kernels on plain arrays, launched on a GPU or the emulator; the ops reach them through
    # their kernel table.
    ("cuda kernels", "cuda.*".split()),
    # One file per op (a Function and its kernels) and the op files' performance engines.
    ("ops", "ops ops.*".split()),
    # The operator methods of Tensor (``a + b``, ``t.sum()``).
    ("tensor methods", "tensor_methods".split()),
    # The one public entry where arguments are checked, the gradient checker, and the package's
    # front door (``ms.cat`` is ``functional.cat``, loaded on first use).
    ("functional", "functional gradcheck __init__".split()),
    ("layers and optimisers", "nn nn.* optim optim.*".split()),
    ("models", "models models.*".split()),
    # What a user runs: data, training, evaluation, weights on disk, pictures.
    (
        "applications",
        """data data.* metrics boundary_f1 progress threads viz legend io checkpoint options
        train_config inference trainer evaluation train refine predict model_summary
        bench""".split(),
    ),
    ("command line", "cli __main__".split()),
]

ALLOWED_CIRCLES = [{"autograd", "tensor"}]


# ----------------------------------------------------------------------------- the checker
def module_names(package_dir: Path) -> dict[str, Path]:
    """Every module of the package, by dotted name inside it (``__init__`` for the package)."""
    names = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def import_graph(package_dir: Path) -> dict[tuple[str, str], int]:
    """Every arrow ``(importer, imported)`` between modules of the package, with the line of
    its first import statement."""
    package = package_dir.name
    modules = module_names(package_dir)

    def inside(dotted: str) -> str | None:
        """The module a dotted name refers to, if it is one of ours."""
        if dotted == package:
            return "__init__"
        if dotted.startswith(package + "."):
            name = dotted[len(package) + 1 :]
            return name if name in modules else None
        return None

    arrows: dict[tuple[str, str], int] = {}
    for name, path in modules.items():
        here = [package] + ([] if name == "__init__" else name.split("."))
        if path.name != "__init__.py":
            here = here[:-1]  # the package a module's relative imports start from
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [inside(alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    start = here[: len(here) - node.level + 1]
                    base = ".".join(start + ([base] if base else []))
                # ``from minisegnet.ops import conv`` imports the module ops.conv;
                # ``from minisegnet.tensor import Tensor`` imports the module tensor.
                targets = [inside(f"{base}.{a.name}") or inside(base) for a in node.names]
            else:
                continue
            for target in targets:
                if target is not None and target != name:
                    arrows.setdefault((name, target), node.lineno)
    return arrows


def circles(modules, arrows) -> list[set[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    successors = {m: sorted(b for a, b in arrows if a == m) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[set[str]] = []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in successors[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(modules):
        if v not in index:
            visit(v)
    return found


def floor_of(floors, module: str) -> int:
    """The floor number of ``module`` (0 is the bottom); a module on no floor is an error."""
    for number, (_, members) in enumerate(floors):
        if module in members:
            return number
    matches = [
        number
        for number, (_, members) in enumerate(floors)
        if any(fnmatch.fnmatchcase(module, m) for m in members if "*" in m)
    ]
    if len(matches) != 1:
        raise AssertionError(
            f"{module} is on {len(matches)} floors of FLOORS in tests/test_architecture.py; "
            "write it out on the one it belongs to"
        )
    return matches[0]


def violations(package_dir: Path, floors, allowed_circles, known=frozenset()) -> list[str]:
    """Every broken rule, as one sentence each: circles other than the allowed ones, and
    imports of a module on a higher floor (arrows in ``known`` are left out)."""
    modules = module_names(package_dir)
    arrows = {k: v for k, v in import_graph(package_dir).items() if k not in known}
    problems = [
        f"import circle: {sorted(c)}" for c in circles(modules, arrows) if c not in allowed_circles
    ]
    for (importer, imported), line in sorted(arrows.items()):
        low, high = floor_of(floors, importer), floor_of(floors, imported)
        if high > low:
            problems.append(
                f"{importer} (floor {floors[low][0]!r}) imports {imported} "
                f"(floor {floors[high][0]!r}, higher) at line {line}"
            )
    return problems


# ----------------------------------------------------------------------------- the tests
def test_the_package_keeps_its_floors():
    assert violations(PACKAGE_DIR, FLOORS, ALLOWED_CIRCLES) == []


def test_every_module_is_on_exactly_one_floor():
    for module in module_names(PACKAGE_DIR):
        floor_of(FLOORS, module)


def _fake_package(tmp_path: Path, files: dict[str, str]) -> Path:
    package = tmp_path / "pkg"
    for name, text in files.items():
        path = package / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return package


FAKE_FLOORS = [("bottom", ["__init__", "low", "low2"]), ("top", ["sub", "sub.*"])]


def test_the_checker_finds_a_circle_made_by_a_function_level_import(tmp_path):
    package = _fake_package(
        tmp_path,
        {
            "__init__.py": "",
            "low.py": "from pkg import low2\n",
            # Hidden inside a function, and written as a relative import: still an arrow.
            "low2.py": "def f():\n    from . import low\n    return low\n",
            "sub/__init__.py": "",
            "sub/top.py": "import pkg.low\n",
        },
    )
    assert violations(package, FAKE_FLOORS, []) == ["import circle: ['low', 'low2']"]
    assert violations(package, FAKE_FLOORS, [{"low", "low2"}]) == []


def test_the_checker_finds_an_import_from_a_higher_floor(tmp_path):
    package = _fake_package(
        tmp_path,
        {
            "__init__.py": "",
            "low.py": "def f():\n    from pkg.sub.top import thing\n    return thing\n",
            "sub/__init__.py": "",
            "sub/top.py": "from ..low import f\nthing = 1\n",
        },
    )
    problems = violations(package, FAKE_FLOORS, [])
    assert problems == [
        "import circle: ['low', 'sub.top']",
        "low (floor 'bottom') imports sub.top (floor 'top', higher) at line 2",
    ]
    assert violations(package, FAKE_FLOORS, [{"low", "sub.top"}], {("low", "sub.top")}) == []
