"""What every vendor's tests build the same way: cross-references, raw payloads, simulators on a socket."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp

from resolvers.results import Vendor, VendorStatus
from resolvers.simulation import Simulator, start_simulators
from resolvers.vendors.base import CrossReference, Prepared


def cross_reference(
    vendor: Vendor,
    remote_id: str | None,
    *,
    contact_id: str = "c-1",
    payload: dict[str, Any] | None = None,
    last_status: VendorStatus | None = VendorStatus.CREATED,
) -> CrossReference:
    """What the gateway would remember of a contact at `vendor` after a write."""
    return CrossReference(
        contact_id=contact_id,
        vendor=vendor,
        remote_id=remote_id,
        hash=None,
        last_status=last_status,
        synced_at=None,
        payload=payload,
    )


def unchecked(vendor: Vendor, payload: dict[str, Any]) -> Prepared:
    """A payload sent as is, skipping pre-flight: to see what the simulator itself enforces."""
    return Prepared(vendor=vendor, payload=payload, wire=None, errors=[], warnings=[])


@asynccontextmanager
async def simulator_server() -> AsyncIterator[Callable[[Simulator], Awaitable[int]]]:
    """`start(simulator)` serves a simulator on a free port and returns the port; all stop at the end."""
    runners: list[Any] = []

    async def start(simulator: Simulator) -> int:
        runner, port = await start_simulators([simulator], port=0)
        runners.append(runner)
        return port

    try:
        yield start
    finally:
        for runner in runners:
            await runner.cleanup()


@dataclass
class Served:
    """One simulator running on a socket, and the client session the test's connectors use."""

    simulator: Simulator
    port: int
    session: aiohttp.ClientSession

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.simulator.name}/"

    @property
    def records(self) -> dict[str, dict[str, Any]]:
        records: dict[str, dict[str, Any]] = self.simulator.state.records
        return records

    async def faults(self, **faults: Any) -> None:
        """Inject faults through the simulator's admin endpoint."""
        async with self.session.post(f"{self.base_url}_admin/faults", json=faults) as response:
            assert response.status == 200, await response.text()
