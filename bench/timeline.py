"""Where one write's wall time goes inside the gateway: `uv run python -m bench.timeline`.

Starts the simulators and one gateway whose code is wrapped at the boundaries of a write's phases (the request in,
strawberry's view and schema, the resolver, `FanOut.prepare`, each `Store.write` and the time its batch spent in
SQLite, `FanOut._send`, the response body out), then sends `--ops` `upsertContact`s one at a time, each followed by
the same write sent raw (the five vendor calls from this process, as the benchmark's raw mode does), and prints the
median and p90 of every phase over the last three quarters of the writes, with the client's p50 of both. With
`--concurrency N` (N > 1), N writes at a time and no raw ones.

Only for looking: the wrappers cost a little themselves, and the phases are wall time on a machine the simulators and
this process share. The gateway's summary comes back through a file named by `BENCH_TIMELINE_OUT`, written when it
exits.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextvars
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w
import uvloop

#: The marks of the request being served (None outside a request).
_MARKS: contextvars.ContextVar[list[tuple[str, float]] | None] = contextvars.ContextVar("timeline", default=None)
_ROWS: list[list[tuple[str, float]]] = []


def _mark(name: str, at: float | None = None) -> None:
    marks = _MARKS.get()
    if marks is not None:
        marks.append((name, time.perf_counter() if at is None else at))


def _around_async(owner: Any, name: str, label: str) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        _mark(f"{label} >")
        try:
            return await original(*args, **kwargs)
        finally:
            _mark(f"{label} <")

    setattr(owner, name, wrapped)


def _around_sync(owner: Any, name: str, label: str) -> None:
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        _mark(f"{label} >")
        try:
            return original(*args, **kwargs)
        finally:
            _mark(f"{label} <")

    setattr(owner, name, wrapped)


def instrument(out: Path) -> None:
    """Wrap the gateway's phases (in this process, before it starts) and write every request's marks at exit."""
    from strawberry.schema import schema as strawberry_schema

    from graph import app, observability, schema
    from resolvers import fanout, store

    middleware = observability.RequestIdMiddleware.__call__

    async def request(self: Any, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await middleware(self, scope, receive, send)
            return
        marks = [("request in", time.perf_counter())]
        token = _MARKS.set(marks)

        async def sending(message: Any) -> None:
            if message["type"] == "http.response.body":
                _mark("body sent >")
            await send(message)

        try:
            await middleware(self, scope, receive, sending)
        finally:
            _MARKS.reset(token)
            _ROWS.append(marks)

    observability.RequestIdMiddleware.__call__ = request  # type: ignore[method-assign]
    _around_async(app.GatewayGraphQL, "run", "view.run")
    _around_async(strawberry_schema.Schema, "execute", "schema.execute")
    _around_async(schema, "_upsert", "resolver _upsert")
    _around_sync(schema, "parse_contact", "parse_contact")
    _around_sync(fanout.FanOut, "prepare", "prepare")
    _around_async(fanout.FanOut, "_send", "vendor calls")

    # Store.write, and when its batch was in SQLite (on the loop's thread or the writer thread).
    in_sqlite: dict[str, tuple[float, float]] = {}
    for name in ("_commit_sqlite", "_commit_inline"):
        commit = getattr(store.Store, name)

        def timed(self: Any, ops: Any, _commit: Callable[..., Any] = commit) -> Any:
            started = time.perf_counter()
            outcome = _commit(self, ops)
            in_sqlite["last"] = (started, time.perf_counter())
            return outcome

        setattr(store.Store, name, timed)
    write = store.Store.write

    async def store_write(self: Any, op: Any) -> Any:
        _mark("Store.write >")
        outcome = await write(self, op)
        if "last" in in_sqlite:
            started, ended = in_sqlite["last"]
            _mark("in SQLite >", started)
            _mark("in SQLite <", ended)
        _mark("Store.write <")
        return outcome

    store.Store.write = store_write  # type: ignore[method-assign]

    def dump() -> None:
        out.write_text(json.dumps([[(name, at) for name, at in row] for row in _ROWS]), encoding="utf-8")

    atexit.register(dump)


def summarise(rows: list[list[tuple[str, float]]]) -> list[tuple[str, float, float]]:
    """(from -> to, median ms, p90 ms) for each step every request of the commonest shape took, in order."""
    shapes: dict[tuple[str, ...], list[list[tuple[str, float]]]] = {}
    for row in rows:
        shapes.setdefault(tuple(name for name, _ in row), []).append(row)
    common = max(shapes.values(), key=len)
    steps = []
    for k in range(1, len(common[0])):
        spans = sorted((row[k][1] - row[k - 1][1]) * 1000 for row in common)
        steps.append(
            (f"{common[0][k - 1][0]} -> {common[0][k][0]}", statistics.median(spans), spans[len(spans) * 9 // 10])
        )
    totals = sorted((row[-1][1] - row[0][1]) * 1000 for row in common)
    steps.append(("request in -> last mark (total)", statistics.median(totals), totals[len(totals) * 9 // 10]))
    return steps


def _spawn_instrumented(config: dict[str, Any], workdir: Path, out: Path) -> Any:
    """`python -m bench.timeline --serve ...`: the gateway with its phases wrapped (`instrument`)."""
    from bench.procs import Gateway, Service, free_port

    (workdir / "gateway.toml").write_text(tomli_w.dumps(config), encoding="utf-8")
    port = free_port()
    log = (workdir / "gateway.log").open("wb")
    args = ["-m", "bench.timeline", "--serve", "--config", str(workdir / "gateway.toml"), "--port", str(port)]
    env = {**os.environ, "BENCH_TIMELINE_OUT": str(out)}
    proc = subprocess.Popen([sys.executable, *args], stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=env)
    return Gateway(Service(proc=proc, log=log), f"http://127.0.0.1:{port}/graphql", config, 1)


async def drive(ops: int, latency: str, concurrency: int = 1) -> None:
    from bench.procs import _wait_ready, gateway_config, start_simulators
    from bench.workload import DirectClient, GatewayClient, client_session

    workdir = Path(tempfile.mkdtemp(prefix="cg-timeline-"))
    simulators, base = start_simulators(workdir)
    out = workdir / "timeline.json"
    config = gateway_config(base, f"sqlite:///{workdir / 'gateway.db'}")
    gateway = _spawn_instrumented(config, workdir, out)
    try:
        await _wait_ready(gateway, workdir / "gateway.log")
        async with client_session() as session:
            if latency != "0":
                low, _, high = latency.partition("-")
                faults = {"latency_ms": int(low), "jitter_ms": int(high or low) - int(low)}
                for vendor in ("oneserve", "eros", "jim2", "superoffice", "valomnia"):
                    async with session.post(f"{base}{vendor}/_admin/faults", json=faults) as response:
                        response.raise_for_status()
            client = GatewayClient(session, gateway.url)
            direct = DirectClient(session, config)
            gateway_ms: list[float] = []
            raw_ms: list[float] = []
            numbers = iter(range(ops))

            async def worker() -> None:
                for n in numbers:
                    started = time.perf_counter()
                    outcome = await client.upsert(f"timeline-{n}")
                    gateway_ms.append((time.perf_counter() - started) * 1000)
                    if not outcome.ok:
                        raise RuntimeError(outcome.error)
                    if concurrency > 1:
                        continue
                    started = time.perf_counter()
                    outcome = await direct.raw(f"timeline-raw-{n}")
                    raw_ms.append((time.perf_counter() - started) * 1000)
                    if not outcome.ok:
                        raise RuntimeError(outcome.error)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
            await direct.aclose()
    finally:
        gateway.stop()
        simulators.stop()
    warm = ops // 4
    rows = json.loads(out.read_text(encoding="utf-8"))[warm:]
    how = "one at a time" if concurrency == 1 else f"{concurrency} at a time (no raw writes)"
    print(f"{len(rows)} writes ({warm} left out as warm-up), vendors {latency} ms, {how}")
    raw = f", raw {statistics.median(raw_ms[warm:]):.2f} ms" if raw_ms else ""
    print(f"client p50: gateway {statistics.median(gateway_ms[warm:]):.2f} ms{raw}")
    print()
    print("| step | median ms | p90 ms |")
    print("|---|---|---|")
    for step, median, p90 in summarise([[(name, at) for name, at in row] for row in rows]):
        print(f"| {step} | {median:.3f} | {p90:.3f} |")


def main() -> int:
    if "--serve" in sys.argv:
        # The instrumented gateway: `python -m bench.timeline --serve <contact-gateway serve arguments>`.
        instrument(Path(os.environ["BENCH_TIMELINE_OUT"]))
        from graph.cli import main as cli

        return cli(["serve", *[a for a in sys.argv[1:] if a != "--serve"]])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--ops", type=int, default=1200, help="writes (the first quarter is warm-up)")
    parser.add_argument("--latency", default="0", help="vendor latency in ms: 0, 25 or 20-80")
    parser.add_argument(
        "--concurrency", type=int, default=1, help="writes in flight at once (default 1; above 1, no raw writes)"
    )
    options = parser.parse_args()
    uvloop.run(drive(options.ops, options.latency, options.concurrency))
    return 0


if __name__ == "__main__":
    sys.exit(main())
