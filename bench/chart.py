"""The PNG: ops/s and p50 per mode and concurrency (one column per latency), RSS over mutations, page latencies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

COLOURS = {"gateway": "tab:blue", "raw": "tab:green", "naive": "tab:red"}


def _throughput(axes: Any, rows: list[dict[str, Any]], latencies: list[str]) -> None:
    for column, latency in enumerate(latencies):
        for mode, colour in COLOURS.items():
            points = sorted((r["concurrency"], r) for r in rows if r["latency"] == latency and r["mode"] == mode)
            if not points:
                continue
            xs = [c for c, _ in points]
            axes[0][column].plot(xs, [r["ops_per_s"] for _, r in points], "o-", color=colour, label=mode)
            axes[1][column].plot(xs, [r["p50_ms"] for _, r in points], "o-", color=colour, label=mode)
        for row, label in ((0, "ops/s"), (1, "p50 latency (ms)")):
            ax = axes[row][column]
            ax.set_title(f"{label}, vendors {latency}")
            ax.set_xscale("log")
            ax.set_xlabel("concurrency")
            ax.set_ylabel(label)
            ax.grid(True, alpha=0.3)
            if ax.get_lines():
                ax.legend()


def write_chart(results: dict[str, Any], path: Path) -> None:
    """Write the run's chart to `path`."""
    rows: list[dict[str, Any]] = results.get("throughput", {}).get("summary", [])
    latencies = list(dict.fromkeys(r["latency"] for r in rows)) or ["-"]
    columns = max(2, len(latencies))
    fig, axes = plt.subplots(3, columns, figsize=(6 * columns, 13), squeeze=False)
    _throughput(axes, rows, latencies)
    mutations = results.get("mutations")
    ax = axes[2][0]
    if mutations:
        ops = [s[0] for s in mutations["samples"]]
        ax.plot(ops, [s[1] for s in mutations["samples"]], color="tab:purple")
        ax.axhline(mutations["rss_base_mb"] * 1.1, color="grey", linestyle="--", label="baseline + 10%")
        ax.set_ylim(bottom=0, top=mutations["rss_peak_mb"] * 1.3)
        ax.legend()
    ax.set_title("gateway RSS over sequential mutations")
    ax.set_xlabel("mutations")
    ax.set_ylabel("RSS (MB)")
    ax.grid(True, alpha=0.3)
    paging = results.get("paging")
    ax = axes[2][1]
    if paging:
        ax.plot(range(1, len(paging["page_ms"]) + 1), paging["page_ms"], ".", markersize=2, color="tab:orange")
        ax.axhline(20, color="grey", linestyle="--", label="20 ms target (p50)")
        ax.legend()
    ax.set_title(f"contacts(first: 100) per page, {paging['contacts'] if paging else '-'} contacts")
    ax.set_xlabel("page")
    ax.set_ylabel("latency (ms)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
