"""Operating the gateway: request ids, JSON logs, GraphQL operation metrics and spans, /metrics, /readyz, tracing.

- Every HTTP request gets a request id: the caller's `X-Request-ID` when it is a sane token (1-128 of
  `A-Za-z0-9._:-`), else a generated one; it is returned in `X-Request-ID` and carried by every log line the
  request causes (structlog contextvars).
- Logs (`serve`, `demo`): one JSON object per line on stdout through structlog's stdlib formatter: timestamp,
  level, logger, message, request id, and the event's fields (`extra={"fields": {...}}`). One line per GraphQL
  operation (name, type, duration, error count, principal) and one per vendor call (`resolvers/observe.py`).
- `/metrics`: prometheus-client text; per GraphQL operation name and type, request counts by outcome and durations;
  the engine's vendor, breaker, rate-limit and store metrics; the outbox's depth and oldest age per vendor, read
  from the store at each scrape (so every worker reports the same, true numbers). With `--workers N` the CLI sets
  `PROMETHEUS_MULTIPROC_DIR` and the counters of all workers are summed.
- Tracing (`[telemetry] otlp_endpoint`): an OTLP/HTTP exporter; one span per GraphQL operation, continuing the
  caller's W3C `traceparent`, with the vendor calls as children; `traceparent` is sent on to vendors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import re
import sys
import time
import uuid
from collections.abc import Iterator, MutableMapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
import structlog
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import REGISTRY as DEFAULT_REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.extensions import SchemaExtension

from resolvers import clock, observe
from resolvers.config import LoggingConfig, TelemetryConfig
from resolvers.observe import child

if TYPE_CHECKING:
    from graph.context import Context

log = logging.getLogger("contact_gateway.graphql")
tracer = trace.get_tracer("contact_gateway")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_OPERATION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
#: Distinct operation names kept as metric labels per process; later ones count as "other" (names come from
#: callers: unbounded label values would grow the metrics without limit).
MAX_OPERATION_NAMES = 200
_seen_names: set[str] = set()

GRAPHQL_REQUESTS = Counter(
    "contact_gateway_graphql_requests_total",
    "GraphQL operations by name, type and outcome (ok, error: any error in the answer).",
    ["operation_name", "operation_type", "outcome"],
)
GRAPHQL_DURATION = Histogram(
    "contact_gateway_graphql_request_duration_seconds",
    "Duration of one GraphQL operation (parse to result).",
    ["operation_name", "operation_type"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


def metric_name(name: object) -> str:
    """The label for an operation name: `anonymous`, the name, or `other` past the cap or when malformed."""
    if not name:
        return "anonymous"
    if not isinstance(name, str) or not _OPERATION_NAME.fullmatch(name):
        return "other"
    if name not in _seen_names:
        if len(_seen_names) >= MAX_OPERATION_NAMES:
            return "other"
        _seen_names.add(name)
    return name


# -- request ids and logs ------------------------------------------------------------------------------------------


class RequestIdMiddleware:
    """Gives every HTTP request an id (the caller's `X-Request-ID` if sane), binds it for logs, returns it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", request_id.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            structlog.contextvars.clear_contextvars()


def _fields(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Lift `extra={"fields": {...}}` of a stdlib record into the event."""
    record = event.get("_record")
    fields = getattr(record, "fields", None)
    if isinstance(fields, dict):
        for key, value in fields.items():
            event.setdefault(key, value)
    return event


def _orjson_dumps(value: Any, **_: Any) -> str:
    # orjson: several log lines per write, each rendered ~10x faster than with json.dumps.
    return orjson.dumps(value, default=str).decode()


#: What every foreign (stdlib) record goes through before the processors: context, level, logger, time, fields.
_PRE_CHAIN: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    _fields,
]


class JSONLineFormatter(structlog.stdlib.ProcessorFormatter):
    """structlog's `ProcessorFormatter` (the chain above, then the JSON renderer), with a fast path for a plain
    record (no exception, no stack): the same object, keys in the same order, built in one function.

    A write logs several lines (one per vendor call, the operation, the audit line, the access log); through the
    processor chain each cost several times what the fast path does (bench/README.md). A test holds both paths
    to the same output.
    """

    #: The second last formatted and its text (one tuple: read and replaced atomically, whichever thread logs).
    _second: tuple[int, str] = (-1, "")

    def _timestamp(self, created: float) -> str:
        """`created` as ISO 8601 UTC with microseconds, "2026-12-02T04:10:48.415944Z" (always six digits): the date
        and time of day are formatted once a second, not once a line (they were a tenth of a line's cost)."""
        fraction, whole = math.modf(created)  # as `datetime.fromtimestamp` splits and rounds it
        second, micros = int(whole), round(fraction * 1e6)
        if micros >= 1_000_000:
            second, micros = second + 1, micros - 1_000_000
        cached, text = self._second
        if cached != second:
            text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._second = (second, text)
        return f"{text}.{micros:06d}Z"

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info or getattr(record, "_from_structlog", False):
            return super().format(record)
        event: dict[str, Any] = {"event": record.getMessage()}
        for key, value in structlog.contextvars.get_contextvars().items():
            event.setdefault(key, value)  # as merge_contextvars
        level = record.levelname.lower()
        event["level"] = "warning" if level == "warn" else level  # as add_log_level
        event["logger"] = record.name
        event["timestamp"] = self._timestamp(record.created)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                event.setdefault(key, value)
        return _orjson_dumps(event)


class LoopBatchingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A `StreamHandler` that writes the lines logged during one event-loop iteration in one write.

    A write logs eight lines on the loop thread (five vendor calls, the operation, the audit line, the access log).
    One `write` + `flush` each released and retook the GIL eight times a write, and at c=50 the loop thread then
    often waited for the store's writer thread to hand the GIL back. Batched, the loop gives the GIL away once an
    iteration at most; no CPU saving per write was measurable (bench/README.md). On a thread running an event loop,
    a formatted line is kept and the first one of an iteration schedules `_write_pending` with `call_soon`, which
    writes them all before the loop next polls (the lines appear within the iteration that logged them, in order).
    On any other thread, and in `flush` (which `logging.shutdown` calls at exit), what is kept is written first and
    the line after it, at once.
    """

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._pending: list[str] = []
        #: The loop on which `_write_pending` is scheduled (None when nothing is kept). A line from another loop
        #: schedules it there too: a loop may close before its callback runs (a test's, say).
        self._scheduled: asyncio.AbstractEventLoop | None = None

    def emit(self, record: logging.LogRecord) -> None:
        # Called by `Handler.handle` with the handler's lock held, as `_write_pending` and `flush` take it.
        try:
            line = self.format(record) + self.terminator
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                self._pending.append(line)
                self._write()
                return
            self._pending.append(line)
            if self._scheduled is not loop:
                self._scheduled = loop
                loop.call_soon(self._write_pending)
        except RecursionError:  # as StreamHandler.emit
            raise
        except Exception:
            self.handleError(record)

    def _write(self) -> None:
        lines, self._pending, self._scheduled = self._pending, [], None
        if lines:
            self.stream.write("".join(lines))
            self.stream.flush()

    def _write_pending(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            try:
                self._write()
            except Exception:  # the stream is closed or full: say so on stderr, as Handler.handleError would
                if logging.raiseExceptions:
                    sys.stderr.write("--- Logging error: the log stream could not be written ---\n")

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            self._write()
            super().flush()


def configure_logging(config: LoggingConfig) -> None:
    """Route every stdlib log record (ours, uvicorn's, libraries') through structlog: JSON lines on stdout."""
    processors: list[Any] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        structlog.processors.format_exc_info,
    ]
    formatter: logging.Formatter
    if config.format == "json":
        formatter = JSONLineFormatter(
            foreign_pre_chain=_PRE_CHAIN,
            processors=[*processors, structlog.processors.JSONRenderer(serializer=_orjson_dumps)],
        )
    else:
        formatter = structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_PRE_CHAIN, processors=[*processors, structlog.dev.ConsoleRenderer(colors=False)]
        )
    # No line shows the caller's file, line, thread or process: the logging HOWTO's "Optimization" switches spare
    # every record the frame walk and the lookups (https://docs.python.org/3/howto/logging.html#optimization).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = LoopBatchingHandler(sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(config.level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Alembic says which dialect it works with at INFO each time it looks at the schema: /readyz does, at every probe.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, root.level))


# -- GraphQL operations --------------------------------------------------------------------------------------------


class OperationObserver(SchemaExtension):
    """One span, one log line and the metrics of each GraphQL operation."""

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        context: Context | None = self.execution_context.context
        # Tracing off (no SDK provider installed by `configure_tracing`): no context to extract, no span to make.
        tracing = observe.tracing()
        token = None
        span_cm: Any = contextlib.nullcontext(trace.INVALID_SPAN)
        if tracing:
            request = getattr(context, "request", None)
            carrier = dict(request.headers) if request is not None and hasattr(request, "headers") else {}
            token = otel_context.attach(propagate.extract(carrier))
            span_cm = tracer.start_as_current_span("graphql.operation", kind=trace.SpanKind.SERVER)
        span = span_cm.__enter__()
        try:
            yield
        finally:
            execution = self.execution_context
            try:
                operation_type = execution.operation_type.value
            except Exception:  # the document did not parse: no operation to name
                operation_type = "unknown"
            name = execution.operation_name
            result = execution.result
            errors = len(getattr(result, "errors", None) or [])
            elapsed = time.perf_counter() - started
            label = metric_name(name)
            child(GRAPHQL_REQUESTS, label, operation_type, "error" if errors else "ok").inc()
            child(GRAPHQL_DURATION, label, operation_type).observe(elapsed)
            if span.is_recording():
                span.update_name(f"graphql {operation_type} {label}")
                span.set_attribute("graphql.operation.type", operation_type)
                span.set_attribute("graphql.operation.name", name or "")
                if errors:
                    span.set_status(trace.Status(trace.StatusCode.ERROR, f"{errors} error(s)"))
            span_cm.__exit__(None, None, None)
            if token is not None:
                otel_context.detach(token)
            principal = getattr(context, "principal", None)
            log.info(
                "graphql_operation",
                extra={
                    "fields": {
                        "operation_name": name,
                        "operation_type": operation_type,
                        "duration_ms": round(elapsed * 1000, 3),
                        "errors": errors,
                        "principal": principal.name if principal is not None else None,
                    }
                },
            )


# -- tracing ---------------------------------------------------------------------------------------------------------


def configure_tracing(config: TelemetryConfig) -> Any:
    """Install an OTLP/HTTP span exporter when `[telemetry] otlp_endpoint` is set; returns the provider (or None)."""
    if not config.otlp_endpoint:
        return None
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    provider = TracerProvider(
        resource=Resource.create({"service.name": config.service_name}),
        sampler=ParentBased(TraceIdRatioBased(config.sample_ratio)),
    )
    endpoint = str(config.otlp_endpoint).rstrip("/") + "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint), schedule_delay_millis=500))
    trace.set_tracer_provider(provider)
    observe.tracing_installed()
    return provider


# -- /metrics --------------------------------------------------------------------------------------------------------


class _Snapshot:
    """A collector yielding metric families computed before the scrape (the outbox, read from the store)."""

    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> Iterator[Any]:
        yield from self.families


def outbox_families(stats: dict[str, tuple[int, float | None]]) -> list[Any]:
    """`contact_gateway_outbox_depth` and `contact_gateway_outbox_oldest_age_seconds` per vendor."""
    depth = GaugeMetricFamily(
        "contact_gateway_outbox_depth", "Deliveries waiting (PENDING), per vendor.", labels=["vendor"]
    )
    oldest = GaugeMetricFamily(
        "contact_gateway_outbox_oldest_age_seconds",
        "Age of the oldest waiting delivery, per vendor (0 when none waits).",
        labels=["vendor"],
    )
    for vendor, (count, age) in sorted(stats.items()):
        depth.add_metric([vendor], count)
        oldest.add_metric([vendor], age or 0.0)
    return [depth, oldest]


def store_up_family(up: bool) -> list[Any]:
    """`contact_gateway_store_up`: 1 when the scrape could read the outbox, 0 when the store did not answer (its
    gauges are then left out of the scrape; the rest answers as usual)."""
    family = GaugeMetricFamily("contact_gateway_store_up", "Whether this scrape could read the store (1) or not (0).")
    family.add_metric([], 1.0 if up else 0.0)
    return [family]


def clock_family() -> list[Any]:
    """`contact_gateway_clock_offset_seconds`: the store's clock minus this host's wall clock (PostgreSQL; 0 on
    SQLite). Leases follow the store's clock; a large value says this host's clock is off."""
    family = GaugeMetricFamily(
        "contact_gateway_clock_offset_seconds",
        "The store's clock minus this host's wall clock (leases follow the store's clock).",
    )
    family.add_metric([], clock.offset().total_seconds())
    return [family]


def render_metrics(extra: list[Any]) -> tuple[bytes, str]:
    """The exposition text: this process's (or every worker's) metrics, plus `extra` families."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        body = generate_latest(registry)
    else:
        body = generate_latest(DEFAULT_REGISTRY)
    snapshot = CollectorRegistry()
    snapshot.register(_Snapshot(extra))
    return body + generate_latest(snapshot), CONTENT_TYPE_LATEST
