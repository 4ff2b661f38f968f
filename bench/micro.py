"""Micro-benchmarks of the hot pieces a write goes through in-process: `uv run python -m bench.micro`.

- a log line (`graph.observability.JSONLineFormatter`): its fast path, and structlog's processor chain it replaces
  for plain records (rendered to /dev/null);
- building the README's `ContactInput` from its GraphQL value: the compiled plan (`graph.inputs`) and strawberry's
  generic `convert_argument`;
- a trivial operation through the schema with all its extensions, and with `DocumentCache` (parsing and validation
  cached) only;
- a page of 100 contacts executed by GraphQL, with strawberry's execution context and with the gateway's.

Each figure is the median of `--rounds` rounds of `--n` calls, in microseconds per call (the page: the median of
4 x `--rounds` pages, its two contexts alternating three times).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import strawberry
import structlog
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.types.arguments import convert_argument

from bench.workload import contact_input
from graph import convert, types
from graph.execution import GatewayExecutionContext
from graph.observability import configure_logging
from graph.schema import DocumentCache, build_schema, schema
from resolvers.config import LoggingConfig, ServerConfig
from resolvers.model import Contact
from resolvers.results import Vendor, VendorStatus
from resolvers.store import StoredContact
from resolvers.vendors.base import CrossReference


def _median_us(call: Callable[[], Any], n: int, rounds: int) -> float:
    timings = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(n):
            call()
        timings.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(timings)


def log_lines(n: int, rounds: int) -> dict[str, float]:
    """µs per vendor-call log line (to /dev/null, as `configure_logging` sets logging up): the fast path, and the
    processor chain."""
    handler = logging.getLogger().handlers[0]
    structlog.contextvars.bind_contextvars(request_id="0123456789abcdef")
    fields = {"vendor": "eros", "operation": "upsert", "contact_id": "c-1", "status": "CREATED", "attempts": 1}
    log = logging.getLogger("contact_gateway.vendor")
    fast = _median_us(lambda: log.info("vendor_call", extra={"fields": fields}), n, rounds)
    formatter = handler.formatter
    assert formatter is not None
    chain = structlog.stdlib.ProcessorFormatter.format
    handler.format = lambda record: chain(formatter, record)  # type: ignore[assignment,method-assign,arg-type]
    slow = _median_us(lambda: log.info("vendor_call", extra={"fields": fields}), n, rounds)
    del handler.format
    structlog.contextvars.clear_contextvars()
    return {"log line, fast path": fast, "log line, processor chain": slow}


def contact_inputs(n: int, rounds: int) -> dict[str, float]:
    """µs per `ContactInput` built from its GraphQL value: the plan, and strawberry's generic conversion."""
    value = contact_input("bench-micro-1")
    value["details"][0]["kind"] = types.DetailKind.MOBILE  # as graphql-core hands it over
    registry, config = schema.schema_converter.scalar_registry, schema.config
    definition = types.ContactInput.__strawberry_definition__
    planned = _median_us(lambda: convert_argument(value, types.ContactInput, registry, config), n, rounds)
    hook, definition.from_input = definition.from_input, None
    try:
        generic = _median_us(lambda: convert_argument(value, types.ContactInput, registry, config), n, rounds)
    finally:
        definition.from_input = hook
    return {"ContactInput, plan": planned, "ContactInput, strawberry convert_argument": generic}


def operations(n: int, rounds: int) -> dict[str, float]:
    """µs per trivial operation (`{ __typename }`): every extension, and the document cache alone."""
    full = build_schema(ServerConfig())
    bare = build_schema(ServerConfig())
    bare.extensions = [DocumentCache]

    async def measure(target: Any) -> float:
        for _ in range(100):
            await target.execute("query Q { __typename }")
        timings = []
        for _ in range(rounds):
            started = time.perf_counter()
            for _ in range(n):
                await target.execute("query Q { __typename }")
            timings.append((time.perf_counter() - started) / n * 1e6)
        return statistics.median(timings)

    return {
        "operation, all extensions": asyncio.run(measure(full)),
        "operation, document cache only": asyncio.run(measure(bare)),
    }


PAGE_QUERY = """{ contacts {
  edges { node { id firstName lastName vendorLinks { vendor remoteId status } } }
  pageInfo { hasNextPage endCursor } } }"""


def page_execution(rounds: int) -> dict[str, float]:
    """µs per page of 100 contacts executed by GraphQL (`bench/workload.py`'s `PAGE` selection over the gateway's
    own types, each contact linked at all five vendors; the store read and `convert.contact` left out): strawberry's
    execution context, and the gateway's (`graph/execution.py`)."""
    now = datetime.now(UTC)
    stored = [
        StoredContact(
            contact=Contact.model_validate(contact_input(f"bench-page-{i}")),
            links=tuple(
                CrossReference(f"bench-page-{i}", vendor, f"r-{i}", "h", VendorStatus.CREATED, now) for vendor in Vendor
            ),
            created_at=now,
            updated_at=now,
        )
        for i in range(100)
    ]
    edges = [types.ContactEdge(cursor=f"c-{i}", node=convert.contact(s)) for i, s in enumerate(stored)]

    async def count() -> int:
        return len(edges)

    page = types.ContactConnection(
        edges=edges,
        page_info=types.PageInfo(has_next_page=True, has_previous_page=False, start_cursor="c-0", end_cursor="c-99"),
        count=count,
    )

    @strawberry.type
    class Query:
        @strawberry.field
        def contacts(self) -> types.ContactConnection:
            return page

    async def measure(context: type[Any]) -> float:
        target = strawberry.federation.Schema(query=Query, execution_context_class=context, federation_version="2.9")
        result = await target.execute(PAGE_QUERY)
        assert not result.errors, result.errors
        timings = []
        for _ in range(rounds * 4):
            started = time.perf_counter()
            await target.execute(PAGE_QUERY)
            timings.append((time.perf_counter() - started) * 1e6)
        return statistics.median(timings)

    async def both() -> dict[str, float]:
        out: dict[str, float] = {}
        for _ in range(3):  # alternating, the last turn kept
            out["page of 100 contacts, strawberry's execution"] = await measure(StrawberryGraphQLCoreExecutionContext)
            out["page of 100 contacts, GatewayExecutionContext"] = await measure(GatewayExecutionContext)
        return out

    return asyncio.run(both())


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.micro", description=__doc__)
    parser.add_argument("--n", type=int, default=2000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    configure_logging(LoggingConfig())  # as `serve` logs, into /dev/null (an operation logs a line too)
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    with open(os.devnull, "w", encoding="utf-8") as sink:
        handler.setStream(sink)
        rows = {**log_lines(args.n, args.rounds), **contact_inputs(args.n, args.rounds)}
        rows |= operations(args.n, args.rounds)
        rows |= page_execution(args.rounds)
    width = max(map(len, rows))
    for name, micros in rows.items():
        print(f"{name:<{width}}  {micros:8.1f} us", file=sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
