"""What the engine tells operators: Prometheus metrics, one log line per vendor call, one trace span per vendor call.

Metric names follow Prometheus conventions (`contact_gateway_` prefix, base units, `_total` counters). With
`serve --workers N` every process writes its samples to `PROMETHEUS_MULTIPROC_DIR` (set by the CLI before any
worker starts) and `/metrics` sums them (prometheus-client's multiprocess mode), so totals are correct whichever
process answers the scrape.

Tracing uses the OpenTelemetry API: without a configured exporter (`[telemetry]`) the API's no-op tracer makes
every span free. A vendor call's span is a child of the GraphQL operation's span (the contextvars carry it) and
records vendor, operation, status, attempts and the remote id.

Log lines carry ids, statuses and durations, never the contact's personal data (names, e-mails, phones,
addresses) unless `[logging] personal_data = true`; vendor error messages can quote the contact, so they are
logged only then too (the error codes always are).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import propagate, trace
from prometheus_client import Counter, Histogram

from resolvers.results import Vendor, VendorResult

log = logging.getLogger("contact_gateway.vendor")
tracer = trace.get_tracer("contact_gateway")

#: Log personal data (vendor error messages that may quote the contact)? Set from `[logging] personal_data`.
personal_data = False

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

VENDOR_REQUESTS = Counter(
    "contact_gateway_vendor_requests_total",
    "Vendor operations by outcome (the VendorStatus each ended with).",
    ["vendor", "operation", "status"],
)
VENDOR_DURATION = Histogram(
    "contact_gateway_vendor_request_duration_seconds",
    "Duration of one vendor operation, every attempt and wait included.",
    ["vendor", "operation"],
    buckets=_LATENCY_BUCKETS,
)
VENDOR_RETRIES = Counter(
    "contact_gateway_vendor_retries_total",
    "Attempts after the first, per vendor and operation.",
    ["vendor", "operation"],
)
BREAKER_TRANSITIONS = Counter(
    "contact_gateway_breaker_transitions_total",
    "Circuit breaker state changes, by the state entered.",
    ["vendor", "state"],
)
RATE_LIMIT_WAIT = Counter(
    "contact_gateway_rate_limit_wait_seconds_total", "Seconds calls waited for a vendor's rate limit.", ["vendor"]
)
RATE_LIMIT_WAITS = Counter(
    "contact_gateway_rate_limit_waits_total", "Calls that had to wait for a vendor's rate limit.", ["vendor"]
)
STORE_DURATION = Histogram(
    "contact_gateway_store_duration_seconds",
    "Store latency: a group commit (write) or one read, queueing excluded.",
    ["kind"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
)


@functools.cache
def child(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, looked up once: `labels()` validates and locks on every call, and a write makes
    about twenty metric updates. The label values are bounded (vendors, operations, statuses, capped operation
    names), so is this cache."""
    return metric.labels(*labels)


#: Set by `tracing_installed` once `graph.observability.configure_tracing` has installed an SDK tracer provider.
#: OpenTelemetry lets a process install one once and never removes it, so the flag never goes back.
_tracing = False


def tracing_installed() -> None:
    """Note that an SDK tracer provider is installed: spans are made from now on."""
    global _tracing
    _tracing = True


def tracing() -> bool:
    """Whether an SDK tracer provider is installed (`configure_tracing`); without one every span is a no-op.

    A flag, not `trace.get_tracer_provider()`: with no provider that looks the environment up on every call
    (`OTEL_PYTHON_TRACER_PROVIDER`), six calls a write, about 1% of the CPU at c=50 (bench/README.md)."""
    return _tracing


@contextmanager
def vendor_span(vendor: Vendor, operation: str, contact_id: str | None) -> Iterator[Any]:
    """A span around one vendor operation; with tracing off, the invalid span and no tracer call at all (the API's
    no-op `start_as_current_span` still builds its context managers: ~10 us a call, five calls a write)."""
    if not tracing():
        yield trace.INVALID_SPAN
        return
    with tracer.start_as_current_span(
        f"{vendor.value} {operation}",
        kind=trace.SpanKind.CLIENT,
        attributes={"contact_gateway.vendor": vendor.value, "contact_gateway.operation": operation}
        | ({"contact_gateway.contact_id": contact_id} if contact_id else {}),
    ) as span:
        yield span


def vendor_call_done(span: Any, vendor: Vendor, operation: str, contact_id: str | None, result: VendorResult) -> None:
    """Count, time, log and annotate one finished vendor operation."""
    status = result.status.value
    child(VENDOR_REQUESTS, vendor.value, operation, status).inc()
    child(VENDOR_DURATION, vendor.value, operation).observe((result.duration_ms or 0.0) / 1000)
    if result.attempts > 1:
        child(VENDOR_RETRIES, vendor.value, operation).inc(result.attempts - 1)
    codes = sorted({e.code.value for e in result.errors})
    if span.is_recording():
        span.set_attribute("contact_gateway.status", status)
        span.set_attribute("contact_gateway.attempts", result.attempts)
        if result.remote_id:
            span.set_attribute("contact_gateway.remote_id", result.remote_id)
        if result.http_status is not None:
            span.set_attribute("http.response.status_code", result.http_status)
        if codes:
            span.set_status(trace.Status(trace.StatusCode.ERROR, ", ".join(codes)))
    fields: dict[str, Any] = {
        "vendor": vendor.value,
        "operation": operation,
        "contact_id": contact_id,
        "status": status,
        "attempts": result.attempts,
        "duration_ms": result.duration_ms,
        "remote_id": result.remote_id,
        "http_status": result.http_status,
    }
    if codes:
        fields["error_codes"] = codes
        if personal_data:
            fields["errors"] = [e.message for e in result.errors]
    log.info("vendor_call", extra={"fields": fields})


def breaker_moved(vendor: Vendor, state: str) -> None:
    """Count a circuit breaker transition (and log it: an operator wants to know)."""
    BREAKER_TRANSITIONS.labels(vendor.value, state).inc()
    logging.getLogger("contact_gateway.breaker").warning(
        "breaker_%s", state.lower(), extra={"fields": {"vendor": vendor.value, "state": state}}
    )


def rate_limit_waited(vendor: Vendor, seconds: float) -> None:
    """Count one call that waited `seconds` for the vendor's rate limit."""
    RATE_LIMIT_WAITS.labels(vendor.value).inc()
    RATE_LIMIT_WAIT.labels(vendor.value).inc(seconds)


def inject_trace(headers: dict[str, str]) -> None:
    """Add the current span's W3C `traceparent` (and `tracestate`) to an outgoing vendor request's headers."""
    if trace.get_current_span().get_span_context().is_valid:
        propagate.inject(headers)


@contextmanager
def store_timer(kind: str) -> Iterator[None]:
    """Time one store operation into `contact_gateway_store_duration_seconds`."""
    started = time.perf_counter()
    try:
        yield
    finally:
        child(STORE_DURATION, kind).observe(time.perf_counter() - started)
