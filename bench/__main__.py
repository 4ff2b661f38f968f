"""`uv run python -m bench`: the contact-gateway benchmark (see bench/README.md).

Starts the vendor simulators and the gateway (`contact-gateway serve`) as processes of their own, measures the
gateway against a raw fan-out and a naive client turn by turn, then the batch, memory, paging and multi-worker
scenarios; prints a table with PASS/FAIL per target and writes `<out>/<timestamp>.json` and `.png`. A FAIL is
reported, never an exit status: performance never fails the test suite.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson
import uvloop

from bench import scale, throughput
from bench.harness import SCENARIOS, Harness, Latency, Options
from bench.procs import REPO, git_state, start_simulators
from bench.report import ratios, summarise, table, targets

FULL = {"seconds": 5.0, "turns": 3, "mutations": 100_000, "contacts": 100_000, "batch": 1000}
QUICK = {"seconds": 1.5, "turns": 2, "mutations": 2000, "contacts": 5000, "batch": 100}


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(","))


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short turns and small counts (development, smoke)")
    parser.add_argument("--duration", type=float, help="seconds per measured turn (full 5, quick 1.5)")
    parser.add_argument("--turns", type=int, help="turns per mode, interleaved A B C A B C (full 3, quick 2)")
    parser.add_argument("--concurrency", type=_ints, default=(1, 10, 50), help="comma-separated (default 1,10,50)")
    parser.add_argument("--latency", default="0,20-80", help="vendor latency profiles in ms (default 0,20-80)")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated of {','.join(SCENARIOS)}")
    parser.add_argument("--mutations", type=int, help="sequential mutations for the RSS run (full 100000)")
    parser.add_argument("--contacts", type=int, help="stored contacts for the paging run (full 100000)")
    parser.add_argument("--batch", type=int, help="contacts in the one upsertContacts (full 1000)")
    parser.add_argument("--workers", type=int, default=2, help="workers of the multi-worker gateway (default 2)")
    parser.add_argument(
        "--gateway-workers",
        type=int,
        default=1,
        help="workers of the gateway the throughput and batch scenarios measure (default 1)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--store-url", help="a PostgreSQL URL for every gateway (default: a fresh SQLite file each)")
    args = parser.parse_args(argv)
    scenarios = tuple(s.strip() for s in args.scenarios.split(",") if s.strip())
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from {','.join(SCENARIOS)}")
    if args.gateway_workers < 1:
        parser.error(f"--gateway-workers must be at least 1, not {args.gateway_workers}")
    sizes = QUICK if args.quick else FULL
    return Options(
        quick=args.quick,
        seconds=args.duration or sizes["seconds"],
        turns=args.turns or int(sizes["turns"]),
        concurrency=args.concurrency,
        latencies=tuple(Latency.parse(p) for p in args.latency.split(",")),
        scenarios=scenarios,
        mutations=args.mutations or int(sizes["mutations"]),
        contacts=args.contacts or int(sizes["contacts"]),
        batch=args.batch or int(sizes["batch"]),
        workers=args.workers,
        gateway_workers=args.gateway_workers,
        out=args.out,
        store_url=args.store_url,
    )


def _machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


async def run(options: Options, workdir: Path) -> dict[str, Any]:
    """Every chosen scenario; the results as one JSON-able dict."""
    results: dict[str, Any] = {"options": asdict(options) | {"out": str(options.out)}, "machine": _machine()}
    results["git"] = git_state()
    simulators, base = start_simulators(workdir)
    harness = Harness(options, workdir, simulators, base)
    chosen = set(options.scenarios)
    main = None
    try:
        if chosen & {"throughput", "batch"}:
            main = await harness.gateway("gateway", workers=options.gateway_workers)
        if "throughput" in chosen and main:
            print("throughput: gateway / raw / naive, turn by turn", file=sys.stderr, flush=True)
            turns = await throughput.throughput(harness, main)
            summary = summarise(turns)
            results["throughput"] = {
                "turns": [t.as_dict() for t in turns],
                "summary": summary,
                "ratios": ratios(summary),
            }
        if "batch" in chosen and main:
            print("batch: upsertContacts", file=sys.stderr, flush=True)
            results["batch"] = await scale.batch(harness, main)
        if main:
            main.stop()
            main = None
        if "workers" in chosen:
            print(f"workers: 1 against {options.workers}", file=sys.stderr, flush=True)
            turns = await throughput.workers(harness)
            summary = summarise(turns)
            one = next(r for r in summary if r["mode"] == "gateway-1w")
            many = next(r for r in summary if r["mode"] != "gateway-1w")
            results["workers"] = {
                "concurrency": max(options.concurrency),
                "turns": [t.as_dict() for t in turns],
                "summary": summary,
                "one_ops_per_s": one["ops_per_s"],
                "many_ops_per_s": many["ops_per_s"],
                "ratio": many["ops_per_s"] / one["ops_per_s"],
            }
        if "mutations" in chosen:
            print(f"mutations: {options.mutations} sequential", file=sys.stderr, flush=True)
            results["mutations"] = await scale.mutations(harness)
        if "paging" in chosen:
            print(f"paging: {options.contacts} contacts", file=sys.stderr, flush=True)
            results["paging"] = await scale.paging(harness)
    finally:
        results["gateways"] = harness.started
        if main:
            main.stop()
        await harness.aclose()
        simulators.stop()
    results["machine"]["load_average_end"] = os.getloadavg()
    return results


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    options.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="contact-gateway-bench-") as tmp:
        results = uvloop.run(run(options, Path(tmp)))
    results["seconds"] = time.perf_counter() - started
    checks = targets(options, results)
    results["targets"] = [asdict(t) for t in checks]
    json_path = options.out / f"{stamp}.json"
    png_path = options.out / f"{stamp}.png"
    json_path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    from bench.chart import write_chart  # matplotlib only now: it must not weigh on the raw client's RSS

    write_chart(results, png_path)
    print(table(results, checks))
    print(f"\n{json_path}\n{png_path}\n(run took {results['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
