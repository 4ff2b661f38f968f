"""What every scenario shares: the options, the simulators' process and admin calls, starting gateways."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg  # type: ignore[import-untyped]
import sqlalchemy as sa

from bench.procs import REPO, Gateway, Service, start_gateway
from resolvers.vendors import REGISTRY

#: Prefix of the PostgreSQL databases a run with `--store-url` makes (and drops).
DATABASE_PREFIX = "cg_bench_"

SCENARIOS = ("throughput", "batch", "mutations", "paging", "workers")


@dataclass(frozen=True)
class Latency:
    """Injected vendor latency: every call waits `latency_ms` plus a uniform 0..`jitter_ms`."""

    latency_ms: float
    jitter_ms: float

    @property
    def name(self) -> str:
        if not self.jitter_ms:
            return f"{self.latency_ms:g}ms"
        return f"{self.latency_ms:g}-{self.latency_ms + self.jitter_ms:g}ms"

    @classmethod
    def parse(cls, text: str) -> Latency:
        """`0` (none), `25` (fixed) or `20-80` (uniform between the two)."""
        low, _, high = text.removesuffix("ms").partition("-")
        return cls(float(low), float(high) - float(low) if high else 0.0)


@dataclass(frozen=True)
class Options:
    """Everything a run is told (see `bench/__main__.py` for the flags)."""

    quick: bool
    seconds: float
    turns: int
    concurrency: tuple[int, ...]
    latencies: tuple[Latency, ...]
    scenarios: tuple[str, ...]
    mutations: int
    contacts: int
    batch: int
    workers: int
    out: Path
    store_url: str | None
    #: Workers of the gateway the throughput and batch scenarios measure (`serve --workers N`; 1 by default).
    gateway_workers: int = 1

    @property
    def zero(self) -> Latency:
        """The profile without latency (the first one when none is 0 ms)."""
        return next((lat for lat in self.latencies if not lat.latency_ms and not lat.jitter_ms), self.latencies[0])

    @property
    def jittered(self) -> Latency | None:
        """The first profile with latency, if any."""
        return next((lat for lat in self.latencies if lat.latency_ms or lat.jitter_ms), None)


class Harness:
    """The simulators' process and a temp dir; starts gateways against them."""

    def __init__(self, options: Options, workdir: Path, simulators: Service, simulator_base: str) -> None:
        self.options = options
        self.workdir = workdir
        self.simulators = simulators
        self.simulator_base = simulator_base
        self.session = aiohttp.ClientSession()
        self._databases: list[str] = []
        #: Every gateway started, with the commit it loaded (another engineer may commit during a long run).
        self.started: list[dict[str, Any]] = []

    async def aclose(self) -> None:
        await self.session.close()
        await self._drop_databases()

    async def store_url(self, name: str) -> str:
        """A fresh store for one gateway: a new SQLite file, or with `--store-url` a new PostgreSQL database made
        through that URL (its user may create databases) and dropped when the run ends."""
        if not self.options.store_url:
            return f"sqlite:///{self.workdir / f'{name}.db'}"
        database = f"{DATABASE_PREFIX}{os.getpid()}_{name.replace('-', '_')}"
        conn = await asyncpg.connect(_libpq(self.options.store_url), timeout=10)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{database}"')
        finally:
            await conn.close()
        self._databases.append(database)
        return sa.make_url(_libpq(self.options.store_url)).set(database=database).render_as_string(False)

    async def _drop_databases(self) -> None:
        if not self._databases or not self.options.store_url:
            return
        conn = await asyncpg.connect(_libpq(self.options.store_url), timeout=10)
        try:
            for database in self._databases:
                await conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        finally:
            await conn.close()

    async def gateway(
        self, name: str, workers: int = 1, store_url: str | None = None, repo: Path | None = None
    ) -> Gateway:
        url = store_url or await self.store_url(name)
        gateway = await start_gateway(self.simulator_base, url, self.workdir, name, workers, repo or REPO)
        self.started.append({"name": name, "workers": workers, **gateway.code})
        return gateway

    async def _post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        async with self.session.post(self.simulator_base + path, json=body or {}) as response:
            response.raise_for_status()
            return await response.json()

    async def set_latency(self, latency: Latency) -> None:
        """Every simulator waits this long before each answer from now on."""
        for plugin in REGISTRY.values():
            await self._post(
                f"{plugin.vendor.value}/_admin/faults",
                {"latency_ms": latency.latency_ms, "jitter_ms": latency.jitter_ms},
            )

    async def clear(self) -> None:
        """Forget the simulators' records and calls (tokens and faults stay); restart their `max_in_flight`."""
        await self._post("_bench/clear")

    async def max_in_flight(self) -> dict[str, int]:
        """The most calls each vendor's simulator handled at once since the last clear (`/_admin/state`)."""
        out: dict[str, int] = {}
        for plugin in REGISTRY.values():
            async with self.session.get(f"{self.simulator_base}{plugin.vendor.value}/_admin/state") as response:
                response.raise_for_status()
                out[plugin.vendor.value] = int((await response.json())["max_in_flight"])
        return out


def _libpq(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)
