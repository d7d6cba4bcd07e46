"""Log output of the command line: human lines or one JSON object per line.

Only the command line (and the processes it spawns) configures logging; the
library code only logs.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from slipstream.logfilter import RepeatFilter

__all__ = ["configure_logging"]


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def configure_logging(level: str, fmt: str) -> None:
    """Configure the root logger (only the CLI does this)."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)-5s %(name)s: %(message)s", "%H:%M:%S")
        )
        logging.Formatter.converter = time.localtime
    # During a broker outage aiokafka repeats the same errors tens of times a second.
    handler.addFilter(RepeatFilter("aiokafka"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka is chatty at INFO about group membership; keep it to warnings.
    logging.getLogger("aiokafka").setLevel(max(root.level, logging.WARNING))
