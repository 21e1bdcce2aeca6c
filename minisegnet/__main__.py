"""``python -m minisegnet`` is the ``minisegnet`` command."""

import sys

from minisegnet.cli import main

sys.exit(main())
