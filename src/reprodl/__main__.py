"""`python -m reprodl check`: the same as the `reprodl` command (see reprodl.cli)."""

import sys

from .cli import main

sys.exit(main())
