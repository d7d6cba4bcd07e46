"""The layers are a contract: lint-imports keeps it, and breaks on a wrong-way import."""

from __future__ import annotations

import ast
import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("slipstream", "simulator", "ingest", "downsample", "broadcast")
LAYERS = "Composition above the stages, stages above the core"
CORE_PLACED = "Every module of the shared package is in the core, except the composition"
LINT_IMPORTS = shutil.which("lint-imports") or "lint-imports"

#: Function-local imports that stay, and why (none of them dodges a cycle).
LAZY_IMPORTS = {
    # The embedded bus must not load aiokafka; the Kafka bus is imported on demand.
    ("slipstream/bus/__init__.py", "slipstream.bus"),
    ("slipstream/bus/__init__.py", "slipstream.bus.kafka"),
}


#: Module pairs that still import each other, left for the fan state machine's
#: rewrite of the broadcast node (docs/architecture.md, "Open").
KNOWN_CYCLES: set[frozenset[str]] = set()


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )


def test_the_repository_keeps_every_contract() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        # The core reaching up into a stage.
        ("slipstream/catalogue.py", "from broadcast.config import BroadcastConfig", LAYERS),
        # A stage reaching up into the composition.
        ("simulator/track.py", "import slipstream.app.run", LAYERS),
        # One stage importing another.
        ("broadcast/protocol.py", "import simulator.events", "The stages do not import each other"),
        ("simulator/summary.py", "import ingest.dedup", "Only downsample builds on ingest"),
        # A pure core doing network I/O.
        ("downsample/windows.py", "import aiohttp", "Pure cores import no asyncio network library"),
        # The bus contract pulling in Kafka.
        ("slipstream/bus/memory.py", "import aiokafka", "Only the Kafka bus imports aiokafka"),
        # A new core module the contracts do not place.
        ("slipstream/stray.py", "import slipstream.errors", CORE_PLACED),
    ],
)
def test_a_wrong_way_import_breaks_the_contract(
    tmp_path: Path, module: str, line: str, broken: str
) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package,
            tmp_path / package,
            ignore=shutil.ignore_patterns("static", "__pycache__"),
        )
    path = tmp_path / module
    text = path.read_text() if path.exists() else ""
    path.write_text(f"{text}\n{line}  # deliberate wrong-way import\n")
    result = _lint(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"{broken} BROKEN" in result.stdout, result.stdout + result.stderr


def test_no_import_cycles_between_modules() -> None:
    """Type-checking imports included: a cycle there still couples the two modules."""
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    cycles = []
    for module in sorted(graph.modules):
        for imported in graph.find_modules_directly_imported_by(module):
            if imported == module or module.startswith(imported + "."):
                continue  # a module's own package __init__ is not a cycle of interest
            if imported.startswith(module + "."):
                continue
            chain = graph.find_shortest_chain(importer=imported, imported=module)
            if (
                chain is not None
                and not any(
                    a.startswith(b + ".") or b.startswith(a + ".")
                    for a, b in itertools.pairwise(chain)
                )
                and frozenset(chain) | {module} not in KNOWN_CYCLES
            ):
                cycles.append(" -> ".join((module, *chain)))
    assert not cycles, "\n".join(cycles)


def test_no_function_local_import_dodges_a_cycle() -> None:
    found = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "static" in path.parts:
                continue
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom) and inner.level == 0 and inner.module:
                        top = inner.module.split(".")[0]
                        if top in PACKAGES:
                            found.add((str(path.relative_to(ROOT)), inner.module))
    assert found <= LAZY_IMPORTS, sorted(found - LAZY_IMPORTS)


def test_cli_entry_point_still_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "slipstream", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.startswith("slipstream ")
