"""PNG plots of a fan-out sweep (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["make_plots"]

_COLOURS = {"ws": "#1f77b4", "sse": "#2ca02c", "poll": "#d62728"}
_NAMES = {"ws": "WebSocket", "sse": "HTTP streaming (SSE)", "poll": "long-poll"}


def _series(steps: list[dict[str, Any]], transport: str) -> list[dict[str, Any]]:
    rows = [r for r in steps if r["transport"] == transport and "latency_ms" in r]
    return sorted(rows, key=lambda r: r["subscribers"])


def make_plots(summary: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write the sweep's plots; returns their paths.

    * ``fanout-latency.png``: p50 and p99 delivery latency vs subscribers.
    * ``fanout-cpu.png``: server CPU (% of a core, and µs per delivered
      update) and server memory per connection vs subscribers.
    * ``fanout-bytes.png``: bytes on the wire per update, per codec and transport.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = summary["steps"]
    transports = [t for t in ("ws", "sse", "poll") if _series(steps, t)]
    paths: list[Path] = []

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for t in transports:
        rows = _series(steps, t)
        x = [r["subscribers"] for r in rows]
        ax.plot(
            x,
            [r["latency_ms"]["p50"] for r in rows],
            "o--",
            color=_COLOURS[t],
            label=f"{_NAMES[t]} p50",
        )
        ax.plot(x, [r["latency_ms"]["p99"] for r in rows], "s-", color=_COLOURS[t],
                label=f"{_NAMES[t]} p99")  # fmt: skip
    limit = summary["capacity_rule"]["max_p99_ms"]
    ax.axhline(limit, color="grey", linestyle=":", label=f"p99 limit {limit:g} ms")
    ax.set(xscale="log", yscale="log", xlabel="subscribers (one node process)",
           ylabel="delivery latency, ms (tick emitted -> decoded)",
           title="Delivery latency vs subscribers, 2 Hz ticks")  # fmt: skip
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    paths.append(out_dir / "fanout-latency.png")
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for t in transports:
        rows = _series(steps, t)
        x = [r["subscribers"] for r in rows]
        style = {"color": _COLOURS[t], "marker": "o", "label": _NAMES[t]}
        axes[0].plot(x, [r["server_cpu_pct"] for r in rows], **style)
        axes[1].plot(x, [r["server_cpu_us_per_update"] for r in rows], **style)
        axes[2].plot(x, [r["server_rss_per_connection_kb"] for r in rows], **style)
    axes[0].set(ylabel="server CPU, % of one core", title="Server CPU")
    axes[1].set(ylabel="server CPU µs per delivered update", title="CPU per update",
                yscale="log")  # fmt: skip
    axes[2].set(ylabel="server RSS per connection, KB", title="Memory per connection")
    for ax in axes:
        ax.set(xscale="log", xlabel="subscribers")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    paths.append(out_dir / "fanout-cpu.png")
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    codec_rows = [r for r in summary["codecs"] if "bytes_per_update" in r]
    if codec_rows:
        codecs = sorted({r["codec"] for r in codec_rows})
        fig, ax = plt.subplots(figsize=(7, 4.5))
        width = 0.8 / max(1, len(transports))
        for i, t in enumerate(transports):
            values = []
            for codec in codecs:
                match = [r for r in codec_rows if r["codec"] == codec and r["transport"] == t]
                values.append(match[0]["bytes_per_update"] if match else 0.0)
            xs = [k + (i - (len(transports) - 1) / 2) * width for k in range(len(codecs))]
            bars = ax.bar(xs, values, width, color=_COLOURS[t], label=_NAMES[t])
            ax.bar_label(bars, fmt="%.0f", fontsize=8)
        ax.set_xticks(range(len(codecs)), codecs)
        ax.set(ylabel="bytes on the wire per update (headers included)",
               title="Bytes per update by codec and transport")  # fmt: skip
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=8)
        paths.append(out_dir / "fanout-bytes.png")
        fig.tight_layout()
        fig.savefig(paths[-1], dpi=110)
        plt.close(fig)
    return paths
