"""`python -m tuning ...` is the `tuning` command."""

import sys

from tuning.cli import main

sys.exit(main())
