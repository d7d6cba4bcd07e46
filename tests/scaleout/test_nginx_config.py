"""The nginx configuration: timeouts agree with the heartbeat and poll hold; nginx accepts it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from slipstream.app.cluster import (
    Nginx,
    NginxConfig,
    find_nginx,
    proxy_read_timeout_s,
    render_nginx_config,
)
from slipstream.app.cluster.__main__ import main as print_config
from slipstream.testing.broker import free_port

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_CONF = ROOT / "deploy" / "nginx" / "slipstream.conf"
DEPLOY_ARGS = [
    "--listen", "0.0.0.0:80", "--prefix", "/var/lib/slipstream-nginx",
    "--node", "10.0.0.11:8000", "--node", "10.0.0.12:8000", "--node", "10.0.0.13:8000",
    "--daemon",
]  # fmt: skip
needs_nginx = pytest.mark.skipif(find_nginx() is None, reason="needs nginx")


@pytest.mark.parametrize(
    ("ping_s", "timeout_s", "hold_s"), [(20, 20, 25), (5, 5, 25), (30, 10, 60), (0.5, 0.5, 1)]
)
def test_the_proxy_waits_longer_than_the_heartbeat_and_the_poll_hold(
    ping_s: float, timeout_s: float, hold_s: float
) -> None:
    read_s = proxy_read_timeout_s(ping_s, timeout_s, hold_s)
    assert read_s > ping_s + timeout_s
    assert read_s > hold_s
    text = render_nginx_config(
        NginxConfig("127.0.0.1:1", ("127.0.0.1:2",), "/x", ping_s, timeout_s, hold_s)
    )
    assert f"proxy_read_timeout {read_s}s;" in text
    assert f"proxy_send_timeout {read_s}s;" in text


def test_defaults_stay_under_the_common_60_s_idle_timeout() -> None:
    assert proxy_read_timeout_s(20.0, 20.0, 25.0) == 50


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="ping_interval_s"):
        proxy_read_timeout_s(0, 1, 1)
    with pytest.raises(ValueError, match="at least one"):
        NginxConfig("127.0.0.1:1", (), "/x")
    with pytest.raises(ValueError, match="HOST:PORT"):
        NginxConfig("127.0.0.1", ("127.0.0.1:2",), "/x")
    with pytest.raises(ValueError, match="foreground"):
        Nginx(NginxConfig("127.0.0.1:1", ("127.0.0.1:2",), "/x", daemon=True))


def test_the_config_passes_websocket_upgrades_and_every_node() -> None:
    nodes = ("10.0.0.1:8000", "10.0.0.2:8001", "[::1]:8002")
    text = render_nginx_config(NginxConfig("0.0.0.0:80", nodes, "/run/ss"))
    assert "proxy_http_version 1.1;" in text
    assert "proxy_set_header Upgrade $http_upgrade;" in text
    assert "proxy_set_header Connection $connection_upgrade;" in text
    assert "proxy_buffering off;" in text
    for node in nodes:
        assert f"server {node} " in text
    assert "pid /run/ss/nginx.pid;" in text
    assert "daemon off;" in text


def test_the_shipped_deploy_config_is_what_the_renderer_makes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert print_config(DEPLOY_ARGS) == 0
    assert DEPLOY_CONF.read_text() == capsys.readouterr().out, (
        "deploy/nginx/slipstream.conf is stale: regenerate it with python -m "
        f"slipstream.app.cluster {' '.join(DEPLOY_ARGS)} > {DEPLOY_CONF.relative_to(ROOT)}"
    )


def test_the_printer_refuses_bad_arguments() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "slipstream.app.cluster", "--listen", "x", "--node", "a:1",
         "--prefix", "/tmp"],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    assert done.returncode == 2
    assert "expected HOST:PORT" in done.stderr


@needs_nginx
def test_nginx_accepts_the_config_and_runs_as_this_user(tmp_path: Path) -> None:
    config = NginxConfig(f"127.0.0.1:{free_port()}", (f"127.0.0.1:{free_port()}",), str(tmp_path))
    with Nginx(config) as proxy:
        assert proxy.process is not None and proxy.process.poll() is None
        assert (tmp_path / "nginx.pid").exists()
    assert proxy.process is None
