"""The typed context every resolver receives, and the shared things the lifespan opens."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import aiohttp
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.dataloader import DataLoader

from graph import convert, types
from graph.auth import Authenticator, Principal
from resolvers.config import GatewayConfig
from resolvers.events import DeliveryEvents
from resolvers.fanout import FanOut, OutboxWorker
from resolvers.idempotency import Idempotency
from resolvers.results import Vendor
from resolvers.store import Store
from resolvers.vendors.base import Connector


@dataclass(slots=True)
class Runtime:
    """What the Starlette lifespan opens once per process and closes on shutdown."""

    config: GatewayConfig
    session: aiohttp.ClientSession
    store: Store
    connectors: dict[Vendor, Connector[Any]]
    fanout: FanOut
    authenticator: Authenticator
    worker: OutboxWorker
    idempotency: Idempotency
    #: Live delivery status (`deliveryUpdates`): the same object `fanout` publishes to.
    events: DeliveryEvents = field(default_factory=DeliveryEvents)


@dataclass(slots=True)
class Context:
    """Per-request context: the caller, the runtime, and request-scoped loaders."""

    request: Request | WebSocket
    response: Response | WebSocket | None
    runtime: Runtime
    principal: Principal | None
    #: A WebSocket's `connection_init` payload (strawberry sets it; `GatewayGraphQL.on_ws_connect` reads the token).
    connection_params: dict[str, Any] | None = None
    contact_loader: DataLoader[str, types.Contact | None] = field(init=False)

    def __post_init__(self) -> None:
        store = self.runtime.store

        fanout = self.runtime.fanout

        async def load(ids: list[str]) -> list[types.Contact | None]:
            # No contact id holds a NUL (ids are checked on write; PostgreSQL text cannot hold one, and one such id
            # would fail the query of the whole batch): such an id is simply not found.
            found = await store.get_contacts([i for i in ids if "\x00" not in i])
            open_deliveries = await fanout.outbox.open_for(list(found))
            return [convert.contact(found[i], open_deliveries) if i in found else None for i in ids]

        # Over HTTP the context is one request's. A WebSocket connection keeps one context for all its operations:
        # a cache there would answer a later `contact` with what an earlier one read (and grow for as long as the
        # socket lives), so its loads are batched but not cached.
        self.contact_loader = DataLoader(load_fn=load, cache=not isinstance(self.request, WebSocket))
