"""Render the fault suite's JSON lines (``$SLIPSTREAM_FAULT_REPORT``) as markdown tables.

``python -m tests.faults.report FILE``
"""

from __future__ import annotations

import json
import sys
from typing import Any

COLUMNS = [
    ("fault", "fault"),
    ("fans", "fans"),
    ("lost", "lost"),
    ("duplicated", "duplicated"),
    ("unreported_gaps", "unreported gaps"),
    ("reported_gaps", "gaps reported by notice"),
    ("stale_reported", "car-frames reported stale"),
    ("reconnects", "reconnects"),
    ("resume_p50_s", "resume p50 (s)"),
    ("resume_max_s", "resume max (s)"),
]


def cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return "-" if value is None else str(value)


def render(lines: list[dict[str, Any]]) -> str:
    out = ["| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for line in lines:
        out.append("| " + " | ".join(cell(line.get(k)) for k, _ in COLUMNS) + " |")
    out.append("")
    for line in lines:
        extra = {k: v for k, v in line.items() if k not in dict(COLUMNS) and k != "scale"}
        out.append(f"- **{line['fault']}** ({line.get('scale')}): `{json.dumps(extra)}`")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    with open(argv[1], encoding="utf-8") as f:
        print(render([json.loads(line) for line in f if line.strip()]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
