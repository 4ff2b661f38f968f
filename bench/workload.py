"""One operation three ways: through the gateway, as a raw concurrent fan-out, and as a naive sequential client.

Every operation writes a contact with a fresh id, so it is a create at every vendor in every mode. The raw and
naive clients use each vendor's own mapping and connector (the gateway's code, without GraphQL, store or engine)
over one shared aiohttp session opened like the gateway's: the vendor-side work per operation is identical.

The contact carries no e-mail address: with one, Jim2's and Valomnia's connectors look the address up before every
create (a call more each) and Valomnia's simulator scans all its records to answer, which measures the simulators'
record counts more than anyone's overhead. SuperOffice always looks its DbiKey up first (a search, then the create).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from bench.procs import TOKEN
from resolvers.config import build_config
from resolvers.model import Contact
from resolvers.results import VendorStatus
from resolvers.transport import Transport
from resolvers.vendors import REGISTRY
from resolvers.vendors.base import Connector

UPSERT = """mutation Upsert($input: ContactInput!) {
  upsertContact(input: $input) { status results { vendor status durationMs } }
}"""

UPSERT_MANY = """mutation UpsertMany($inputs: [ContactInput!]!) {
  upsertContacts(inputs: $inputs) { status results { vendor status } }
}"""

PAGE = """query Page($after: String) {
  contacts(first: 100, after: $after) {
    edges { node { id firstName lastName vendorLinks { vendor remoteId status } } }
    pageInfo { hasNextPage endCursor }
  }
}"""

_SUCCEEDED = {VendorStatus.CREATED, VendorStatus.UPDATED, VendorStatus.UNCHANGED}


def contact_input(contact_id: str) -> dict[str, Any]:
    """The GraphQL `ContactInput` of one benchmark contact (the README's example, without the e-mail)."""
    return {
        "id": contact_id,
        "title": "Ms",
        "firstName": "Ada",
        "lastName": "Lovelace",
        "jobTitle": "Analyst",
        "details": [{"kind": "MOBILE", "value": "07700900123", "preferred": True}],
        "address": {
            "lines": ["12 St James's Square", "St James's"],
            "city": "London",
            "postCode": "SW1Y 4JH",
            "country": "GB",
            "latitude": 51.5074,
            "longitude": -0.1347,
        },
        "locations": [{"ref": "LOC-1", "preferred": True, "startDate": "2024-01-01"}],
    }


@dataclass(slots=True)
class Outcome:
    """One operation: did every vendor take it, and how long each vendor took (ms), where known."""

    ok: bool
    vendor_ms: list[float] = field(default_factory=list)
    error: str | None = None


Operation = Callable[[str], Awaitable[Outcome]]


#: No single request of the benchmark may take longer (a hung gateway ends the run instead of stalling it).
REQUEST_TIMEOUT_S = 900.0


def client_session(limit: int = 0) -> aiohttp.ClientSession:
    """A session opened like the gateway's (unlimited pool, keep-alive), with a generous total timeout."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S, sock_connect=10),
        connector=aiohttp.TCPConnector(limit=limit, ttl_dns_cache=300),
    )


class GatewayClient:
    """Posts GraphQL operations to one gateway over a keep-alive session."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url
        self.headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    async def post(self, query: str, variables: dict[str, Any]) -> Any:
        """The operation's `data`; GraphQL errors raise."""
        body = orjson.dumps({"query": query, "variables": variables})
        async with self.session.post(self.url, data=body, headers=self.headers) as response:
            answer = orjson.loads(await response.read())
        if answer.get("errors"):
            raise RuntimeError(f"GraphQL errors: {answer['errors']}")
        return answer["data"]

    async def upsert(self, contact_id: str) -> Outcome:
        """`upsertContact` to every vendor."""
        try:
            data = await self.post(UPSERT, {"input": contact_input(contact_id)})
        except (RuntimeError, aiohttp.ClientError, orjson.JSONDecodeError) as exc:
            return Outcome(ok=False, error=str(exc)[:300])
        payload = data["upsertContact"]
        ok = payload["status"] == "SUCCEEDED"
        error = None if ok else str(payload["results"])[:300]
        return Outcome(ok=ok, vendor_ms=[float(r["durationMs"]) for r in payload["results"]], error=error)


class DirectClient:
    """The five vendors called straight from this process with their own connectors (no gateway)."""

    def __init__(self, session: aiohttp.ClientSession, config: dict[str, Any]) -> None:
        settings = build_config(config).vendors
        transport = Transport(session)
        self.connectors: list[Connector[Any]] = [
            REGISTRY[vendor].connector(vendor_settings, transport) for vendor, vendor_settings in settings.items()
        ]

    async def aclose(self) -> None:
        for connector in self.connectors:
            await connector.aclose()

    async def _one(self, connector: Connector[Any], contact: Contact) -> float:
        started = time.perf_counter()
        prepared = connector.prepare(contact)
        if not prepared.valid:
            raise RuntimeError(f"{connector.vendor.name}: {prepared.errors}")
        delivered = await connector.upsert(prepared, None)
        if delivered.status not in _SUCCEEDED:
            raise RuntimeError(f"{connector.vendor.name}: {delivered.status}")
        return (time.perf_counter() - started) * 1000

    async def raw(self, contact_id: str) -> Outcome:
        """The limit: the five requests at once (`asyncio.gather`)."""
        contact = Contact.model_validate(contact_input(contact_id))
        try:
            vendor_ms = await asyncio.gather(*(self._one(c, contact) for c in self.connectors))
        except Exception as exc:
            return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}"[:300])
        return Outcome(ok=True, vendor_ms=list(vendor_ms))

    async def naive(self, contact_id: str) -> Outcome:
        """What a caller writes without the gateway: the five requests one after another."""
        contact = Contact.model_validate(contact_input(contact_id))
        try:
            vendor_ms = [await self._one(c, contact) for c in self.connectors]
        except Exception as exc:
            return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}"[:300])
        return Outcome(ok=True, vendor_ms=vendor_ms)
