"""A TLS terminator in front of a test broker: Debian's ``stunnel4``.

Tansu 0.6 does not serve TLS itself (its ``--cert``/``--key`` refuse to go
together), so TLS tests put stunnel in front of it and have the broker
advertise stunnel's port (``TansuBroker(advertised_port=...)``): every Kafka
connection, bootstrap and per-broker, then goes through TLS.

    with TansuBroker(advertised_port=port) as broker, StunnelTls(
        port, broker.port, cert, key, client_ca=ca_if_mutual
    ):
        ... --kafka 127.0.0.1:{port} --kafka-security-protocol SSL ...
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import types
from pathlib import Path

from slipstream.errors import SlipstreamError
from slipstream.processes import StartError, stop_process, wait_listening

__all__ = ["StunnelError", "StunnelTls", "find_stunnel"]


class StunnelError(SlipstreamError):
    """stunnel is missing or did not start."""


def find_stunnel() -> str | None:
    """Path of the stunnel binary (Debian package ``stunnel4``), or None."""
    return shutil.which("stunnel4") or shutil.which("stunnel")


class StunnelTls:
    """stunnel accepting TLS on ``127.0.0.1:port`` and forwarding plaintext to ``target_port``.

    Args:
        port: Where TLS is accepted.
        target_port: The plaintext server behind it (on 127.0.0.1).
        certfile: Server certificate chain (PEM).
        keyfile: Its private key (PEM).
        client_ca: With a CA file, clients must present a certificate it
            signed (mutual TLS); None: no client certificate asked for.
        start_timeout_s: How long :meth:`start` waits for the port to open.
    """

    def __init__(
        self,
        port: int,
        target_port: int,
        certfile: str | Path,
        keyfile: str | Path,
        *,
        client_ca: str | Path | None = None,
        start_timeout_s: float = 10.0,
    ) -> None:
        self.port = port
        self.target_port = target_port
        self.certfile, self.keyfile = str(certfile), str(keyfile)
        self.client_ca = str(client_ca) if client_ca is not None else None
        self.start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def _config(self, log: Path) -> str:
        lines = [
            "foreground = yes",
            f"output = {log}",
            "debug = notice",
            "[kafka]",
            f"accept = 127.0.0.1:{self.port}",
            f"connect = 127.0.0.1:{self.target_port}",
            f"cert = {self.certfile}",
            f"key = {self.keyfile}",
        ]
        if self.client_ca is not None:
            lines += [f"CAfile = {self.client_ca}", "verifyChain = yes", "requireCert = yes"]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        """Start stunnel and wait until it accepts connections.

        Raises:
            StunnelError: stunnel is not installed, exited, or never listened.
        """
        binary = find_stunnel()
        if binary is None:
            raise StunnelError("TLS tests need stunnel: apt-get install stunnel4")
        self._dir = tempfile.TemporaryDirectory(prefix="slipstream-stunnel-")
        config = Path(self._dir.name) / "stunnel.conf"
        config.write_text(self._config(Path(self._dir.name) / "stunnel.log"))
        self._process = subprocess.Popen(
            [binary, str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_listening("127.0.0.1", self.port, self.start_timeout_s, self._process)
        except StartError as exc:
            log = self.output()
            self.stop()
            raise StunnelError(f"stunnel did not start: {exc}; its log:\n{log}") from None

    def output(self) -> str:
        """stunnel's log so far."""
        if self._dir is None:
            return ""
        log = Path(self._dir.name) / "stunnel.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def stop(self) -> None:
        """Terminate stunnel and remove its files."""
        process, self._process = self._process, None
        stop_process(process, 5.0)
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    def __enter__(self) -> StunnelTls:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: types.TracebackType | None,
    ) -> None:
        self.stop()
