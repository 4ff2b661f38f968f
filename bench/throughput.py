"""Gateway, raw fan-out and naive client, turn by turn (A B C A B C), at each latency and concurrency; and the
gateway with 1 worker against N workers."""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import Iterator

from bench.harness import Harness
from bench.load import Turn, run_turn
from bench.procs import Gateway, own_meter
from bench.workload import DirectClient, GatewayClient, Operation, client_session

MODES = ("gateway", "raw", "naive")


def contact_ids(prefix: str) -> Iterator[str]:
    return (f"{prefix}-{n}" for n in itertools.count())


def _say(turn: Turn) -> None:
    print(
        f"  {turn.latency:>8} c={turn.concurrency:<3} {turn.mode:<12} turn {turn.turn}: {turn.ops_per_s:8.1f} ops/s "
        f"p50 {turn.p50_ms:7.2f} ms  cpu {turn.cpu_ms_per_op:6.2f} ms/op"
        + (f"  ERRORS {turn.errors}: {turn.first_error}" if turn.errors else ""),
        file=sys.stderr,
        flush=True,
    )


async def throughput(harness: Harness, gateway: Gateway) -> list[Turn]:
    """Every (latency, concurrency): `turns` rounds of gateway, raw, naive, each `seconds` long."""
    options = harness.options
    client_meter = own_meter()
    turns: list[Turn] = []
    async with client_session() as gateway_session, client_session() as direct_session:
        operations: dict[str, Operation] = {}
        gateway_client = GatewayClient(gateway_session, gateway.url)
        direct = DirectClient(direct_session, gateway.config)
        operations = {"gateway": gateway_client.upsert, "raw": direct.raw, "naive": direct.naive}
        try:
            for latency in options.latencies:
                await harness.set_latency(latency)
                for concurrency in options.concurrency:
                    for number, mode in itertools.product(range(1, options.turns + 1), MODES):
                        await harness.clear()
                        turn = await run_turn(
                            operations[mode],
                            contact_ids(f"bench-{mode[0]}-{latency.latency_ms:g}-c{concurrency}-t{number}"),
                            mode=mode,
                            latency=latency.name,
                            concurrency=concurrency,
                            turn=number,
                            seconds=options.seconds,
                            measured=gateway.meter if mode == "gateway" else client_meter,
                            client=client_meter,
                        )
                        _say(turn)
                        turns.append(turn)
        finally:
            await direct.aclose()
    return turns


async def workers(harness: Harness) -> list[Turn]:
    """At the highest concurrency and no latency: a gateway with 1 worker against one with `--workers` N, both
    started together (so both load the same code), turn by turn."""
    options = harness.options
    concurrency = max(options.concurrency)
    names = ("gateway-1w", f"gateway-{options.workers}w")
    started = await asyncio.gather(
        harness.gateway(names[0]), harness.gateway(names[1], workers=options.workers), return_exceptions=True
    )
    gateways = [g for g in started if isinstance(g, Gateway)]
    turns: list[Turn] = []
    try:
        for failure in started:
            if isinstance(failure, BaseException):
                raise failure
        await harness.set_latency(options.zero)
        async with client_session() as session:
            for number, (mode, gateway) in itertools.product(
                range(1, options.turns + 1), zip(names, gateways, strict=True)
            ):
                await harness.clear()
                turn = await run_turn(
                    GatewayClient(session, gateway.url).upsert,
                    contact_ids(f"bench-w{gateway.workers}-c{concurrency}-t{number}"),
                    mode=mode,
                    latency=options.zero.name,
                    concurrency=concurrency,
                    turn=number,
                    seconds=options.seconds,
                    measured=gateway.meter,
                    client=own_meter(),
                )
                _say(turn)
                turns.append(turn)
    finally:
        for gateway in gateways:
            gateway.stop()
    return turns
