"""Nothing lost, nothing duplicated, across killed processes and several processes on one PostgreSQL.

The gateways here are real `contact-gateway serve` processes; the vendor simulators run in the test process and
count what they hold.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from resolvers.results import Vendor
from tests.conftest import WRITE_TOKEN, Simulators, gateway_config_data
from tests.processes import GatewayProcess
from tests.support import UPSERT, contact, eventually

#: Quick redelivery, and leases that run out soon after a vendor's 2 s deadline (so a restart takes over fast).
QUICK = {
    "outbox": {"backoff_base_s": 0.05, "backoff_cap_s": 0.5, "poll_interval_s": 0.05, "lease_grace_s": 0.5},
}
ALL_VENDORS_2S = {v.value: {"timeout_s": 2.0} for v in Vendor}


async def test_kill_9_mid_fan_out_loses_and_duplicates_nothing(
    simulators: Simulators, tmp_path: Path, processes: list[GatewayProcess]
) -> None:
    config = gateway_config_data(simulators, f"sqlite:///{tmp_path / 'store.db'}", ALL_VENDORS_2S, QUICK)
    first = GatewayProcess(config, tmp_path, "first")
    processes.append(first)
    await first.start()

    await simulators.faults(Vendor.VALOMNIA, fail_next=100_000, fail_status=503)  # one vendor down
    await simulators.faults(Vendor.EROS, latency_ms=5_000)  # one vendor slow: the fan-out is still running

    async def send() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            await client.post(
                f"{first.url}/graphql",
                json={"query": UPSERT, "variables": {"input": contact()}},
                headers={"Authorization": f"Bearer {WRITE_TOKEN}"},
            )

    request = asyncio.create_task(send())

    async def eros_reached() -> bool:
        return bool(await simulators.calls(Vendor.EROS))  # its login or its SaveContact: either is mid-fan-out

    await eventually(eros_reached, "the fan-out reaches Eros")
    await first.kill()
    with pytest.raises(httpx.TransportError):
        await request  # the caller sees the connection die: it never got an answer

    # The vendors recover; a new process starts on the same store.
    await simulators.faults(Vendor.VALOMNIA, fail_next=0)
    await simulators.faults(Vendor.EROS, latency_ms=0)
    second = GatewayProcess(config, tmp_path, "second")
    processes.append(second)
    await second.start()

    async def drained() -> bool:
        return await second.pending() == 0

    await eventually(drained, "every accepted delivery is made after the restart")
    for vendor in Vendor:
        state = await simulators.state(vendor)
        assert len(state["records"]) == 1, (vendor, state["records"].keys())
        assert state["counters"].get("creates", 1) == 1, (vendor, state["counters"])
    answer = await second.graphql('{ contact(id: "C-1001") { vendorLinks { vendor remoteId status } } }')
    links = answer["data"]["contact"]["vendorLinks"]
    assert {link["vendor"] for link in links} == {v.name for v in Vendor}
    # UNCHANGED: the link of a record made at a vendor that finds records by e-mail is recorded as soon as that vendor
    # answers (Jim2, Valomnia), so the restarted process finds it holds this version already.
    assert all(link["remoteId"] and link["status"] in {"CREATED", "UPDATED", "UNCHANGED"} for link in links), links


async def test_a_create_cut_off_by_a_kill_is_not_sent_again_where_nothing_can_find_it(
    simulators: Simulators, tmp_path: Path, processes: list[GatewayProcess]
) -> None:
    """Jim2 creates a contact without an e-mail (nothing can find it again) and the process is killed before the
    answer. The next process took the delivery over and created it again: two records. A delivery whose sender
    stopped mid-call is now, for such a create, FAILED for an operator, as a lost answer within a request is."""
    config = gateway_config_data(simulators, f"sqlite:///{tmp_path / 'store.db'}", ALL_VENDORS_2S, QUICK)
    first = GatewayProcess(config, tmp_path, "first")
    processes.append(first)
    await first.start()
    await simulators.faults(Vendor.JIM2, hang_after_next_create=1)  # the record is made; the answer never comes
    no_email = contact(details=[{"kind": "PHONE", "value": "02079460000"}])

    async def send() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            await client.post(
                f"{first.url}/graphql",
                json={"query": UPSERT, "variables": {"input": no_email, "vendors": ["JIM2"]}},
                headers={"Authorization": f"Bearer {WRITE_TOKEN}"},
            )

    request = asyncio.create_task(send())

    async def created() -> bool:
        return bool((await simulators.state(Vendor.JIM2))["records"])

    await eventually(created, "Jim2 makes the record")
    await first.kill()
    with pytest.raises(httpx.TransportError):
        await request

    second = GatewayProcess(config, tmp_path, "second")
    processes.append(second)
    await second.start()

    async def settled() -> bool:
        return await second.pending() == 0

    await eventually(settled, "the interrupted delivery is decided")
    state = await simulators.state(Vendor.JIM2)
    assert len(state["records"]) == 1, state["records"]
    failed = await second.graphql("{ deliveries(status: FAILED) { edges { node { vendor lastError } } } }")
    (edge,) = failed["data"]["deliveries"]["edges"]
    assert edge["node"]["vendor"] == "JIM2" and "stopped before JIM2 answered" in edge["node"]["lastError"], edge


@pytest.mark.postgresql
async def test_two_processes_share_one_outbox_on_postgresql(
    simulators: Simulators, tmp_path: Path, postgresql_url: str, processes: list[GatewayProcess]
) -> None:
    overrides: dict[str, dict[str, Any]] = {"jim2": {"max_attempts": 1, "breaker_threshold": 0, "timeout_s": 5.0}}
    tables = {"outbox": {"backoff_base_s": 0.05, "backoff_cap_s": 0.2, "poll_interval_s": 0.05, "max_parallel": 8}}
    config = gateway_config_data(simulators, postgresql_url, overrides, tables)

    # A backlog: Jim2 is down while 40 contacts are written.
    await simulators.faults(Vendor.JIM2, fail_next=100_000, fail_status=503)
    loader = GatewayProcess(config, tmp_path, "loader")
    processes.append(loader)
    await loader.start()
    for i in range(40):
        person = contact(id=f"PG-{i:02d}", details=[{"kind": "EMAIL", "value": f"person{i}@example.com"}])
        answer = await loader.graphql(UPSERT, {"input": person, "vendors": ["JIM2"]}, WRITE_TOKEN)
        assert answer["data"]["upsertContact"]["results"][0]["status"] == "QUEUED", answer
    await loader.stop()
    assert (await simulators.state(Vendor.JIM2))["counters"].get("creates", 0) == 0

    # Jim2 recovers (a little slow, so both workers are busy at once); two processes drain the backlog.
    await simulators.faults(Vendor.JIM2, fail_next=0, latency_ms=40)
    workers = [GatewayProcess(config, tmp_path, name) for name in ("worker-a", "worker-b")]
    processes.extend(workers)
    await asyncio.gather(*(w.start() for w in workers))

    async def drained() -> bool:
        return await workers[0].pending() == 0

    await eventually(drained, "the backlog is delivered")
    state = await simulators.state(Vendor.JIM2)
    assert len(state["records"]) == 40
    assert state["counters"]["creates"] == 40, "each delivery made exactly once"
    posts = [c for c in state["calls"] if c["method"] == "POST" and c["path"].endswith("/contacts")]
    assert len(posts) - sum(1 for c in posts if c["outcome"] == 503) == 40
    delivered = await workers[1].graphql("{ deliveries(status: DELIVERED, vendor: JIM2) { totalCount } }")
    assert delivered["data"]["deliveries"]["totalCount"] == 40
