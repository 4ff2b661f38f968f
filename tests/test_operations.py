"""Operating the gateway: /healthz, /readyz, /metrics (one process and several), request ids, JSON logs without
personal data, OpenTelemetry traces to a real OTLP/HTTP receiver, and SIGTERM without losing a write.

In-process gateways (uvicorn on a socket) where the process does not matter; `contact-gateway serve` processes
where it does (logs on stdout, workers, signals, the tracer provider).
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import random
import re
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import structlog
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from graph.cli import EXAMPLE_VARIABLES
from graph.observability import _PRE_CHAIN, JSONLineFormatter, LoopBatchingHandler
from resolvers.results import Vendor
from tests.conftest import (
    ADMIN_TOKEN,
    READ_TOKEN,
    WRITE_TOKEN,
    Gateway,
    Simulators,
    gateway_config,
    gateway_config_data,
    serve,
    stop,
)
from tests.databases import admin_url
from tests.processes import GatewayProcess
from tests.support import eventually

UPSERT = """
mutation Up($input: ContactInput!, $vendors: [Vendor!]) {
  upsertContact(input: $input, vendors: $vendors) { status results { vendor status } }
}"""


def person(contact_id: str) -> dict[str, Any]:
    """The README's example contact with its own id and e-mail (vendors that adopt by e-mail find their own record)."""
    example = EXAMPLE_VARIABLES["input"]
    details = [
        {**d, "value": f"{contact_id.lower()}@example.com"} if d["kind"] == "EMAIL" else d for d in example["details"]
    ]
    return {**example, "id": contact_id, "details": details}


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (0 when there are none)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0])) if "{" in line else {}
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


# -- health ------------------------------------------------------------------------------------------------------------


async def test_healthz_and_readyz(gateway: Gateway) -> None:
    assert (await gateway.client.get(f"{gateway.url}/healthz")).text == "ok"
    ready = await gateway.client.get(f"{gateway.url}/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"store": True, "migrations": True, "outbox_worker": True}}


async def test_readyz_is_503_when_the_schema_is_not_migrated(make_gateway: Callable[..., Any], tmp_path: Path) -> None:
    gateway: Gateway = await make_gateway(store="unready.db")
    with sqlite3.connect(tmp_path / "unready.db") as db:
        db.execute("DELETE FROM alembic_version")
    answer = await gateway.client.get(f"{gateway.url}/readyz")
    assert answer.status_code == 503
    assert answer.json()["checks"]["migrations"] is False and answer.json()["status"] == "not ready"


async def test_readyz_verbose_and_vendors_detail_each_vendor(
    make_gateway: Callable[..., Any], simulators: Simulators
) -> None:
    gateway: Gateway = await make_gateway(
        vendor_overrides={"jim2": {"max_attempts": 1, "breaker_threshold": 1, "breaker_cooldown_s": 60}}
    )
    await simulators.faults(Vendor.JIM2, fail_next=100, fail_status=503)
    await gateway.graphql(UPSERT, {"input": person("ready-1")})
    detail = (await gateway.client.get(f"{gateway.url}/readyz?verbose=1")).json()["vendors"]
    assert detail["JIM2"]["breaker"] == "OPEN" and detail["JIM2"]["queued_deliveries"] == 1
    assert detail["JIM2"]["last_failure_code"] == "VENDOR_ERROR" and detail["JIM2"]["last_failure_at"]
    assert detail["EROS"]["reachable"] is True and detail["EROS"]["last_success_at"]
    assert detail["EROS"]["breaker"] == "CLOSED" and detail["EROS"]["queued_deliveries"] == 0
    answer = await gateway.graphql(
        "{ vendors { vendor circuit queuedDeliveries reachable lastSuccessAt lastFailureAt lastFailureCode } }",
        token=ADMIN_TOKEN,
    )
    jim2 = next(v for v in answer["data"]["vendors"] if v["vendor"] == "JIM2")
    assert jim2["circuit"] == "OPEN" and jim2["queuedDeliveries"] == 1 and jim2["lastFailureCode"] == "VENDOR_ERROR"
    assert jim2["lastFailureAt"] and jim2["lastSuccessAt"] is None


# -- metrics -----------------------------------------------------------------------------------------------------------


async def test_metrics(make_gateway: Callable[..., Any], simulators: Simulators) -> None:
    gateway: Gateway = await make_gateway(vendor_overrides={"valomnia": {"max_attempts": 2}})
    scrape = f"{gateway.url}/metrics"
    before = (await gateway.client.get(scrape)).text
    await simulators.faults(Vendor.VALOMNIA, fail_next=1, fail_status=503)  # one retry at Valomnia
    await gateway.graphql(UPSERT, {"input": person("metrics-1")})
    text = (await gateway.client.get(scrape)).text

    def grew(name: str, **labels: str) -> float:
        return metric(text, name, **labels) - metric(before, name, **labels)

    assert grew("contact_gateway_vendor_requests_total", vendor="eros", operation="upsert", status="CREATED") == 1
    assert grew("contact_gateway_vendor_retries_total", vendor="valomnia") == 1
    assert grew("contact_gateway_vendor_request_duration_seconds_count", vendor="oneserve") == 1
    assert grew("contact_gateway_graphql_requests_total", operation_name="Up", operation_type="mutation") == 1
    assert grew("contact_gateway_graphql_request_duration_seconds_count", operation_name="Up") == 1
    assert grew("contact_gateway_store_duration_seconds_count", kind="write") >= 2
    assert metric(text, "contact_gateway_outbox_depth", vendor="jim2") == 0
    assert "# TYPE contact_gateway_outbox_oldest_age_seconds gauge" in text


async def test_outbox_depth_and_age_are_read_from_the_store(
    make_gateway: Callable[..., Any], simulators: Simulators
) -> None:
    gateway: Gateway = await make_gateway(vendor_overrides={"jim2": {"max_attempts": 1}})
    await simulators.faults(Vendor.JIM2, fail_next=100, fail_status=503)
    await gateway.graphql(UPSERT, {"input": person("depth-1"), "vendors": ["JIM2"]})
    await asyncio.sleep(0.2)
    text = (await gateway.client.get(f"{gateway.url}/metrics")).text
    assert metric(text, "contact_gateway_outbox_depth", vendor="jim2") == 1
    assert metric(text, "contact_gateway_outbox_oldest_age_seconds", vendor="jim2") >= 0.1


async def test_metrics_token(make_gateway: Callable[..., Any]) -> None:
    secret = "metrics-scraper-token-0123456789"
    gateway: Gateway = await make_gateway(tables={"metrics": {"token": secret}})
    assert (await gateway.client.get(f"{gateway.url}/metrics")).status_code == 401
    ok = await gateway.client.get(f"{gateway.url}/metrics", headers={"Authorization": f"Bearer {secret}"})
    assert ok.status_code == 200 and "contact_gateway_vendor_requests_total" in ok.text


@pytest.mark.postgresql
async def test_metrics_answer_while_the_store_is_down(make_gateway: Callable[..., Any], postgresql_url: str) -> None:
    """PostgreSQL stops taking connections: /readyz says so (503) and /metrics still answers, every metric but the
    outbox's, with `contact_gateway_store_up 0`; before, the scrape failed with a 500 and every metric was lost."""
    gateway: Gateway = await make_gateway(store_url=postgresql_url)
    up = await gateway.client.get(f"{gateway.url}/metrics")
    assert "contact_gateway_store_up 1.0" in up.text and "contact_gateway_outbox_depth" in up.text
    # The store's clock minus this host's: this machine's PostgreSQL, so well under a second.
    assert "\ncontact_gateway_clock_offset_seconds " in up.text
    assert abs(metric(up.text, "contact_gateway_clock_offset_seconds")) < 1
    name = postgresql_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(admin_url())
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
        assert (await gateway.client.get(f"{gateway.url}/readyz")).status_code == 503
        down = await gateway.client.get(f"{gateway.url}/metrics")
        assert down.status_code == 200, down.text
        assert "contact_gateway_store_up 0.0" in down.text and "contact_gateway_outbox_depth" not in down.text
        assert "contact_gateway_vendor_requests_total" in down.text
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()


async def test_operation_names_cannot_grow_the_metrics_without_limit(gateway: Gateway) -> None:
    for i in range(5):
        await gateway.graphql(f"query Q{i}x{'y' * 70} {{ vendors {{ vendor }} }}", token=READ_TOKEN)
    text = (await gateway.client.get(f"{gateway.url}/metrics")).text
    assert "yyyyyyyy" not in text  # malformed or overlong names are counted as "other"
    assert metric(text, "contact_gateway_graphql_requests_total", operation_name="other") >= 5


async def test_metrics_of_several_workers_are_summed(
    simulators: Simulators, tmp_path: Path, processes: list[GatewayProcess]
) -> None:
    config = gateway_config_data(simulators, f"sqlite:///{tmp_path / 'workers.db'}")
    gateway = GatewayProcess(config, tmp_path, "workers", workers=2)
    processes.append(gateway)
    await gateway.start()
    async with httpx.AsyncClient(timeout=30) as a, httpx.AsyncClient(timeout=30) as b:
        for i in range(12):
            client = (a, b)[i % 2]  # two connections: the kernel spreads them over the workers
            response = await client.post(
                f"{gateway.url}/graphql",
                json={"query": UPSERT, "variables": {"input": person(f"w-{i}"), "vendors": ["EROS"]}},
                headers={"Authorization": f"Bearer {WRITE_TOKEN}"},
            )
            assert response.status_code == 200
    for _ in range(4):  # whichever worker answers the scrape, the totals are the same
        text = (await gateway.client.get(f"{gateway.url}/metrics")).text
        assert metric(text, "contact_gateway_graphql_requests_total", operation_name="Up") == 12
        assert metric(text, "contact_gateway_vendor_requests_total", vendor="eros", status="CREATED") == 12
    # SIGTERM: each worker's application shutdown runs to its end, and its lines reach the log (a worker dies by the
    # SIGTERM uvicorn raises again after serving, and the lines its loop logged last were lost with it).
    assert await gateway.terminate() == 0
    assert gateway.log().count('"event":"shutdown: complete"') == 2, gateway.log()[-2000:]


async def test_the_collector_skips_start_up_objects_while_serving(simulators: Simulators, tmp_path: Path) -> None:
    """While gateways serve, what start-up made is frozen out of garbage collection and young collections run
    every `gc_threshold` allocations; Python's own settings come back when the last of them stops, whatever the
    order (several apps share one interpreter in tests)."""
    thresholds = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    tables = {"server": {"gc_threshold": 12345}}
    first = await serve(gateway_config(simulators, f"sqlite:///{tmp_path / 'gc1.db'}", tables=tables))
    second = await serve(gateway_config(simulators, f"sqlite:///{tmp_path / 'gc2.db'}", tables=tables))
    try:
        assert gc.get_freeze_count() > 10_000  # modules, the schema, the connectors
        assert gc.get_threshold() == (12345, thresholds[1], thresholds[2])
        await stop(*first[:2])
        assert gc.get_freeze_count() > 10_000  # the second still serves
        assert gc.get_threshold() == (12345, thresholds[1], thresholds[2])
    finally:
        await asyncio.gather(stop(*first[:2]), stop(*second[:2]))
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == thresholds


# -- request ids and logs ----------------------------------------------------------------------------------------------


async def test_request_ids(gateway: Gateway) -> None:
    given = await gateway.client.post(
        f"{gateway.url}/graphql",
        json={"query": "{ vendors { vendor } }"},
        headers={"Authorization": f"Bearer {READ_TOKEN}", "X-Request-ID": "req-abc.123"},
    )
    assert given.headers["x-request-id"] == "req-abc.123"
    made = await gateway.client.post(
        f"{gateway.url}/graphql",
        json={"query": "{ vendors { vendor } }"},
        headers={"Authorization": f"Bearer {READ_TOKEN}", "X-Request-ID": "bad id\twith spaces"},
    )
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    refused = await gateway.client.get(f"{gateway.url}/graphql?query={{vendors{{vendor}}}}")
    assert refused.status_code == 401 and refused.headers["x-request-id"]


async def test_json_logs_carry_request_ids_and_no_personal_data(
    simulators: Simulators, tmp_path: Path, processes: list[GatewayProcess]
) -> None:
    config = gateway_config_data(simulators, f"sqlite:///{tmp_path / 'logs.db'}")
    gateway = GatewayProcess(config, tmp_path, "logs")
    processes.append(gateway)
    await gateway.start()
    await simulators.faults(Vendor.VALOMNIA, fail_next=100, fail_status=422)  # an error that quotes nothing
    response = await gateway.client.post(
        f"{gateway.url}/graphql",
        json={"query": UPSERT, "variables": {"input": person("log-1")}},
        headers={"Authorization": f"Bearer {WRITE_TOKEN}", "X-Request-ID": "trace-me-1"},
    )
    assert response.status_code == 200
    # Requests GraphQL refuses: strawberry logged each error as printed, with the request's lines around a syntax
    # error and the refused value of a variable.
    broken = 'mutation { validateContact(input: {id: "z", lastName: "Hopper", details: [{kind: EMAIL, value: "grace@'
    for body in (
        {"query": broken + 'navy.mil"}]}) { vendor }'},
        {"query": UPSERT, "variables": {"input": {**person("log-2"), "birthDate": "Hopper-grace@navy.mil"}}},
    ):
        refused = await gateway.client.post(
            f"{gateway.url}/graphql", json=body, headers={"Authorization": f"Bearer {WRITE_TOKEN}"}
        )
        assert "errors" in refused.json(), refused.text
    for _ in range(3):  # a probe's every call looked at the schema, and Alembic logged two INFO lines each time
        assert (await gateway.client.get(f"{gateway.url}/readyz")).status_code == 200
    await gateway.stop()
    lines = [json.loads(line) for line in gateway.log().splitlines() if line.startswith("{")]
    assert [line for line in lines if str(line.get("logger", "")).startswith("alembic")] == []
    refusals = [line for line in lines if line.get("logger") == "strawberry.execution"]
    assert [line["event"] for line in refusals] == [
        "GRAPHQL_PARSE_FAILED (1:127): Syntax Error: Expected Name, found <EOF>.",
        "BAD_USER_INPUT (2:13): Variable …",
    ], refusals
    mine = [line for line in lines if line.get("request_id") == "trace-me-1"]
    operation = next(line for line in mine if line.get("event") == "graphql_operation")
    assert operation["operation_name"] == "Up" and operation["operation_type"] == "mutation"
    assert operation["principal"] == "demo" and operation["duration_ms"] > 0
    calls = [line for line in mine if line.get("event") == "vendor_call"]
    assert {c["vendor"] for c in calls} == {v.value for v in Vendor}
    assert all(c["contact_id"] == "log-1" and c["duration_ms"] is not None for c in calls)
    assert all({"timestamp", "level", "logger"} <= line.keys() for line in lines)
    text = gateway.log()
    for personal in ("Lovelace", "ada@example.com", "07700900123", "St James", "SW1Y", "Hopper", "navy.mil"):
        assert personal not in text, personal


async def test_only_configured_proxies_name_the_client_address(
    simulators: Simulators, tmp_path: Path, processes: list[GatewayProcess]
) -> None:
    """uvicorn believes X-Forwarded-For from 127.0.0.1 unless told otherwise, so a client on the same host picked the
    address the failed-authentication limit counted, a new one per attempt. `serve` believes only the proxies in
    `[server] forwarded_allow_ips`."""
    auth = {"auth": {"max_failures": 2, "failure_window_s": 60}}
    plain = GatewayProcess(
        gateway_config_data(simulators, f"sqlite:///{tmp_path / 'p1.db'}", tables=auth), tmp_path, "p1"
    )
    behind = GatewayProcess(
        gateway_config_data(
            simulators,
            f"sqlite:///{tmp_path / 'p2.db'}",
            tables={**auth, "server": {"forwarded_allow_ips": ["127.0.0.1"]}},
        ),
        tmp_path,
        "p2",
    )
    processes += [plain, behind]
    await asyncio.gather(plain.start(), behind.start())

    async def ask(gateway: GatewayProcess, token: str, client: str) -> int:
        response = await gateway.client.post(
            f"{gateway.url}/graphql",
            json={"query": "{ __typename }"},
            headers={"Authorization": f"Bearer {token}", "X-Forwarded-For": client},
        )
        return response.status_code

    for gateway in (plain, behind):
        assert [await ask(gateway, "not-a-token-0123456789", "10.0.0.1") for _ in range(2)] == [401, 401]
    assert await ask(plain, READ_TOKEN, "10.0.0.9") == 429, "the header is not believed: it is 127.0.0.1 again"
    assert await ask(behind, READ_TOKEN, "10.0.0.1") == 429, "the proxy's client 10.0.0.1 is the one limited"
    assert await ask(behind, READ_TOKEN, "10.0.0.9") == 200


def _record(name: str, level: int, message: str, *args: Any, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord(name, level, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


async def _idle_connection_open_after(url: str, wait_s: float) -> bool:
    """One HTTP/1.1 keep-alive request on a raw connection, then `wait_s` idle: is the connection still open?"""
    host, port = url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        length = int(re.search(rb"content-length: (\d+)", head.lower()).group(1))  # type: ignore[union-attr]
        await reader.readexactly(length)
        await asyncio.sleep(wait_s)
        try:
            return await asyncio.wait_for(reader.read(1), 0.5) != b""  # b"": the server closed it
        except TimeoutError:
            return True  # nothing to read and not closed
    finally:
        writer.close()


async def test_idle_keep_alive_connections_outlive_the_callers_pools(
    simulators: Simulators, tmp_path: Path, processes: list[GatewayProcess]
) -> None:
    """`[server] keep_alive_s` reaches uvicorn: by default (75 s) an idle connection is still open after uvicorn's
    own 5 s, so a pooling caller (aiohttp keeps 15 s, load balancers 60 s) never sends on a connection the server is
    closing; a short setting closes it."""
    default = GatewayProcess(gateway_config_data(simulators, f"sqlite:///{tmp_path / 'ka1.db'}"), tmp_path, "ka1")
    short = GatewayProcess(
        gateway_config_data(simulators, f"sqlite:///{tmp_path / 'ka2.db'}", tables={"server": {"keep_alive_s": 1}}),
        tmp_path,
        "ka2",
    )
    processes += [default, short]
    await asyncio.gather(default.start(), short.start())
    default_open, short_open = await asyncio.gather(
        _idle_connection_open_after(default.url, 6.0), _idle_connection_open_after(short.url, 3.0)
    )
    assert default_open, "the default keep-alive closed an idle connection within 6 s"
    assert not short_open, "keep_alive_s = 1 left an idle connection open for 3 s"


@pytest.mark.parametrize(
    "record",
    [
        _record("contact_gateway.vendor", logging.INFO, "vendor_call", fields={"vendor": "eros", "status": None}),
        # A field may not replace what the chain sets (level, logger, timestamp) nor the request id it merged first.
        _record("contact_gateway.audit", logging.WARNING, "write", fields={"level": "x", "request_id": "y", "n": 2}),
        _record("uvicorn.access", logging.INFO, '%s - "%s %s" %d', "127.0.0.1:1", "POST", "/graphql", 200),
        _record("contact_gateway.store", logging.CRITICAL, "odd %r", object(), fields={"at": Path("/tmp")}),
    ],
    ids=["fields", "colliding-fields", "access-log", "not-json-values"],
)
def test_log_lines_fast_path_renders_what_the_processor_chain_does(record: logging.LogRecord) -> None:
    """JSONLineFormatter's fast path and structlog's processor chain give the same object, keys in the same order."""
    formatter = JSONLineFormatter(
        foreign_pre_chain=_PRE_CHAIN,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(serializer=lambda value, **_: orjson.dumps(value, default=str).decode()),
        ],
    )
    structlog.contextvars.bind_contextvars(request_id="req-1")
    try:
        fast = json.loads(formatter.format(record))
        chain = json.loads(structlog.stdlib.ProcessorFormatter.format(formatter, record))
    finally:
        structlog.contextvars.clear_contextvars()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", fast["timestamp"])
    assert abs(datetime.fromisoformat(fast["timestamp"]).timestamp() - record.created) < 1e-3
    fast.pop("timestamp")
    chain.pop("timestamp")
    assert list(fast.items()) == list(chain.items())
    assert fast["request_id"] == "req-1" and fast["level"] == record.levelname.lower()


def test_log_timestamps_are_datetimes_isoformat_with_microseconds() -> None:
    """The fast path formats the date and time of day once a second: each line still shows its own instant, as
    `datetime` formats it, across second boundaries and whichever second comes back."""
    formatter = JSONLineFormatter(processors=[structlog.processors.JSONRenderer()])
    rng = random.Random(6)
    base = 1_796_000_000.0
    instants = [base, base + 0.999_999_5, base + 1.000_000_4, base + 1.5, base, base + 86_400.25]
    instants += [base + rng.uniform(0, 5) for _ in range(2_000)]
    for created in instants:
        expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
        assert formatter._timestamp(created) == expected, created


def test_log_lines_with_an_exception_keep_the_traceback() -> None:
    formatter = JSONLineFormatter(
        foreign_pre_chain=_PRE_CHAIN,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
    )
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = json.loads(formatter.format(record))
    assert line["event"] == "failed" and "ValueError: boom" in line["exception"]


class _Stream:
    """A text stream that records each `write` call (what the handler hands the OS in one go)."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def _batching_logger(name: str) -> tuple[logging.Logger, _Stream, LoopBatchingHandler]:
    stream = _Stream()
    handler = LoopBatchingHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger(f"tests.batching.{name}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream, handler


async def test_log_lines_of_one_loop_iteration_are_written_in_one_write() -> None:
    logger, stream, _ = _batching_logger("iteration")
    logger.info("a")
    logger.info("b")
    logger.info("c")
    assert stream.writes == []  # kept until the loop runs the handler's callback
    await asyncio.sleep(0)
    assert stream.writes == ["a\nb\nc\n"]
    logger.info("d")
    await asyncio.sleep(0)
    assert stream.writes == ["a\nb\nc\n", "d\n"]


async def test_a_line_from_another_thread_is_written_at_once_after_the_kept_ones() -> None:
    logger, stream, _ = _batching_logger("thread")
    logger.info("on the loop")
    await asyncio.to_thread(logger.info, "in a thread")
    assert stream.writes == ["on the loop\nin a thread\n"]  # in order, nothing left behind
    await asyncio.sleep(0)
    assert stream.writes == ["on the loop\nin a thread\n"]


def test_lines_kept_by_a_loop_that_closed_are_written_by_flush_or_the_next_loop() -> None:
    logger, stream, handler = _batching_logger("closed")

    async def log_and_stop(text: str) -> None:
        logger.info(text)
        asyncio.get_running_loop().stop()  # the handler's callback never runs on this loop

    def run_on_a_loop_that_stops(text: str) -> None:
        loop = asyncio.new_event_loop()
        task = loop.create_task(log_and_stop(text))
        loop.run_forever()
        assert task.done()
        loop.close()

    for text in ("first", "second"):
        run_on_a_loop_that_stops(text)
    assert stream.writes == []
    handler.flush()  # logging.shutdown() does this at exit
    assert stream.writes == ["first\nsecond\n"]

    async def log(text: str) -> None:
        logger.info(text)
        await asyncio.sleep(0)

    run_on_a_loop_that_stops("kept")
    asyncio.run(log("next loop"))  # schedules its own callback: writes what the closed loop kept, and its line
    assert stream.writes == ["first\nsecond\n", "kept\nnext loop\n"]


# -- tracing -----------------------------------------------------------------------------------------------------------


@pytest.fixture
async def otlp_receiver() -> AsyncIterator[tuple[str, list[ExportTraceServiceRequest]]]:
    """A real OTLP/HTTP endpoint: decodes every POST /v1/traces."""
    received: list[ExportTraceServiceRequest] = []

    async def traces(request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        received.append(message)
        return web.Response(body=b"", content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", received
    finally:
        await runner.cleanup()


async def test_traces_continue_the_callers_trace_and_reach_the_vendors(
    simulators: Simulators,
    tmp_path: Path,
    processes: list[GatewayProcess],
    otlp_receiver: tuple[str, list[ExportTraceServiceRequest]],
) -> None:
    endpoint, received = otlp_receiver
    config = gateway_config_data(
        simulators, f"sqlite:///{tmp_path / 'traces.db'}", tables={"telemetry": {"otlp_endpoint": endpoint}}
    )
    gateway = GatewayProcess(config, tmp_path, "traces")
    processes.append(gateway)
    await gateway.start()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    response = await gateway.client.post(
        f"{gateway.url}/graphql",
        json={"query": UPSERT, "variables": {"input": person("trace-1"), "vendors": ["EROS", "ONESERVE"]}},
        headers={"Authorization": f"Bearer {WRITE_TOKEN}", "traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
    )
    assert response.status_code == 200
    await gateway.stop()  # flushes the batched spans

    spans = [s for r in received for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]
    operation = next(s for s in spans if s.name.startswith("graphql mutation"))
    assert operation.trace_id.hex() == trace_id and operation.parent_span_id.hex() == "00f067aa0ba902b7"
    vendor_spans = [s for s in spans if s.name in ("eros upsert", "oneserve upsert")]
    assert len(vendor_spans) == 2
    for span in vendor_spans:
        assert span.trace_id.hex() == trace_id and span.parent_span_id == operation.span_id
        attributes = {a.key: a.value for a in span.attributes}
        assert attributes["contact_gateway.status"].string_value == "CREATED"
        assert attributes["contact_gateway.attempts"].int_value == 1
        assert attributes["contact_gateway.remote_id"].string_value
    for vendor in (Vendor.EROS, Vendor.ONESERVE):
        writes = [c for c in await simulators.calls(vendor) if c["method"] in ("POST", "PUT", "PATCH")]
        assert any(trace_id in c["headers"].get("traceparent", "") for c in writes), vendor


# -- graceful shutdown -------------------------------------------------------------------------------------------------


async def test_sigterm_during_a_burst_loses_no_accepted_write(
    simulators: Simulators, tmp_path: Path, processes: list[GatewayProcess]
) -> None:
    """SIGTERM while slow fan-outs are in flight: the process exits 0, and every write it accepted (answered, or
    cut short by the grace period) is at every vendor exactly once after a restart."""
    quick = {
        "outbox": {"backoff_base_s": 0.05, "backoff_cap_s": 0.5, "poll_interval_s": 0.05, "lease_grace_s": 30},
        "server": {"shutdown_grace_s": 1},
    }
    vendors = {v.value: {"timeout_s": 8.0} for v in (Vendor.EROS, Vendor.ONESERVE, Vendor.JIM2)}
    config = gateway_config_data(simulators, f"sqlite:///{tmp_path / 'term.db'}", vendors, quick)
    first = GatewayProcess(config, tmp_path, "first")
    processes.append(first)
    await first.start()
    await simulators.faults(Vendor.EROS, latency_ms=3_000)  # every Eros call outlives the grace period

    async def write(i: int) -> str | None:
        async with httpx.AsyncClient(timeout=30) as client:
            try:
                response = await client.post(
                    f"{first.url}/graphql",
                    json={
                        "query": UPSERT,
                        "variables": {"input": person(f"T-{i}"), "vendors": ["EROS", "ONESERVE", "JIM2"]},
                    },
                    headers={"Authorization": f"Bearer {WRITE_TOKEN}"},
                )
            except httpx.HTTPError:
                return None  # cut off by the shutdown: it may or may not have been accepted
            return f"T-{i}" if response.status_code == 200 else None

    burst = [asyncio.create_task(write(i)) for i in range(10)]
    await asyncio.sleep(1.0)  # the writes are accepted and waiting on Eros
    assert await first.terminate() == 0
    answered = {contact_id for contact_id in await asyncio.gather(*burst) if contact_id}
    assert any(c["path"].endswith("/logoff") for c in await simulators.calls(Vendor.JIM2))  # the licence is freed
    assert "deliveries left in the outbox" in first.log() or answered

    await simulators.faults(Vendor.EROS, latency_ms=0)
    second = GatewayProcess(config, tmp_path, "second")
    processes.append(second)
    await second.start()

    async def drained() -> bool:
        return await second.pending() == 0

    await eventually(drained, "every delivery left by the first process is made", timeout_s=60)
    accepted = await second.graphql("{ contacts(first: 100) { edges { node { id } } } }")
    stored = {edge["node"]["id"] for edge in accepted["data"]["contacts"]["edges"]}
    assert answered <= stored and len(stored) >= 1
    for vendor in (Vendor.EROS, Vendor.ONESERVE, Vendor.JIM2):
        state = await simulators.state(vendor)
        assert len(state["records"]) == len(stored), (vendor, len(state["records"]), len(stored))


async def test_breaker_and_rate_limit_metrics(make_gateway: Callable[..., Any], simulators: Simulators) -> None:
    gateway: Gateway = await make_gateway(
        vendor_overrides={
            "jim2": {"max_attempts": 1, "breaker_threshold": 1, "breaker_cooldown_s": 60},
            "eros": {"rate_per_s": 5},
        }
    )
    await simulators.faults(Vendor.JIM2, fail_next=100, fail_status=503)
    before = (await gateway.client.get(f"{gateway.url}/metrics")).text  # counters are per process: compare
    for i in range(3):  # three Eros calls at 5 per second: the later ones wait their turn
        await gateway.graphql(UPSERT, {"input": person(f"rate-{i}"), "vendors": ["EROS", "JIM2"]})
    text = (await gateway.client.get(f"{gateway.url}/metrics")).text

    def grew(name: str, **labels: str) -> float:
        return metric(text, name, **labels) - metric(before, name, **labels)

    assert grew("contact_gateway_breaker_transitions_total", vendor="jim2", state="OPEN") == 1
    assert grew("contact_gateway_rate_limit_waits_total", vendor="eros") >= 1
    assert grew("contact_gateway_rate_limit_wait_seconds_total", vendor="eros") > 0
