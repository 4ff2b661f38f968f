"""Shared fixtures: the vendor simulators and the gateway, each on a real socket."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest
import uvicorn

from graph.app import create_app
from graph.cli import demo_config
from resolvers.config import GatewayConfig, build_config
from resolvers.results import Vendor
from resolvers.simulation import Simulator, start_simulators
from resolvers.vendors import REGISTRY

pytest_plugins = ["tests.databases", "tests.processes"]

WRITE_TOKEN = "test-write-token-0123456789"
READ_TOKEN = "test-read-token-0123456789"
WRITE_ONLY_TOKEN = "test-writeonly-token-0123456789"
ADMIN_TOKEN = "test-admin-token-0123456789"
#: What a federation router holds: read, and `_service { sdl }`.
ROUTER_TOKEN = "test-router-token-0123456789"

VENDORS = list(REGISTRY)


class Simulators:
    """The running simulators: their base URL, and admin calls over HTTP."""

    def __init__(self, base: str, by_vendor: dict[Vendor, Simulator], session: aiohttp.ClientSession) -> None:
        self.base = base
        self.by_vendor = by_vendor
        self.session = session

    def url(self, vendor: Vendor) -> str:
        """The mount URL of one vendor's simulator (`http://127.0.0.1:PORT/<vendor>/`)."""
        return f"{self.base}{vendor.value}/"

    async def faults(self, vendor: Vendor, **faults: Any) -> None:
        """Inject faults through the simulator's admin endpoint."""
        async with self.session.post(f"{self.url(vendor)}_admin/faults", json=faults) as response:
            assert response.status == 200, await response.text()

    async def state(self, vendor: Vendor) -> dict[str, Any]:
        """What the simulator holds and received, from its admin endpoint."""
        async with self.session.get(f"{self.url(vendor)}_admin/state") as response:
            assert response.status == 200
            data: dict[str, Any] = await response.json()
            return data

    async def calls(self, vendor: Vendor) -> list[dict[str, Any]]:
        """Calls the simulator received (admin calls excluded)."""
        return list((await self.state(vendor))["calls"])


@pytest.fixture
async def http_session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def simulators(http_session: aiohttp.ClientSession) -> AsyncIterator[Simulators]:
    by_vendor = {vendor: plugin.simulator() for vendor, plugin in REGISTRY.items()}
    runner, port = await start_simulators(list(by_vendor.values()), port=0)
    try:
        yield Simulators(f"http://127.0.0.1:{port}/", by_vendor, http_session)
    finally:
        await runner.cleanup()


def gateway_config(
    simulators: Simulators,
    store_url: str,
    vendor_overrides: dict[str, dict[str, Any] | None] | None = None,
    tables: dict[str, dict[str, Any]] | None = None,
) -> GatewayConfig:
    """The demo configuration against the test simulators, with four tokens, vendor overrides and extra tables."""
    return build_config(gateway_config_data(simulators, store_url, vendor_overrides, tables))


def gateway_config_data(
    simulators: Simulators,
    store_url: str,
    vendor_overrides: dict[str, dict[str, Any] | None] | None = None,
    tables: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """`gateway_config` as the data of a TOML file (for gateways run as separate processes)."""
    data = demo_config(simulators.base, WRITE_TOKEN, store_url)
    data["auth"]["tokens"] += [
        {"name": "reader", "token": READ_TOKEN, "scopes": ["contacts:read"]},
        {"name": "writer-only", "token": WRITE_ONLY_TOKEN, "scopes": ["contacts:write"]},
        {"name": "operator", "token": ADMIN_TOKEN, "scopes": ["contacts:read", "contacts:write", "contacts:admin"]},
        {"name": "router", "token": ROUTER_TOKEN, "scopes": ["contacts:read", "contacts:federation"]},
    ]
    for name, override in (vendor_overrides or {}).items():
        if override is None:
            del data["vendors"][name]  # not configured at all
        else:
            data["vendors"][name].update(override)
    for name, table in (tables or {}).items():
        data.setdefault(name, {}).update(table)
    return data


class Gateway:
    """A gateway served by uvicorn on a real socket, and a client for it."""

    def __init__(self, url: str, client: httpx.AsyncClient) -> None:
        self.url = url
        self.client = client

    async def graphql(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = WRITE_TOKEN
    ) -> dict[str, Any]:
        """POST an operation; the JSON answer (asserting HTTP 200)."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = await self.client.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def serve(config: GatewayConfig) -> tuple[uvicorn.Server, asyncio.Task[None], str]:
    """Start the gateway with uvicorn on a socket bound here; returns the server, its task and its URL.

    The socket is bound before uvicorn starts and handed to it: a port picked free and bound later by uvicorn can
    be taken in between by anything else on the machine (seen as "address already in use" in a busy run)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    return server, task, f"http://127.0.0.1:{port}"


GatewayFactory = Callable[..., "asyncio.Future[Gateway]"]


@pytest.fixture
async def make_gateway(simulators: Simulators, tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """Start gateways (each with its own config overrides); all are stopped after the test."""
    running: list[tuple[uvicorn.Server, asyncio.Task[None], httpx.AsyncClient]] = []

    async def start(
        vendor_overrides: dict[str, dict[str, Any] | None] | None = None,
        store: str = "gateway.db",
        tables: dict[str, dict[str, Any]] | None = None,
        store_url: str | None = None,
    ) -> Gateway:
        url = store_url or f"sqlite:///{tmp_path / store}"
        config = gateway_config(simulators, url, vendor_overrides, tables)
        server, task, url = await serve(config)
        client = httpx.AsyncClient(timeout=30)
        running.append((server, task, client))
        return Gateway(url, client)

    yield start
    for server, task, client in running:
        await client.aclose()
        await stop(server, task)


async def stop(server: uvicorn.Server, task: asyncio.Task[None], within_s: float = 60.0) -> None:
    """Shut a gateway down (its lifespan included); a shutdown that hangs fails the test instead of the whole run."""
    server.should_exit = True
    done, _ = await asyncio.wait({task}, timeout=within_s)
    if not done:
        server.force_exit = True
        task.cancel()
        raise AssertionError(f"the gateway did not shut down within {within_s:g} s")
    task.result()


@pytest.fixture
async def gateway(make_gateway: Callable[..., Any]) -> Gateway:
    gw: Gateway = await make_gateway()
    return gw
