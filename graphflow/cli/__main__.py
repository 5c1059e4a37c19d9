"""`python -m graphflow.cli` runs the `graphflow` command."""
import sys

from . import main

sys.exit(main())
