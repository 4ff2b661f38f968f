"""Size, not speed: one `upsertContacts` of many contacts, many sequential mutations (memory), and paging a big
store."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import aiohttp

from bench.harness import Harness
from bench.load import percentile
from bench.procs import Gateway, gateway_config
from bench.workload import PAGE, UPSERT_MANY, DirectClient, GatewayClient, client_session, contact_input
from resolvers.config import build_config
from resolvers.model import Contact
from resolvers.results import Vendor, VendorStatus
from resolvers.store import LinkUpdate, Store
from resolvers.vendors import REGISTRY

#: The simulators forget their records this often during the mutation run (their lookups scan the records).
CLEAR_EVERY = 2000
#: RSS samples taken over the mutation run.
RSS_SAMPLES = 200


def _say(message: str) -> None:
    print(f"  {message}", file=sys.stderr, flush=True)


def _stats(latencies: list[float]) -> dict[str, float]:
    return {f"p{q}_ms": percentile(latencies, q) for q in (50, 95, 99)} | {"max_ms": max(latencies, default=0.0)}


async def batch(harness: Harness, gateway: Gateway) -> list[dict[str, Any]]:
    """One `upsertContacts` of `--batch` contacts at each latency: wall time, and no vendor over its limit."""
    limits = {vendor.value: s.max_concurrency for vendor, s in build_config(gateway.config).vendors.items()}
    out: list[dict[str, Any]] = []
    async with client_session() as session:
        client = GatewayClient(session, gateway.url)
        for latency in harness.options.latencies:
            await harness.set_latency(latency)
            await harness.clear()
            inputs = [contact_input(f"bench-batch-{latency.latency_ms:g}-{i}") for i in range(harness.options.batch)]
            started = time.perf_counter()
            data = await client.post(UPSERT_MANY, {"inputs": inputs})
            seconds = time.perf_counter() - started
            statuses = [p["status"] for p in data["upsertContacts"]]
            seen = await harness.max_in_flight()
            result = {
                "latency": latency.name,
                "contacts": len(inputs),
                "seconds": seconds,
                "contacts_per_s": len(inputs) / seconds,
                "succeeded": statuses.count("SUCCEEDED"),
                "max_in_flight": seen,
                "max_concurrency": limits,
                "within_limits": all(seen[v] <= limits[v] for v in seen),
            }
            _say(
                f"upsertContacts x{len(inputs)} at {latency.name}: {seconds:.2f} s, "
                f"{result['succeeded']} SUCCEEDED, max in flight {seen} (limits {limits})"
            )
            out.append(result)
    return out


async def mutations(harness: Harness) -> dict[str, Any]:
    """`--mutations` sequential `upsertContact`s on a fresh gateway, its RSS sampled as they go."""
    count = harness.options.mutations
    gateway = await harness.gateway("mutations")
    every = max(1, count // RSS_SAMPLES)
    samples: list[tuple[int, float]] = [(0, gateway.meter.rss() / 2**20)]
    latencies: list[float] = []
    errors = 0
    try:
        await harness.set_latency(harness.options.zero)
        cpu0 = gateway.meter.cpu_s()
        started = time.perf_counter()
        async with client_session() as session:
            client = GatewayClient(session, gateway.url)
            for i in range(count):
                if i % CLEAR_EVERY == 0:
                    await harness.clear()
                begin = time.perf_counter()
                outcome = await client.upsert(f"bench-m-{i}")
                latencies.append((time.perf_counter() - begin) * 1000)
                errors += not outcome.ok
                if (i + 1) % every == 0 or i + 1 == count:
                    samples.append((i + 1, gateway.meter.rss() / 2**20))
                if (i + 1) % max(1, count // 10) == 0:
                    rate = (i + 1) / (time.perf_counter() - started)
                    _say(f"mutations: {i + 1}/{count} ({rate:.0f}/s), gateway RSS {samples[-1][1]:.1f} MB")
        seconds = time.perf_counter() - started
        cpu = gateway.meter.cpu_s() - cpu0
    finally:
        gateway.stop()
    # Growth is measured from a baseline taken after a warm-up (imports, caches and pools fill on first use).
    warmup = min(1000, count // 10)
    base = next(rss for ops, rss in samples if ops >= warmup)
    end = samples[-1][1]
    return {
        "mutations": count,
        "errors": errors,
        "seconds": seconds,
        "ops_per_s": count / seconds,
        "cpu_ms_per_op": cpu / count * 1000,
        **_stats(latencies),
        "rss_start_mb": samples[0][1],
        "warmup_ops": warmup,
        "rss_base_mb": base,
        "rss_end_mb": end,
        "rss_peak_mb": max(rss for _, rss in samples),
        "growth_pct": (end - base) / base * 100,
        "growth_from_start_pct": (end - samples[0][1]) / samples[0][1] * 100,
        "samples": samples,
    }


async def accepted_payloads(contact: Contact) -> dict[Vendor, dict[str, Any]]:
    """Each vendor's wire payload for `contact`, as its connector prepares it: what a write stores in the link as
    the payload the vendor accepted (`Connector.prepare` makes no call)."""
    async with aiohttp.ClientSession() as session:
        client = DirectClient(session, gateway_config("http://127.0.0.1:9/", "sqlite:///unused.db"))
        try:
            return {connector.vendor: connector.prepare(contact).payload for connector in client.connectors}
        finally:
            await client.aclose()


async def fill_store(url: str, count: int) -> float:
    """Write `count` contacts, each linked at every vendor with the payload that vendor would have accepted,
    straight through `Store.record` (no vendor called); returns the seconds it took."""
    template = Contact.model_validate(contact_input("bench-p-template"))
    payloads = await accepted_payloads(template)
    store = Store(url)
    await store.open()
    started = time.perf_counter()
    try:
        chunk = 2000
        for first in range(0, count, chunk):
            writes = []
            for i in range(first, min(first + chunk, count)):
                contact = template.model_copy(update={"id": f"bench-p-{i:07d}"})
                links = [
                    LinkUpdate(
                        vendor=v,
                        status=VendorStatus.CREATED,
                        remote_id=f"{v.value}-{i}",
                        hash=f"{i:064x}",
                        payload=payloads[v],
                    )
                    for v in REGISTRY
                ]
                writes.append(store.record(contact, links, contact.id))
            await asyncio.gather(*writes)
    finally:
        await store.close()
    return time.perf_counter() - started


async def paging(harness: Harness) -> dict[str, Any]:
    """`contacts(first: 100)` page after page (the `after` cursor) over a store of `--contacts` contacts."""
    count = harness.options.contacts
    url = await harness.store_url("paging")
    _say(f"paging: filling the store with {count} contacts")
    fill_s = await fill_store(url, count)
    _say(f"paging: filled in {fill_s:.1f} s; paging through")
    gateway = await harness.gateway("paging", store_url=url)
    latencies: list[float] = []
    rows = 0
    try:
        async with client_session() as session:
            client = GatewayClient(session, gateway.url)
            after: str | None = None
            while True:
                begin = time.perf_counter()
                data = await client.post(PAGE, {"after": after})
                latencies.append((time.perf_counter() - begin) * 1000)
                page = data["contacts"]
                rows += len(page["edges"])
                if not page["pageInfo"]["hasNextPage"]:
                    break
                after = page["pageInfo"]["endCursor"]
    finally:
        gateway.stop()
    result: dict[str, Any] = {
        "contacts": count,
        "fill_seconds": fill_s,
        "pages": len(latencies),
        "rows": rows,
        **_stats(latencies),
    }
    _say(f"paging: {len(latencies)} pages, {rows} rows, p50 {result['p50_ms']:.2f} ms, p95 {result['p95_ms']:.2f} ms")
    result["page_ms"] = latencies
    return result
