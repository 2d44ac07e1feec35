"""``python -m sweep``: see :mod:`sweep.cli`."""

import sys

from .cli import main

sys.exit(main())
