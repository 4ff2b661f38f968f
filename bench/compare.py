"""Two versions of the gateway side by side: `uv run python -m bench.compare --base REV`.

On a shared 2-core machine the same code measures 10-30% apart from one minute to the next, so an optimisation is
judged against its base in one run: the base commit is checked out into a temporary git worktree, a gateway is
started from it and one from this work tree (both against the same simulators, 0 ms vendors unless `--latency`,
each with a fresh SQLite store), and their turns alternate (base, this, base, this...) at each concurrency. Every
turn sends `--ops` `upsertContact`s (fresh contact ids: creates at every vendor) after a short warm-up and reads
ops/s, p50 and the gateway process's CPU per operation. The table gives the median over `--rounds` turns, and the
CPU of each.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import uvloop

from bench.harness import Harness, Latency, Options
from bench.procs import REPO, Gateway, start_simulators
from bench.workload import GatewayClient, client_session


async def _turn(gateway: Gateway, client: GatewayClient, prefix: str, ops: int, concurrency: int) -> tuple[float, ...]:
    for i in range(20):
        outcome = await client.upsert(f"{prefix}-warm-{i}")
        assert outcome.ok, outcome.error
    latencies: list[float] = []
    ids = iter(range(ops))

    async def worker() -> None:
        for i in ids:
            started = time.perf_counter()
            outcome = await client.upsert(f"{prefix}-{i}")
            latencies.append(time.perf_counter() - started)
            assert outcome.ok, outcome.error

    cpu = gateway.meter.cpu_s()
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    return ops / elapsed, statistics.median(latencies) * 1000, (gateway.meter.cpu_s() - cpu) / ops * 1000


async def compare(args: argparse.Namespace, workdir: Path, base_tree: Path) -> str:
    latency = Latency.parse(args.latency)
    options = Options(True, 1, 1, args.concurrency, (latency,), (), 0, 0, 0, 1, workdir, None)
    simulators, simulator_base = start_simulators(workdir)
    harness = Harness(options, workdir, simulators, simulator_base)
    gateways: dict[str, Gateway] = {}
    try:
        gateways[args.base] = await harness.gateway("base", repo=base_tree)
        gateways["this tree"] = await harness.gateway("this")
        await harness.set_latency(latency)
        turns: dict[tuple[str, int], list[tuple[float, ...]]] = {}
        async with client_session() as session:
            for round_ in range(args.rounds):
                for concurrency in args.concurrency:
                    for name, gateway in gateways.items():
                        await harness.clear()
                        client = GatewayClient(session, gateway.url)
                        prefix = f"cmp-{'b' if gateway is gateways[args.base] else 't'}-r{round_}-c{concurrency}"
                        turn = await _turn(gateway, client, prefix, args.ops, concurrency)
                        turns.setdefault((name, concurrency), []).append(turn)
    finally:
        for gateway in gateways.values():
            gateway.stop()
        await harness.aclose()
        simulators.stop()
    lines = [
        f"{len(gateways)} gateways, {latency.name} vendors, {args.rounds} alternating turns of {args.ops} upserts each",
        "",
        "| code | conc | ops/s | p50 ms | CPU ms/op | CPU ms/op by turn |",
        "|---|---|---|---|---|---|",
    ]
    for (name, concurrency), rows in turns.items():
        ops, p50, cpu = (statistics.median(row[i] for row in rows) for i in range(3))
        by_turn = " ".join(f"{row[2]:.2f}" for row in rows)
        lines.append(f"| {name} | {concurrency} | {ops:.1f} | {p50:.2f} | {cpu:.2f} | {by_turn} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare", description=__doc__)
    parser.add_argument("--base", required=True, help="the commit to compare this work tree with")
    parser.add_argument("--ops", type=int, default=300, help="upserts per turn")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency", default="0", help="vendor latency in ms: 0 (default), 25 or 20-80")
    parser.add_argument(
        "--concurrency", type=lambda text: tuple(int(c) for c in text.split(",")), default=(1, 20), help="e.g. 1,20"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="contact-gateway-compare-") as tmp:
        base_tree = Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", str(base_tree), args.base], cwd=REPO, check=True)
        try:
            report = uvloop.run(compare(args, Path(tmp), base_tree))
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=REPO, check=False)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
