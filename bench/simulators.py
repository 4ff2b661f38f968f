"""The five vendor simulators in a process of their own: `python -m bench.simulators --port 0`.

They run apart from the gateway and from the load generator, so their CPU is in neither's accounting. Prints
`{"port": N}` on one line once listening; SIGTERM or SIGINT stops them.

Besides each simulator's own admin endpoints, `POST /_bench/clear` forgets every simulator's records and calls and
restarts `max_in_flight` from the calls in flight now, but keeps tokens, sessions and faults: the benchmark clears
between turns, so a vendor's record count (and the cost of its lookups, which scan the records) stays bounded. It
also reseeds each simulator's jitter with the vendor's name, so every turn draws the same latencies in the same order.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
from collections.abc import Awaitable, Callable

import uvloop
from aiohttp import web

from resolvers.simulation import Simulator, simulator_app
from resolvers.vendors import REGISTRY


def _clear_handler(simulators: list[Simulator]) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def clear(request: web.Request) -> web.Response:
        for simulator in simulators:
            state = simulator.state
            state.records.clear()
            state.calls.clear()
            state.max_in_flight = state.in_flight
            # Common random numbers: every turn (gateway, raw, naive alike) draws the same latencies in the same order
            # at each vendor, so the modes are compared on the same dice, not on different samples of them.
            state.jitter.seed(simulator.name)
        return web.json_response({"cleared": [s.name for s in simulators]})

    return clear


async def serve(host: str, port: int) -> None:
    """Serve every registered vendor's simulator at `/<vendor>/` until told to stop."""
    simulators = [plugin.simulator() for plugin in REGISTRY.values()]
    app = simulator_app(simulators)
    app.router.add_post("/_bench/clear", _clear_handler(simulators))
    runner = web.AppRunner(app, access_log=None, handle_signals=False, handler_cancellation=True, shutdown_timeout=1)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    print(json.dumps({"port": int(runner.addresses[0][1])}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.simulators", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
