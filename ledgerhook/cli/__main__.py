"""``python -m ledgerhook.cli``."""

import sys

from ledgerhook.cli import main

sys.exit(main())
