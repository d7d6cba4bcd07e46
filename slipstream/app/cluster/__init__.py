"""Scale-out on one host or many: nginx in front of broadcast nodes, local deployments.

Scale-out rides on Kafka and a standard reverse proxy (docs/deploy.md): every
broadcast node reads every partition, ticks and cursors come from the data,
so nginx may send a fan to any node, and a fan that loses its node resumes on
another with its cursor.

* :mod:`slipstream.app.cluster.nginx`: :func:`render_nginx_config`, :class:`Nginx`.
* :mod:`slipstream.app.cluster.local`: :class:`LocalCluster`, :func:`run_cluster`
  (``slipstream run --kafka HOST:PORT --nodes N``).

Hierarchy::

    SlipstreamError
    └── ClusterError      a process of the deployment would not start or died
"""

from __future__ import annotations

from slipstream.app.cluster.local import LocalCluster, flags_from, run_cluster
from slipstream.app.cluster.nginx import (
    ClusterError,
    Nginx,
    NginxConfig,
    find_nginx,
    proxy_read_timeout_s,
    render_nginx_config,
    wait_listening,
)

__all__ = [
    "ClusterError",
    "LocalCluster",
    "Nginx",
    "NginxConfig",
    "find_nginx",
    "flags_from",
    "proxy_read_timeout_s",
    "render_nginx_config",
    "run_cluster",
    "wait_listening",
]
