"""The Starlette application: lifespan-owned shared things, the authenticated GraphQL endpoint, GraphiQL."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import gc
import hmac
import json
import logging
import math
import os
import re
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import timedelta
from typing import Any, ClassVar

import aiohttp
import orjson
from cross_web import AsyncHTTPRequestAdapter, HTTPException
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.parse_content_type import parse_content_type
from strawberry.http.streaming import HTTPStreamTransport, SSETransport
from strawberry.schema.exceptions import InvalidOperationTypeError
from strawberry.subscriptions import GRAPHQL_SSE_PROTOCOL, GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.types import ExecutionResult
from strawberry.types.unset import UnsetType

from graph.auth import Authenticator, FailureLimiter, Principal, audit
from graph.context import Context, Runtime
from graph.graphiql import graphiql_page, refuse_embedded_headers
from graph.negotiation import (
    EVENT_STREAM,
    GRAPHQL_RESPONSE_JSON,
    JSON,
    accepts_event_stream,
    is_request_error,
    is_subscription,
    response_media_type,
)
from graph.observability import (
    RequestIdMiddleware,
    clock_family,
    configure_logging,
    configure_tracing,
    outbox_families,
    render_metrics,
    store_up_family,
)
from graph.schema import build_schema
from resolvers import observe
from resolvers.config import GatewayConfig
from resolvers.events import DeliveryEvents
from resolvers.fanout import FanOut, OutboxSettings, OutboxWorker
from resolvers.idempotency import Idempotency
from resolvers.model import render_path, unpaired_surrogates
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


#: Digits enough to be an integer orjson would read as a float: past 64 bits, 19 digits below -2**63
#: (-9223372036854775809), 20 above 2**64 - 1.
_LONG_DIGITS = re.compile(rb"[0-9]{19}")


def _lower_media_type(value: bytes) -> bytes:
    media_type, sep, parameters = value.partition(b";")
    return media_type.lower() + sep + parameters


class NotJSON(json.JSONDecodeError):
    """A body json.loads reads but JSON (or the gateway) does not take; `msg` says what and where."""

    def __init__(self, msg: str) -> None:
        super().__init__(msg, "", 0)
        self.msg = msg

    def __str__(self) -> str:
        return self.msg


@dataclasses.dataclass(frozen=True, slots=True)
class _Stray:
    """Where json.loads read NaN, Infinity or a number past a double's range (none of them JSON)."""

    text: str


def _number(text: str) -> float | _Stray:
    value = float(text)
    return value if math.isfinite(value) else _Stray(text)


def _strays(value: Any, loc: tuple[int | str, ...] = ()) -> Iterator[tuple[tuple[int | str, ...], _Stray]]:
    """Where json.loads read something that is not a JSON number (`_number`, `parse_constant`)."""
    if isinstance(value, _Stray):
        yield loc, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strays(item, (*loc, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strays(item, (*loc, index))


def _not_json_where(decoded: object) -> str | None:
    """What a body json.loads read holds that JSON does not, as `<path>: <why>` (the first found); None if nothing.
    Paths are rendered as the model's field errors are (`render_path`: a surrogate in a key is escaped)."""
    where = next(unpaired_surrogates(decoded), None)
    if where is not None:
        surrogate = "a string holds an unpaired UTF-16 surrogate (a lone \\ud800-\\udfff escape)"
        return f"{render_path(where) or 'the body'}: {surrogate}"
    found = next(_strays(decoded), None)
    if found is None:
        return None
    loc, stray = found
    why = "is not JSON" if stray.text in ("NaN", "Infinity", "-Infinity") else "is past a double's range"
    return f"{render_path(loc) or 'the body'}: {stray.text} {why}"


def strict_json(data: str | bytes) -> object:
    """json.loads, exactly (integers up to Python's 4,300-digit limit), refusing what JSON is not with a `NotJSON`
    naming where: a body that is not UTF-8, NaN, Infinity, a number past a double, an integer past that limit, an
    unpaired surrogate, a nesting past Python's recursion limit. json.loads's own errors (malformed JSON) keep
    their line and column."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise NotJSON(f"the body is not UTF-8 (byte {exc.start})") from exc
    try:
        decoded = json.loads(text, parse_constant=_Stray, parse_float=_number)
        refused = _not_json_where(decoded)
    except RecursionError as exc:
        raise NotJSON("nested too deeply") from exc
    except ValueError as exc:  # not a JSONDecodeError (caught by the caller): Python's int-conversion limit
        if isinstance(exc, json.JSONDecodeError):
            raise
        raise NotJSON(f"a number with more than {sys.get_int_max_str_digits()} digits") from exc
    if refused is not None:
        raise NotJSON(refused)
    return decoded


class BodyTooLarge(Exception):
    """The request body grew past `server.max_body_bytes` while it was read."""


@functools.lru_cache(maxsize=64)
def _media_type(content_type: str) -> str:
    """The media type of a Content-Type header; strawberry's parser builds an `email.message.Message` for it,
    which cost more than the check (callers send the same few headers)."""
    return parse_content_type(content_type)[0]


class PromptSSETransport(SSETransport):
    """GraphQL over SSE opening with a comment: uvicorn holds the status line and headers until the first body
    chunk, so without it a subscriber to a quiet contact waited for the first 15 s heartbeat to learn the stream was
    open (an EventSource stays CONNECTING, a proxy may time out)."""

    send_initial_heartbeat: ClassVar[bool] = True


class GatewayGraphQL(GraphQL[Context, None]):
    """Strawberry's ASGI view with bearer authentication in front and orjson behind.

    The GraphiQL page loads without a token (the user sets the header in it); every operation needs one. Before
    anything is parsed: a client address with too many failed authentications gets 429, a body larger than
    `server.max_body_bytes` 413 (by its Content-Length, or as soon as a streamed body passes the limit).
    """

    stream_transport_classes_by_protocol: Mapping[str, type[HTTPStreamTransport]] = {
        **GraphQL.stream_transport_classes_by_protocol,
        GRAPHQL_SSE_PROTOCOL: PromptSSETransport,
    }
    #: Set by `create_app`.
    max_body_bytes = 4 * 1024 * 1024
    #: Token limit for the parse that tells a subscription from other operations (SSE negotiation).
    max_tokens: int | None = None
    failures: FailureLimiter | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in _METHODS:
            # Refused before authentication, as Starlette's route did: the method is wrong whoever asks.
            refusal = HTTPException(405, "Unsupported method, must be of request type POST or GET")
            await _refusal(Request(scope), refusal)(scope, receive, send)
            return
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
            # Browsers cannot set headers on a WebSocket: one without any Authorization header authenticates in its
            # connection_init payload instead (`on_ws_connect`); a header that names no valid token is refused here.
            ws_token_later = scope["type"] == "websocket" and "authorization" not in headers
            if principal is None and not ws_token_later and not self._is_ide_request(scope, headers):
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
            content_type = headers.get("content-type")
            if content_type is not None and content_type != content_type.lower():
                # A media type is case-insensitive (RFC 9110, 8.3.1): `Application/JSON` is JSON. Strawberry compares
                # it as written, so the header is passed on with its type (not its parameters) in lower case.
                scope["headers"] = [
                    (k, _lower_media_type(v) if k == b"content-type" else v) for k, v in scope["headers"]
                ]
            length = headers.get("content-length", "")
            if length.isdigit() and int(length) > self.max_body_bytes:
                await _refuse(scope, receive, send, self._too_large())
                return
            # Strawberry's own loop, but a request refused before execution gets a GraphQL error body, not plain text.
            request = Request(scope, _limited(receive, self.max_body_bytes))
            try:
                # HEAD of the page answers as GET does (uvicorn sends no body); strawberry knows only GET and POST.
                ide_head = scope["method"] == "HEAD" and self._is_ide_request(scope, headers)
                answer = await (self.render_graphql_ide(request) if ide_head else self.run(request))
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
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD") or not self.graphql_ide:
            return False
        request = Request(scope)
        return "query" not in request.query_params and any(
            accept in headers.get("accept", "") for accept in ("text/html", "*/*")
        )

    #: The page a browser gets at GET /graphql (graph/graphiql.py: local files only); set by `create_app`.
    ide_html = ""

    async def render_graphql_ide(self, request: Request) -> Response:
        return HTMLResponse(self.ide_html, headers=IDE_HEADERS)

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

    def decode_json(self, data: str | bytes) -> object:
        # orjson: a request body decodes several times faster than with json.loads. But orjson reads an integer
        # past 64 bits as a float: 123456789012345678901234567890 would become another id. A body with 19 digits in
        # a row (such a number has 19 or more) is read by `strict_json` instead, exactly; so is a body orjson
        # refuses, for the 400 answer to say what and where (`parse_json`): orjson's errors name neither, and
        # a lone `\\ud800` escape or 1e400 in a contact's field deserves its field named.
        if not _LONG_DIGITS.search(data if isinstance(data, bytes) else data.encode()):
            try:
                return orjson.loads(data)
            except orjson.JSONDecodeError:
                pass
        return strict_json(data)

    def parse_json(self, data: str | bytes) -> Any:
        """The body (or a GET request's `variables` / `extensions`) as JSON, which must be an object (or, for a
        batch, an array of objects): strawberry reads fields of it and answered anything else with a 500."""
        try:
            decoded = self.decode_json(data)
        except NotJSON as exc:
            raise HTTPException(400, f"Unable to parse request body as JSON: {exc.msg}") from exc
        except json.JSONDecodeError as exc:
            raise HTTPException(
                400, f"Unable to parse request body as JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
            ) from exc
        if isinstance(decoded, dict) or (isinstance(decoded, list) and all(isinstance(d, dict) for d in decoded)):
            return decoded
        raise HTTPException(400, "the request's JSON must be an object (a batch: an array of objects)")

    # GraphQL over HTTP (https://graphql.github.io/graphql-over-http/draft/): content negotiation and status codes.

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        sub_response = await super().get_sub_response(request)
        sub_response.media_type = response_media_type(request.headers.get("accept")) or JSON
        return sub_response

    async def parse_http_body(self, request: AsyncHTTPRequestAdapter) -> GraphQLRequestData | list[GraphQLRequestData]:
        if request.method == "POST":
            content_type = _media_type(request.content_type or "")
            if content_type != JSON:
                raise HTTPException(
                    415, f"send the operation as {JSON} (Content-Type), not {content_type or 'nothing'}"
                )
        accept = request.headers.get("accept")
        answers_json = response_media_type(accept) is not None
        may_stream = request.method == "POST" and accepts_event_stream(accept)
        if not answers_json and not may_stream:
            raise HTTPException(
                406,
                f"this endpoint answers in {GRAPHQL_RESPONSE_JSON} or {JSON} (subscriptions also in {EVENT_STREAM} "
                "over POST); Accept names none of them",
            )
        data = await super().parse_http_body(request)
        operations = data if isinstance(data, list) else [data]
        if any(o.operation_name is not None and not isinstance(o.operation_name, str) for o in operations):
            raise HTTPException(400, "operationName: must be a string")
        subscribes = [is_subscription(o.query, o.operation_name, max_tokens=self.max_tokens) for o in operations]
        # An unparsable document from a client that takes only SSE gets its error as an SSE event.
        if (
            may_stream
            and isinstance(data, GraphQLRequestData)
            and (subscribes[0] or (subscribes[0] is None and not answers_json))
        ):
            return dataclasses.replace(data, protocol=SSETransport.protocol)
        if any(subscribes):
            raise HTTPException(
                406,
                f"a subscription streams: POST it with Accept: {EVENT_STREAM}, or subscribe over a "
                "graphql-transport-ws WebSocket at /graphql",
            )
        if not answers_json:
            raise HTTPException(
                406, f"{EVENT_STREAM} answers subscriptions only; accept {GRAPHQL_RESPONSE_JSON} or {JSON} for the rest"
            )
        return data

    def _get_stream_transport_from_headers(self, headers: Mapping[str, str]) -> HTTPStreamTransport | None:
        """None: `parse_http_body` picks SSE itself, and only for a subscription POSTed with `Accept:
        text/event-stream`, so queries, mutations and batches keep their JSON answers whatever else Accept names."""
        return None

    async def on_ws_connect(self, context: Context) -> UnsetType | dict[str, object] | None:
        """`connection_init`: a WebSocket opened without an Authorization header (a browser cannot send one)
        authenticates with `{"Authorization": "Bearer <token>"}` (or `authorization`) in the payload.

        Refused with close code 4403 (graphql-transport-ws; `connection_error` then 1011 on the legacy graphql-ws)
        when neither the handshake nor the payload names a valid token; the refusal counts as a failed
        authentication of the client address (`auth.max_failures`), like a bad header does.
        """
        if context.principal is not None:
            return UnsetType()  # acknowledge without a payload
        params = context.connection_params or {}
        presented = params.get("Authorization", params.get("authorization"))
        principal = await context.runtime.authenticator.authenticate(presented if isinstance(presented, str) else None)
        if principal is None:
            address = (context.request.scope.get("client") or ("unknown", 0))[0]
            if self.failures is not None:
                self.failures.failed(address)
            audit("unauthenticated", address=address, presented=presented is not None, via="connection_init")
            raise ConnectionRejectionError({"message": "missing or invalid bearer token in connection_init"})
        context.principal = principal
        return UnsetType()

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
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


#: The GraphiQL page's response headers: never cached (demo's page carries its token), never framed by another site
#: (clickjacking: the page runs writes), no type sniffing, and no address of it sent on as a referrer.
IDE_HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


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


#: The methods /graphql answers (HEAD: the GraphiQL page only).
_METHODS = ("GET", "HEAD", "POST")

#: HTTP status of a request refused before execution -> its error's `extensions.code`.
_REFUSAL_CODES = {
    400: "BAD_REQUEST",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    415: "UNSUPPORTED_MEDIA_TYPE",
}


def _refusal(request: Request, exc: HTTPException) -> Response:
    """A request refused before execution: its status, and the reason as a GraphQL error (no `data` entry) with a
    code for the status (`BAD_REQUEST` for a body that is not a GraphQL request, ...)."""
    # A mutation over GET may be sent by POST; any other method by GET (queries; HEAD for the GraphiQL page) or POST.
    allowed = "POST" if request.method == "GET" else ", ".join(_METHODS)
    headers = {"Allow": allowed} if exc.status_code == 405 else {}
    error: dict[str, Any] = {"message": exc.reason}
    if exc.status_code in _REFUSAL_CODES:
        error["extensions"] = {"code": _REFUSAL_CODES[exc.status_code]}
    return Response(
        orjson.dumps({"errors": [error]}),
        status_code=exc.status_code,
        headers=headers,
        media_type=response_media_type(request.headers.get("accept")) or JSON,
    )


async def _readiness(runtime: Runtime, *, verbose: bool) -> Response:
    """`/readyz`: the store answers, its schema is at the head revision, the outbox worker runs (503 otherwise).

    With `verbose`, each vendor's state as this process sees it: reachable, breaker, last success, last failure and
    its code, deliveries waiting.
    """
    checks: dict[str, bool] = {}
    try:
        async with asyncio.timeout(2):
            checks["store"] = await runtime.store.ping()
            checks["migrations"] = await runtime.store.migrated()
    except Exception:
        checks.setdefault("store", False)
        checks.setdefault("migrations", False)
    checks["outbox_worker"] = runtime.worker.alive
    ready = all(checks.values())
    body: dict[str, Any] = {"status": "ready" if ready else "not ready", "checks": checks}
    if verbose:
        try:
            stats = await runtime.fanout.outbox.stats()
        except Exception:
            stats = {}
        body["vendors"] = {
            vendor.name: {
                "reachable": health.reachable,
                "breaker": runtime.fanout.breakers[vendor].state.value,
                "last_success_at": health.last_success_at.isoformat() if health.last_success_at else None,
                "last_failure_at": health.last_failure_at.isoformat() if health.last_failure_at else None,
                "last_failure_code": health.last_failure_code,
                "queued_deliveries": stats.get(vendor, (0, None))[0],
            }
            for vendor, health in runtime.fanout.health.items()
        }
    return JSONResponse(body, status_code=200 if ready else 503)


def app_from_env() -> Starlette:
    """Factory for `uvicorn --factory` (multi-worker `serve`): the config file named by CONTACT_GATEWAY_CONFIG."""
    from resolvers.config import load_config

    config = load_config(os.environ["CONTACT_GATEWAY_CONFIG"])
    refuse_embedded_headers(config)
    configure_logging(config.logging)  # each worker process logs JSON lines too
    return create_app(config)


def _connectors(config: GatewayConfig, transport: Transport) -> dict[Any, Any]:
    return {vendor: REGISTRY[vendor].connector(settings, transport) for vendor, settings in config.vendors.items()}


class _GcTuning:
    """Keep the cyclic garbage collector off what lives as long as the process, and make it run less often, while
    at least one app is serving (tests start and stop many apps in one interpreter, overlapping).

    Everything alive after start-up (modules, the schema, the connectors: most of the heap) is frozen out of
    collection (`gc.freeze`): a full collection otherwise walks all of it, and it did so every few pages of
    `contacts(first: 100)` (~100 ms, one page in sixteen). A young-generation threshold of thousands rather than
    700 allocations runs the collector a few times per write instead of dozens (bench/README.md). The first app to
    start saves Python's settings and the last to stop restores them; `gc.freeze` again at each start takes in
    what the later app made.
    """

    def __init__(self) -> None:
        self.serving = 0
        self.saved: tuple[int, int, int] | None = None

    def start(self, young_threshold: int) -> None:
        if self.serving == 0:
            self.saved = gc.get_threshold()
        self.serving += 1
        gc.collect()
        gc.freeze()
        if young_threshold and self.saved is not None:
            gc.set_threshold(young_threshold, self.saved[1], self.saved[2])

    def stop(self) -> None:
        self.serving -= 1
        if self.serving == 0 and self.saved is not None:
            gc.unfreeze()
            gc.set_threshold(*self.saved)
            self.saved = None


_gc_tuning = _GcTuning()


def create_app(config: GatewayConfig) -> Starlette:
    """The gateway as an ASGI application; shared things open in its lifespan and close on shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        observe.personal_data = config.logging.personal_data
        tracing = configure_tracing(config.telemetry)
        session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            json_serialize=lambda value: orjson.dumps(value).decode(),
        )
        store = Store(config.store.url)
        await store.open()
        connectors = _connectors(config, Transport(session))
        settings = OutboxSettings(**config.outbox.model_dump())
        events = DeliveryEvents()
        fanout = FanOut(connectors, store, settings=settings, events=events)
        worker = OutboxWorker(fanout)
        app.state.runtime = Runtime(
            config=config,
            session=session,
            store=store,
            connectors=connectors,
            fanout=fanout,
            authenticator=authenticator,
            worker=worker,
            idempotency=Idempotency(
                store,
                ttl_s=config.idempotency.ttl_s,
                lease_s=Idempotency.lease_for(
                    max((v.timeout_s for v in config.vendors.values()), default=0.0), config.outbox.lease_grace_s
                ),
            ),
            events=events,
        )
        worker.start()
        _gc_tuning.start(config.server.gc_threshold)
        try:
            yield
        finally:
            _gc_tuning.stop()
            await worker.stop()
            try:
                released = await fanout.outbox.release()
                if released:
                    log.info("shutdown: %d deliveries left in the outbox for the next process", released)
            except Exception:
                log.exception("shutdown: releasing outbox leases failed (they run out on their own)")
            for connector in connectors.values():
                try:
                    await connector.aclose()
                except Exception:
                    log.exception("closing the %s connector failed", connector.vendor.name)
            await store.close()
            await session.close()
            if tracing is not None:
                tracing.shutdown()  # flushes the spans still batched
            log.info("shutdown: complete")
            # A `--workers N` worker is killed by the SIGTERM uvicorn raises again once it has served: the lines its
            # loop logged last would die with it in `LoopBatchingHandler`. Written now, they reach the log.
            for handler in logging.getLogger().handlers:
                handler.flush()

    ide = graphiql_page(config.server)  # refuses to start when the page would need another host
    authenticator = Authenticator(config.auth)  # a bad JWKS file stops start-up here
    graphql = GatewayGraphQL(
        build_schema(config.server),
        graphql_ide="graphiql" if ide else None,
        allowed_origins=config.server.allowed_origins,
        # WebSocket (graphql-transport-ws, legacy graphql-ws) and SSE for `deliveryUpdates`.
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL, GRAPHQL_SSE_PROTOCOL),
        # A socket that has not authenticated (connection_init) within this long is closed (4408).
        connection_init_wait_timeout=timedelta(seconds=10),
    )
    graphql.max_body_bytes = config.server.max_body_bytes
    graphql.max_tokens = config.server.max_tokens
    graphql.failures = FailureLimiter(config.auth.max_failures, config.auth.failure_window_s)
    if ide:
        graphql.ide_html = ide.html

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(request: Request) -> Response:
        return await _readiness(request.app.state.runtime, verbose=request.query_params.get("verbose") in ("1", "true"))

    async def metrics(request: Request) -> Response:
        if config.metrics.token is not None:
            presented = request.headers.get("authorization", "").removeprefix("Bearer ").strip().encode()
            if not hmac.compare_digest(presented, config.metrics.token.get_secret_value().encode()):
                return PlainTextResponse("metrics: send Authorization: Bearer <metrics.token>", status_code=401)
        runtime: Runtime = request.app.state.runtime
        try:
            async with asyncio.timeout(2):
                stats = await runtime.fanout.outbox.stats()
        except Exception:
            # The store is down (or too slow): every other metric still answers, and store_up says why these do not.
            log.warning("metrics: the outbox could not be read; its gauges are left out", exc_info=True)
            families = store_up_family(False)
        else:
            families = store_up_family(True) + outbox_families(
                {vendor.value: stats.get(vendor, (0, None)) for vendor in runtime.connectors}
            )
        body, media_type = render_metrics(families + clock_family())
        return Response(body, media_type=media_type)

    middleware = [Middleware(RequestIdMiddleware)]
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
            # Every method reaches the GraphQL app, so PUT or DELETE is refused as GraphQL (405 with a code), not by
            # Starlette's plain-text 405.
            Route("/graphql", graphql),
            WebSocketRoute("/graphql", graphql),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            *([Route("/metrics", metrics)] if config.metrics.enabled else []),
            *(ide.routes if ide else []),
        ],
        middleware=middleware,
        lifespan=lifespan,
    )
