"""Child processes that serve a port: wait until they listen, stop them.

Used where Slipstream starts servers of its own as processes (the local
cluster's nodes and nginx, the test tools' stunnel and brokers).
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time

from slipstream.errors import SlipstreamError

__all__ = ["StartError", "stop_process", "wait_listening"]


class StartError(SlipstreamError):
    """A child process did not come up: it exited, or never listened."""


def wait_listening(
    host: str, port: int, timeout_s: float, process: subprocess.Popen[bytes]
) -> None:
    """Wait until ``host:port`` accepts a TCP connection.

    Raises:
        StartError: ``process`` exited first, or the time ran out.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StartError(f"{process.args!r} exited with code {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        # Nothing listens yet: a short pause between connection attempts.
        time.sleep(0.05)
    raise StartError(f"nothing listened on {host}:{port} within {timeout_s:g} s")


def stop_process(
    process: subprocess.Popen[bytes] | None,
    timeout_s: float = 5.0,
    sig: int = signal.SIGTERM,
) -> bool:
    """Send ``sig`` to a running ``process``, then SIGKILL it after ``timeout_s``; reap it.

    Returns:
        Whether it was still running (and so was stopped here).
    """
    if process is None or process.poll() is not None:
        return False
    process.send_signal(sig)
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    return True
