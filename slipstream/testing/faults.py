"""Fault-injection tools: service processes, memory readings.

(The TCP fault proxy the fault tests put between the processes is
``tests/support/proxy.py``.)

* :class:`Service` runs one ``python -m slipstream ...`` process with its log
  in a file, waits for it, kills it with ``SIGKILL`` or stops it with
  ``SIGTERM``, and reads its resident memory from ``/proc``.
* :func:`slope_per_s` fits a least-squares line to memory samples.

Used by ``tests/faults`` (see docs/resilience.md).

Hierarchy::

    SlipstreamError
    └── FaultToolError   a helper process exited, or never became ready
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from slipstream.errors import SlipstreamError
from slipstream.testing.broker import (
    _die_with_parent,
)

__all__ = [
    "FaultToolError",
    "Service",
    "rss_bytes",
    "slope_per_s",
]

logger = logging.getLogger(__name__)


class FaultToolError(SlipstreamError):
    """A helper process exited early or never became ready."""


def _end(process: subprocess.Popen[bytes], sig: int, timeout_s: float) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Service:
    """One ``python -m slipstream ARGS`` process, its log kept in a temporary file.

    Args:
        args: Arguments after ``slipstream`` (global options first).
        name: A label for messages.
        cwd: Working directory (default: the current one).
    """

    def __init__(self, args: Sequence[str], name: str, cwd: Path | None = None) -> None:
        self.args = list(args)
        self.name = name
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        """The process id."""
        if self.process is None:
            raise FaultToolError(f"{self.name} is not started")
        return self.process.pid

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the process (its stdout and stderr go to the log)."""
        if self._log is None:
            self._log = tempfile.TemporaryFile(prefix=f"{self.name}-")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "slipstream", *self.args],
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent(),  # killed with us, even by SIGKILL
        )

    def log(self) -> str:
        """Everything the process (and its predecessors under this object) wrote."""
        if self._log is None or self._log.closed:
            return ""
        self._log.flush()
        self._log.seek(0)
        text = self._log.read().decode(errors="replace")
        self._log.seek(0, os.SEEK_END)
        return text

    def error_lines(self) -> list[str]:
        """Log lines at ERROR or CRITICAL, and tracebacks."""
        return [
            line
            for line in self.log().splitlines()
            if " ERROR " in line or " CRITICAL " in line or line.startswith("Traceback")
        ]

    def kill9(self) -> None:
        """``kill -9`` the process and reap it."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self, timeout_s: float = 15.0) -> int | None:
        """SIGTERM (SIGKILL after ``timeout_s``); returns the exit code."""
        if self.process is None:
            return None
        _end(self.process, signal.SIGTERM, timeout_s)
        return self.process.returncode

    def close(self) -> None:
        """Stop the process if it runs and drop the log."""
        self.stop(5.0)
        if self._log is not None:
            self._log.close()
            self._log = None

    def get_json(self, port: int, path: str, timeout_s: float = 2.0) -> Any:
        """``GET http://127.0.0.1:PORT/PATH`` as JSON (blocking: call in a thread)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout_s) as r:
            return json.loads(r.read())

    async def wait_http(self, port: int, path: str = "/healthz", timeout_s: float = 30.0) -> Any:
        """Wait until ``path`` answers 200 on ``port``; returns the JSON body.

        Raises:
            FaultToolError: The process exited or did not answer in time.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            if not self.running:
                raise FaultToolError(f"{self.name} exited early; its log:\n{self.log()[-3000:]}")
            try:
                return await asyncio.to_thread(self.get_json, port, path, 1.0)
            except OSError:
                if time.monotonic() > deadline:
                    raise FaultToolError(
                        f"{self.name} did not answer on {port}{path} in {timeout_s:g} s"
                    ) from None
                await asyncio.sleep(0.1)  # polling a port that is not listening yet


def rss_bytes(pid: int) -> int:
    """Resident set size of process ``pid``, from ``/proc/PID/status``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise FaultToolError(f"no VmRSS for process {pid}")


def slope_per_s(samples: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of ``(t_s, value)`` samples, in value units per second."""
    n = len(samples)
    if n < 2:
        raise ValueError("need at least two samples for a slope")
    mean_t = sum(t for t, _ in samples) / n
    mean_v = sum(v for _, v in samples) / n
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    if var == 0:
        raise ValueError("samples need at least two distinct times")
    return sum((t - mean_t) * (v - mean_v) for t, v in samples) / var
