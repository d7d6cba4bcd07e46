"""``python -m slipstream`` runs the command line."""

import sys

from slipstream.cli import main

sys.exit(main())
