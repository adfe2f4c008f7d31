"""``python -m bench.data list | check | fetch <name> | report``."""

import sys

from bench.data.cli import main

sys.exit(main())
