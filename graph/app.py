"""The Starlette application: lifespan-owned shared things, the authenticated GraphQL endpoint, GraphiQL."""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    parse,
)
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.parse_content_type import parse_content_type
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError

from graph.auth import FEDERATION, Authenticator, FailureLimiter, Principal, audit
from graph.context import Context, Runtime
from graph.graphiql import graphiql_page, refuse_embedded_headers
from graph.negotiation import GRAPHQL_RESPONSE_JSON, JSON, is_request_error, response_media_type
from graph.schema import build_schema
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


class BodyTooLarge(Exception):
    """The request body grew past `server.max_body_bytes` while it was read."""


class GatewayGraphQL(GraphQL[Context, None]):
    """Strawberry's ASGI view with bearer authentication in front and orjson behind.

    The GraphiQL page loads without a token (the user sets the header in it); every operation needs one. Before
    anything is parsed: a client address with too many failed authentications gets 429, a body larger than
    `server.max_body_bytes` 413 (by its Content-Length, or as soon as a streamed body passes the limit).
    """

    #: Set by `create_app`.
    max_body_bytes = 4 * 1024 * 1024
    router_addresses: frozenset[str] = frozenset()
    failures: FailureLimiter | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in {"http", "websocket"}:
            runtime: Runtime = scope["app"].state.runtime
            headers = dict((k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"])
            address = (scope.get("client") or ("unknown", 0))[0]
            wait = self.failures.retry_after(address) if self.failures else None
            if wait is not None:
                await _refuse(scope, receive, send, _too_many_failures(wait))
                return
            principal = await runtime.authenticator.authenticate(headers.get("authorization"))
            scope.setdefault("state", {})["principal"] = principal
            if principal is None and not self._is_ide_request(scope, headers):
                if self.failures is not None:
                    self.failures.failed(address)
                audit("unauthenticated", address=address, presented="authorization" in headers)
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
        if scope["type"] == "http":
            length = headers.get("content-length", "")
            if length.isdigit() and int(length) > self.max_body_bytes:
                await _refuse(scope, receive, send, self._too_large())
                return
            # Strawberry's own loop, but a request refused before execution gets a GraphQL error body, not plain text.
            request = Request(scope, _limited(receive, self.max_body_bytes))
            try:
                answer = await self.run(request)
            except HTTPException as exc:
                answer = _refusal(request, exc)
            except BodyTooLarge:
                answer = self._too_large()
            await answer(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def _too_large(self) -> Response:
        return JSONResponse(
            {
                "errors": [
                    {
                        "message": f"request body larger than {self.max_body_bytes} bytes (server.max_body_bytes)",
                        "extensions": {"code": "PAYLOAD_TOO_LARGE"},
                    }
                ]
            },
            status_code=413,
        )

    def _is_ide_request(self, scope: Scope, headers: dict[str, str]) -> bool:
        if scope["type"] != "http" or scope["method"] != "GET" or not self.graphql_ide:
            return False
        request = Request(scope)
        return "query" not in request.query_params and any(
            accept in headers.get("accept", "") for accept in ("text/html", "*/*")
        )

    #: The page a browser gets at GET /graphql (graph/graphiql.py: local files only); set by `create_app`.
    ide_html = ""

    async def render_graphql_ide(self, request: Request) -> Response:
        return HTMLResponse(self.ide_html)

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

    # GraphQL over HTTP (https://graphql.github.io/graphql-over-http/draft/): content negotiation and status codes.

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        sub_response = await super().get_sub_response(request)
        sub_response.media_type = response_media_type(request.headers.get("accept")) or JSON
        return sub_response

    async def parse_http_body(self, request: AsyncHTTPRequestAdapter) -> GraphQLRequestData | list[GraphQLRequestData]:
        if request.method == "POST":
            content_type, _ = parse_content_type(request.content_type or "")
            if content_type != JSON:
                raise HTTPException(
                    415, f"send the operation as {JSON} (Content-Type), not {content_type or 'nothing'}"
                )
        if response_media_type(request.headers.get("accept")) is None:
            raise HTTPException(
                406, f"this endpoint answers in {GRAPHQL_RESPONSE_JSON} or {JSON}; Accept names neither"
            )
        return await super().parse_http_body(request)

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        refused = self._federation_refusal(request, context, request_data)
        if refused is not None:
            return refused
        try:
            result = await super().execute_single(
                request=request,
                request_adapter=request_adapter,
                sub_response=sub_response,
                context=context,
                root_value=root_value,
                request_data=request_data,
            )
        except HTTPException as exc:
            if isinstance(exc.__cause__, InvalidOperationTypeError) and request_adapter.method == "GET":
                raise HTTPException(405, "mutations are only accepted over POST") from exc
            raise
        # application/json keeps 200 for a failed request (legacy clients read the body); the GraphQL media type says
        # with a 400 that nothing was executed.
        if sub_response.media_type == GRAPHQL_RESPONSE_JSON and is_request_error(result):
            sub_response.status_code = 400
        return result

    def _federation_refusal(
        self, request: Request, context: Context, request_data: GraphQLRequestData
    ) -> ExecutionResult | None:
        """`_service { sdl }` (the whole schema, even with introspection off) only for a `contacts:federation`
        token or a configured router address."""
        query = request_data.query or ""
        if "_service" not in query:
            return None
        principal = context.principal
        if principal is not None and FEDERATION in principal.scopes:
            return None
        if request.client is not None and request.client.host in self.router_addresses:
            return None
        try:
            asks = "_service" in top_level_fields(parse(query), request_data.operation_name)
        except GraphQLError:
            return None  # not a valid document: execution reports the syntax error itself
        if not asks:
            return None
        return PreExecutionError(
            data=None,
            errors=[
                GraphQLError(
                    f"_service: needs a token with the {FEDERATION} scope or a router address "
                    "(server.router_addresses)",
                    extensions={"code": "FORBIDDEN"},
                )
            ],
        )

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        processed = await super().process_result(request, result)
        if is_request_error(result):
            processed.pop("data", None)
        return processed

    def create_response(
        self, response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse], sub_response: Response
    ) -> Response:
        response = super().create_response(response_data, sub_response)
        response.headers["content-type"] = sub_response.media_type or JSON
        return response


def top_level_fields(document: DocumentNode, operation_name: str | None) -> set[str]:
    """The names of the root fields an operation selects (through fragments too)."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    names: set[str] = set()

    def visit(selections: Any, seen: frozenset[str]) -> None:
        for selection in selections:
            if isinstance(selection, FieldNode):
                names.add(selection.name.value)
            elif isinstance(selection, InlineFragmentNode):
                visit(selection.selection_set.selections, seen)
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
                fragment = fragments.get(selection.name.value)
                if fragment is not None:
                    visit(fragment.selection_set.selections, seen | {selection.name.value})

    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode) and (
            operation_name is None or (definition.name is not None and definition.name.value == operation_name)
        ):
            visit(definition.selection_set.selections, frozenset())
    return names


def _limited(receive: Receive, limit: int) -> Receive:
    """`receive` that raises `BodyTooLarge` once the body read so far passes `limit` bytes."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise BodyTooLarge
        return message

    return wrapped


def _too_many_failures(wait: float) -> Response:
    return JSONResponse(
        {
            "errors": [
                {
                    "message": "too many failed authentications from this address; try again later",
                    "extensions": {"code": "RATE_LIMITED", "retryAfter": math.ceil(wait)},
                }
            ]
        },
        status_code=429,
        headers={"Retry-After": str(math.ceil(wait))},
    )


async def _refuse(scope: Scope, receive: Receive, send: Send, response: Response) -> None:
    if scope["type"] == "websocket":
        await WebSocket(scope, receive, send).close(code=4429, reason="too many failed authentications")
        return
    await response(scope, receive, send)


def _refusal(request: Request, exc: HTTPException) -> Response:
    """A request refused before execution: its status, and the reason as a GraphQL error (no `data` entry)."""
    headers = {"Allow": "POST"} if exc.status_code == 405 else {}
    return Response(
        orjson.dumps({"errors": [{"message": exc.reason}]}),
        status_code=exc.status_code,
        headers=headers,
        media_type=response_media_type(request.headers.get("accept")) or JSON,
    )


def app_from_env() -> Starlette:
    """Factory for `uvicorn --factory` (multi-worker `serve`): the config file named by CONTACT_GATEWAY_CONFIG."""
    from resolvers.config import load_config

    config = load_config(os.environ["CONTACT_GATEWAY_CONFIG"])
    refuse_embedded_headers(config)
    return create_app(config)


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
            authenticator=authenticator,
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

    ide = graphiql_page(config.server)  # refuses to start when the page would need another host
    authenticator = Authenticator(config.auth)  # a bad JWKS file stops start-up here
    graphql = GatewayGraphQL(
        build_schema(config.server),
        graphql_ide="graphiql" if ide else None,
        allowed_origins=config.server.allowed_origins,
    )
    graphql.max_body_bytes = config.server.max_body_bytes
    graphql.router_addresses = frozenset(config.server.router_addresses)
    graphql.failures = FailureLimiter(config.auth.max_failures, config.auth.failure_window_s)
    if ide:
        graphql.ide_html = ide.html

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
            *(ide.routes if ide else []),
        ],
        middleware=middleware,
        lifespan=lifespan,
    )
