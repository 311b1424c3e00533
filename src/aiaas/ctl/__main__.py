"""``python -m aiaas.ctl`` works like ``aiaasctl``."""

import sys

from aiaas.ctl.app import main

sys.exit(main())
