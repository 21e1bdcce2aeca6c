"""The checks the commands share, made on their options before any work is done.

Every check raises :class:`ConfigError` (a ValueError) whose message starts with the option or
file it is about; ``minisegnet.cli.main`` reports it as one ``minisegnet: error:`` line. The
jobs (``train.py``, ``evaluation.py``, ``predict.py``, ``model_summary.py``) call these; the
command line only parses and dispatches. (The checks that run a network, ``size_checked`` and
``load_checkpoint``, are in ``inference.py``.)
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

from minisegnet import backend

__all__ = [
    "ConfigError", "warn", "backend_name", "use_backend", "output_folder", "check_pixels",
    "configure_threads", "number_type", "finite_at_least", "check_input_scale",
]  # fmt: skip


class ConfigError(ValueError):
    """An option that cannot work (unknown model, bad number, conflicting resume options)."""


def number_type(cast, expected: str, accept, refused: str | None = None):
    """An argparse ``type=``: ``cast(text)`` (int or float) when ``accept(value)`` holds, else
    "expected <expected>, got <text>" (``refused``, when given, replaces ``expected`` for a
    number that was read but refused). NaN and infinities are refused by every ``accept`` that
    asks for ``math.isfinite``."""

    def parse(text):
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if not accept(value):
            shown = value if cast is int else text
            raise argparse.ArgumentTypeError(f"expected {refused or expected}, got {shown}")
        return value

    return parse


def finite_at_least(low: float, strict: bool = False):
    """``accept`` of :func:`number_type`: a finite number >= ``low`` (> ``low`` if strict)."""
    return lambda v: math.isfinite(v) and (v > low if strict else v >= low)


def warn(message: str) -> None:
    """A ``minisegnet: warning:`` line: the run works, but maybe not as meant."""
    print(f"minisegnet: warning: {message}", file=sys.stderr)


def backend_name(name: str | None) -> str | None:
    """``--backend``: a known name (whether it works here is checked when it is used)."""
    if name is not None and name not in backend.names():
        raise ConfigError(
            f"--backend: unknown backend {name!r}; valid backends: {', '.join(backend.names())}"
        )
    return name


def use_backend(name: str):
    """``backend.use(name)``; a backend that does not work here is a ConfigError of --backend."""
    try:
        return backend.use(name)
    except backend.BackendUnavailable as error:
        raise ConfigError(f"--backend: {error}") from None


def output_folder(path, label: str = "--out") -> Path:
    """Create folder ``path`` (and its parents) and make sure a file can be written in it, before
    any work is done; otherwise a ConfigError starting with ``label`` (the option)."""
    path = Path(path)
    for part in [path, *path.parents]:
        if part.exists() and not part.is_dir():
            where = "" if part == path else f": {part}"
            raise ConfigError(f"{label}{where} is a file; expected a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise ConfigError(
            f"{label}: cannot write to the folder {path} ({error.strerror or error})"
        ) from None
    return path


def check_pixels(width: int, height: int, what: str) -> None:
    """ConfigError when a ``width`` x ``height`` image is over the image size limit (the one
    ``read_image`` applies to files: ``minisegnet.data.imageio.MAX_IMAGE_PIXELS``)."""
    from minisegnet.data import imageio

    if width * height > imageio.MAX_IMAGE_PIXELS:
        raise ConfigError(
            f"{what} gives {width}x{height}-pixel images, larger than the limit of "
            f"{imageio.MAX_IMAGE_PIXELS / 1e6:.3g} megapixels "
            "(minisegnet.data.imageio.MAX_IMAGE_PIXELS)"
        )


def configure_threads(args) -> dict:
    """``--threads`` (or the defaults) applied; see minisegnet/threads.py."""
    from minisegnet import threads

    return threads.configure(getattr(args, "threads", None))


def check_input_scale(value, what: str = "--input-scale") -> float:
    """``value`` as a float in (0, 4]: the factor frames are resized by before the network; a
    ConfigError naming ``what`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{what} must be a number in (0, 4], got {value!r}")
    if not (math.isfinite(value) and 0 < value <= 4):
        raise ConfigError(f"{what} must be a number in (0, 4], got {value!r}")
    return float(value)
