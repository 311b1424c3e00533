"""``python -m aiaas``: the same command line as ``aiaas``."""

import sys

from aiaas.entrypoints.cli import main

sys.exit(main())
