"""The ``minisegnet`` command line.

minisegnet backends        which backends work on this machine, and why not when they don't
"""

from __future__ import annotations

import argparse
import sys

from minisegnet import __version__, backend


def _cmd_backends(args) -> int:
    for name in backend.names():
        b = backend.get(name)
        reason = b.unavailable_reason()
        status = "available" if reason is None else f"unavailable: {reason}"
        marker = "*" if name == backend.current().name else " "
        print(f"{marker} {name:9s} {b.description} ({status})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="minisegnet", description="Semantic segmentation networks, built to be studied."
    )
    parser.add_argument("--version", action="version", version=f"minisegnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("backends", help="list the backends and whether they work here")
    p.set_defaults(func=_cmd_backends)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
