"""``python -m tui.cli``: the ``vm-manager`` command (the tests run it this way)."""

import sys

from tui.cli import main

sys.exit(main())
