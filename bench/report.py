"""Medians over turns, the ratios, the targets with PASS/FAIL, and the printed table."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.harness import Options
from bench.load import Turn

#: Fields of a `Turn` summarised by their median over turns.
_MEDIAN = (
    "ops_per_s",
    "p50_ms",
    "p95_ms",
    "p99_ms",
    "cpu_ms_per_op",
    "client_cpu_ms_per_op",
    "peak_rss_mb",
    "slowest_vendor_p50_ms",
    "vendor_sum_p50_ms",
)
#: `serve --workers N` "scales" when N workers give at least this much more throughput than one.
WORKERS_SCALE = 1.2


def summarise(turns: Sequence[Turn]) -> list[dict[str, Any]]:
    """One row per (latency, concurrency, mode): the median of each measure over its turns, errors summed."""
    groups: dict[tuple[str, int, str], list[Turn]] = {}
    for turn in turns:
        groups.setdefault((turn.latency, turn.concurrency, turn.mode), []).append(turn)
    rows = []
    for (latency, concurrency, mode), group in groups.items():
        row: dict[str, Any] = {"latency": latency, "concurrency": concurrency, "mode": mode, "turns": len(group)}
        for name in _MEDIAN:
            row[name] = statistics.median(getattr(t, name) for t in group)
        row["ops_per_s_min"] = min(t.ops_per_s for t in group)
        row["ops_per_s_max"] = max(t.ops_per_s for t in group)
        row["ops"] = sum(t.ops for t in group)
        row["errors"] = sum(t.errors for t in group)
        rows.append(row)
    return rows


def _find(rows: Sequence[dict[str, Any]], latency: str, concurrency: int, mode: str) -> dict[str, Any] | None:
    return next(
        (r for r in rows if r["latency"] == latency and r["concurrency"] == concurrency and r["mode"] == mode), None
    )


def ratios(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (latency, concurrency): gateway/raw and naive/gateway, for throughput and for p50 latency."""
    out = []
    for row in rows:
        if row["mode"] != "gateway":
            continue
        raw = _find(rows, row["latency"], row["concurrency"], "raw")
        naive = _find(rows, row["latency"], row["concurrency"], "naive")
        if raw is None or naive is None:
            continue
        out.append(
            {
                "latency": row["latency"],
                "concurrency": row["concurrency"],
                "gateway_over_raw_ops": row["ops_per_s"] / raw["ops_per_s"],
                "naive_over_gateway_ops": naive["ops_per_s"] / row["ops_per_s"],
                "gateway_over_raw_p50": row["p50_ms"] / raw["p50_ms"],
                "naive_over_gateway_p50": naive["p50_ms"] / row["p50_ms"],
                "gateway_minus_raw_p50_ms": row["p50_ms"] - raw["p50_ms"],
            }
        )
    return out


@dataclass
class Target:
    """One target of the issue, as measured by this run."""

    name: str
    goal: str
    measured: str
    verdict: str  # PASS, FAIL or "n/a" (its scenario did not run)
    note: str = ""


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def targets(options: Options, results: dict[str, Any]) -> list[Target]:
    """Every target of the issue, PASS or FAIL (never an exit status)."""
    rows: list[dict[str, Any]] = results.get("throughput", {}).get("summary", [])
    out: list[Target] = []
    top, low = max(options.concurrency), min(options.concurrency)
    zero = options.zero.name
    gateway, raw = _find(rows, zero, top, "gateway"), _find(rows, zero, top, "raw")
    if gateway and raw:
        ratio = gateway["ops_per_s"] / raw["ops_per_s"]
        measured = f"{ratio:.2f} ({gateway['ops_per_s']:.0f} / {raw['ops_per_s']:.0f} ops/s)"
        out.append(Target(f"throughput gateway/raw, c={top}, {zero}", ">= 0.60", measured, _verdict(ratio >= 0.6)))
    else:
        out.append(Target(f"throughput gateway/raw, c={top}, {zero}", ">= 0.60", "-", "n/a"))
    jittered = options.jittered
    for concurrency in options.concurrency:
        name = f"p50 vs slowest vendor, c={concurrency}, {jittered.name if jittered else '-'}"
        gateway = _find(rows, jittered.name, concurrency, "gateway") if jittered else None
        raw = _find(rows, jittered.name, concurrency, "raw") if jittered else None
        if gateway and raw:
            over = gateway["p50_ms"] - raw["slowest_vendor_p50_ms"]
            measured = f"{gateway['p50_ms']:.1f} ms vs {raw['slowest_vendor_p50_ms']:.1f} ms ({over:+.1f} ms)"
            note = f"sum of vendors {raw['vendor_sum_p50_ms']:.0f} ms"
            if concurrency > 16:
                note += "; c > vendors' max_concurrency (16): calls queue in the gateway"
            out.append(Target(name, "<= slowest + 5 ms", measured, _verdict(over <= 5), note))
        else:
            out.append(Target(name, "<= slowest + 5 ms", "-", "n/a"))
    gateway, raw = _find(rows, zero, low, "gateway"), _find(rows, zero, low, "raw")
    name = f"p50 overhead over raw, c={low}, {zero}"
    if gateway and raw:
        over = gateway["p50_ms"] - raw["p50_ms"]
        measured = f"{over:+.2f} ms ({gateway['p50_ms']:.2f} vs {raw['p50_ms']:.2f} ms)"
        out.append(Target(name, "<= 1.5 ms", measured, _verdict(over <= 1.5)))
    else:
        out.append(Target(name, "<= 1.5 ms", "-", "n/a"))
    for target in out:
        _say_workers(options, target)
    out.extend(_scale_targets(options, results))
    return out


def _say_workers(options: Options, target: Target) -> None:
    """Note on a target measured on the throughput and batch gateway when that gateway ran several workers: judged
    on what was measured, and said (the issue's targets are read with one worker unless told)."""
    if options.gateway_workers > 1:
        said = f"gateway: serve --workers {options.gateway_workers}"
        target.note = f"{target.note}; {said}" if target.note else said


def _scale_targets(options: Options, results: dict[str, Any]) -> list[Target]:
    out: list[Target] = []
    mutations = results.get("mutations")
    name = f"RSS growth over {options.mutations} mutations"
    if mutations:
        measured = (
            f"{mutations['growth_pct']:+.1f}% ({mutations['rss_base_mb']:.1f} -> {mutations['rss_end_mb']:.1f} MB)"
        )
        note = f"baseline after {mutations['warmup_ops']} ops; from start {mutations['growth_from_start_pct']:+.1f}%"
        out.append(Target(name, "< 10%", measured, _verdict(mutations["growth_pct"] < 10), note))
    else:
        out.append(Target(name, "< 10%", "-", "n/a"))
    paging = results.get("paging")
    name = f"contacts(first: 100) p50 at {options.contacts} contacts"
    if paging:
        measured = f"{paging['p50_ms']:.2f} ms (p95 {paging['p95_ms']:.2f} ms, {paging['pages']} pages)"
        out.append(Target(name, "< 20 ms", measured, _verdict(paging["p50_ms"] < 20)))
    else:
        out.append(Target(name, "< 20 ms", "-", "n/a"))
    workers = results.get("workers")
    name = f"serve --workers {options.workers} vs 1, c={max(options.concurrency)}"
    if workers:
        ratio = workers["ratio"]
        measured = f"x{ratio:.2f} ({workers['many_ops_per_s']:.0f} vs {workers['one_ops_per_s']:.0f} ops/s)"
        goal = f">= x{WORKERS_SCALE:.1f}"
        note = "simulators and load generator share the 2 cores"
        out.append(Target(name, goal, measured, _verdict(ratio >= WORKERS_SCALE), note))
    else:
        out.append(Target(name, f">= x{WORKERS_SCALE:.1f}", "-", "n/a"))
    batch = results.get("batch")
    name = f"upsertContacts x{options.batch}: no vendor over max_concurrency"
    if batch:
        ok = all(b["within_limits"] and b["succeeded"] == b["contacts"] for b in batch)
        measured = "; ".join(
            f"{b['latency']}: {b['seconds']:.2f} s, max in flight {max(b['max_in_flight'].values())}" for b in batch
        )
        out.append(Target(name, "all SUCCEEDED, <= limit", measured, _verdict(ok)))
        _say_workers(options, out[-1])
    else:
        out.append(Target(name, "all SUCCEEDED, <= limit", "-", "n/a"))
    return out


def _grid(header: Sequence[str], lines: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in column) for column in zip(header, *lines, strict=True)]
    render = [" | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in (header, *lines)]
    render.insert(1, "-|-".join("-" * w for w in widths))
    return "\n".join(f"| {line} |" for line in render)


def _code(results: dict[str, Any]) -> str:
    def label(state: dict[str, Any]) -> str:
        return f"{state.get('commit', '?')}{' (uncommitted changes)' if state.get('dirty') else ''}"

    gateways = ", ".join(f"{g['name']} {label(g)}" for g in results.get("gateways", []))
    return f"Code: benchmark process (raw and naive clients) {label(results.get('git', {}))}; gateways: {gateways}"


def table(results: dict[str, Any], checks: Sequence[Target]) -> str:
    """The printed (and README) tables: throughput medians, ratios, the other scenarios, the targets."""
    parts = [_code(results)]
    rows = results.get("throughput", {}).get("summary", [])
    if rows:
        header = [
            "latency",
            "conc",
            "mode",
            "ops/s",
            "ops/s by turn",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "CPU ms/op",
            "peak RSS MB",
            "errors",
        ]
        lines = [
            [
                r["latency"],
                str(r["concurrency"]),
                r["mode"],
                f"{r['ops_per_s']:.1f}",
                f"{r['ops_per_s_min']:.0f}-{r['ops_per_s_max']:.0f}",
                f"{r['p50_ms']:.2f}",
                f"{r['p95_ms']:.2f}",
                f"{r['p99_ms']:.2f}",
                f"{r['cpu_ms_per_op']:.2f}",
                f"{r['peak_rss_mb']:.1f}",
                str(r["errors"]),
            ]
            for r in rows
        ]
        many = results.get("options", {}).get("gateway_workers", 1)
        workers = f"; gateway: serve --workers {many}" if many > 1 else ""
        parts.append(f"Throughput (median over turns{workers})\n\n" + _grid(header, lines))
        header = ["latency", "conc", "gateway/raw ops", "naive/gateway ops", "gateway/raw p50", "naive/gateway p50"]
        lines = [
            [
                r["latency"],
                str(r["concurrency"]),
                f"{r['gateway_over_raw_ops']:.2f}",
                f"{r['naive_over_gateway_ops']:.2f}",
                f"{r['gateway_over_raw_p50']:.2f}",
                f"{r['naive_over_gateway_p50']:.2f}",
            ]
            for r in results["throughput"]["ratios"]
        ]
        parts.append("Ratios\n\n" + _grid(header, lines))
    workers = results.get("workers")
    if workers:
        header = ["gateway", "ops/s", "p50 ms", "p95 ms", "CPU ms/op", "peak RSS MB", "errors"]
        lines = [
            [
                r["mode"],
                f"{r['ops_per_s']:.1f}",
                f"{r['p50_ms']:.2f}",
                f"{r['p95_ms']:.2f}",
                f"{r['cpu_ms_per_op']:.2f}",
                f"{r['peak_rss_mb']:.1f}",
                str(r["errors"]),
            ]
            for r in workers["summary"]
        ]
        parts.append(f"Workers (c={workers['concurrency']}, median over turns)\n\n" + _grid(header, lines))
    for run in results.get("batch", []):
        parts.append(
            f"upsertContacts: {run['contacts']} contacts in one mutation, vendors {run['latency']}: "
            f"{run['seconds']:.2f} s ({run['contacts_per_s']:.0f} contacts/s), {run['succeeded']} SUCCEEDED; "
            f"most calls in flight per vendor {run['max_in_flight']} (limits {run['max_concurrency']})"
        )
    mutations = results.get("mutations")
    if mutations:
        parts.append(
            f"Mutations: {mutations['mutations']} sequential in {mutations['seconds']:.0f} s "
            f"({mutations['ops_per_s']:.0f}/s, p50 {mutations['p50_ms']:.2f} ms, p99 {mutations['p99_ms']:.2f} ms, "
            f"gateway CPU {mutations['cpu_ms_per_op']:.2f} ms/op, {mutations['errors']} errors); RSS "
            f"{mutations['rss_start_mb']:.1f} MB at start, {mutations['rss_base_mb']:.1f} after "
            f"{mutations['warmup_ops']} ops, {mutations['rss_end_mb']:.1f} at the end"
        )
    paging = results.get("paging")
    if paging:
        parts.append(
            f"Paging: {paging['contacts']} contacts (filled in {paging['fill_seconds']:.0f} s), {paging['pages']} "
            f"pages of 100: p50 {paging['p50_ms']:.2f} ms, p95 {paging['p95_ms']:.2f} ms, "
            f"p99 {paging['p99_ms']:.2f} ms, max {paging['max_ms']:.2f} ms"
        )
    header = ["target", "goal", "measured", "verdict", "note"]
    lines = [[t.name, t.goal, t.measured, t.verdict, t.note] for t in checks]
    parts.append("Targets\n\n" + _grid(header, lines))
    return "\n\n".join(parts)
