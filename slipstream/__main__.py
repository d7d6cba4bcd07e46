"""``python -m slipstream`` runs the command line."""

import sys

from slipstream.app.cli import main

sys.exit(main())
