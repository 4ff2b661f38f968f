"""The Starlette application: lifespan-owned shared things, the authenticated GraphQL endpoint, GraphiQL."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL

from graph.auth import Authenticator, Principal
from graph.context import Context, Runtime
from graph.schema import schema
from resolvers.config import GatewayConfig
from resolvers.fanout import FanOut, OutboxSettings, OutboxWorker
from resolvers.idempotency import Idempotency
from resolvers.store import Store
from resolvers.transport import Transport
from resolvers.vendors import REGISTRY

log = logging.getLogger(__name__)

_UNAUTHENTICATED = {
    "errors": [
        {
            "message": "missing or invalid bearer token: send 'Authorization: Bearer <token>'",
            "extensions": {"code": "UNAUTHENTICATED"},
        }
    ]
}


class GatewayGraphQL(GraphQL[Context, None]):
    """Strawberry's ASGI view with bearer authentication in front and orjson behind.

    The GraphiQL page loads without a token (the user sets the header in it); every operation needs one.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in {"http", "websocket"}:
            runtime: Runtime = scope["app"].state.runtime
            headers = dict((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
            principal = runtime.authenticator.authenticate(headers.get("authorization"))
            scope.setdefault("state", {})["principal"] = principal
            if principal is None and not self._is_ide_request(scope, headers):
                if scope["type"] == "websocket":
                    await WebSocket(scope, receive, send).close(code=4401, reason="unauthenticated")
                    return
                response = JSONResponse(
                    _UNAUTHENTICATED,
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="contact-gateway"'},
                )
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def _is_ide_request(self, scope: Scope, headers: dict[str, str]) -> bool:
        if scope["type"] != "http" or scope["method"] != "GET" or not self.graphql_ide:
            return False
        request = Request(scope)
        return "query" not in request.query_params and any(
            accept in headers.get("accept", "") for accept in ("text/html", "*/*")
        )

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> Context:
        principal: Principal | None = request.scope.get("state", {}).get("principal")
        return Context(
            request=request,
            response=response,
            runtime=request.scope["app"].state.runtime,
            principal=principal,
        )

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)


def app_from_env() -> Starlette:
    """Factory for `uvicorn --factory` (multi-worker `serve`): the config file named by CONTACT_GATEWAY_CONFIG."""
    from resolvers.config import load_config

    return create_app(load_config(os.environ["CONTACT_GATEWAY_CONFIG"]))


def _connectors(config: GatewayConfig, transport: Transport) -> dict[Any, Any]:
    return {vendor: REGISTRY[vendor].connector(settings, transport) for vendor, settings in config.vendors.items()}


def create_app(config: GatewayConfig) -> Starlette:
    """The gateway as an ASGI application; shared things open in its lifespan and close on shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            json_serialize=lambda value: orjson.dumps(value).decode(),
        )
        store = Store(config.store.url)
        await store.open()
        connectors = _connectors(config, Transport(session))
        settings = OutboxSettings(**config.outbox.model_dump())
        fanout = FanOut(connectors, store, settings=settings)
        worker = OutboxWorker(fanout)
        app.state.runtime = Runtime(
            config=config,
            session=session,
            store=store,
            connectors=connectors,
            fanout=fanout,
            authenticator=Authenticator(config.auth.tokens),
            worker=worker,
            idempotency=Idempotency(store, ttl_s=config.idempotency.ttl_s),
        )
        worker.start()
        try:
            yield
        finally:
            await worker.stop()
            for connector in connectors.values():
                try:
                    await connector.aclose()
                except Exception:
                    log.exception("closing the %s connector failed", connector.vendor.name)
            await store.close()
            await session.close()

    graphql = GatewayGraphQL(
        schema,
        graphql_ide="graphiql" if config.server.graphiql else None,
        allowed_origins=config.server.allowed_origins,
    )

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    middleware = []
    if config.server.cors_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=config.server.cors_origins,
                allow_methods=["GET", "POST"],
                allow_headers=["Authorization", "Content-Type", "Idempotency-Key", "X-Request-ID"],
            )
        )
    return Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
        ],
        middleware=middleware,
        lifespan=lifespan,
    )
