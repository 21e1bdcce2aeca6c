"""``python -m minisegnet`` is the ``minisegnet`` command."""

import sys

try:
    from minisegnet.cli import main
except KeyboardInterrupt:  # Ctrl-C while NumPy is imported: the same line as cli.main's
    print("minisegnet: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
