"""Never lose a write: the durable outbox, redelivery, Retry-After, the circuit breaker, and idempotency keys.

Everything runs over real sockets: a gateway under uvicorn with its background worker, the vendor simulators.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any
from unittest.mock import patch

import httpx
import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from graph.schema import encode_cursor
from resolvers import clock
from resolvers import idempotency as idempotency_module
from resolvers.clock import utcnow
from resolvers.fanout import FanOut, OutboxSettings, OutboxWorker, Outcome
from resolvers.idempotency import Answer, Begun, Claim, Idempotency
from resolvers.outbox import Completion, DeliveryStatus, Operation, Outbox
from resolvers.results import UpsertStatus, Vendor, VendorResult, VendorStatus
from resolvers.store import Store
from resolvers.store import deliveries as delivery_rows
from resolvers.vendors.jim2 import Jim2Settings, demo_config
from tests.conftest import (
    ADMIN_TOKEN,
    READ_TOKEN,
    WRITE_ONLY_TOKEN,
    WRITE_TOKEN,
    Gateway,
    Simulators,
    gateway_config,
    serve,
    stop,
)
from tests.support import DELETE, UPSERT, by_vendor, contact, eventually

#: Redelivery quick enough for tests; every other setting is the product's default.
FAST_OUTBOX = {"outbox": {"backoff_base_s": 0.05, "backoff_cap_s": 0.2, "poll_interval_s": 0.05}}

DELIVERIES = """
query($status: DeliveryStatus, $vendor: Vendor, $contactId: ID, $first: Int, $after: String) {
  deliveries(status: $status, vendor: $vendor, contactId: $contactId, first: $first, after: $after) {
    totalCount
    edges { cursor node { id contactId vendor operation status attempts lastStatus lastError nextAttemptAt } }
    pageInfo { hasNextPage endCursor }
  }
}
"""


async def deliveries(gateway: Gateway, **variables: Any) -> dict[str, Any]:
    answer = await gateway.graphql(DELIVERIES, variables, token=ADMIN_TOKEN)
    assert "errors" not in answer, answer
    result: dict[str, Any] = answer["data"]["deliveries"]
    return result


async def pending(gateway: Gateway, vendor: Vendor | None = None) -> int:
    found = await deliveries(gateway, status="PENDING", vendor=vendor.name if vendor else None)
    return int(found["totalCount"])


def writes(calls: list[dict[str, Any]], path_part: str = "") -> list[dict[str, Any]]:
    """Record-writing calls (not logins, not lookups) that reached the vendor's handler."""
    return [
        c
        for c in calls
        if c["method"] in {"POST", "PUT", "PATCH"}
        and path_part in c["path"]
        and not any(a in c["path"] for a in ("auth", "token", "j_spring"))
    ]


async def test_unavailable_vendor_is_queued_then_delivered_once(
    make_gateway: Callable[..., Any], simulators: Simulators
) -> None:
    gateway: Gateway = await make_gateway({"jim2": {"max_attempts": 2}}, tables=FAST_OUTBOX)
    await simulators.faults(Vendor.JIM2, fail_next=4, fail_status=503)  # both in-request attempts, then 2 more
    payload = (await gateway.graphql(UPSERT, {"input": contact()}))["data"]["upsertContact"]
    jim2 = by_vendor(payload["results"])["JIM2"]
    assert (jim2["status"], jim2["attempts"], payload["status"]) == ("QUEUED", 2, "PARTIAL")
    assert jim2["deliveryId"]
    links = {link["vendor"]: link for link in payload["contact"]["vendorLinks"]}
    assert links["JIM2"]["status"] == "QUEUED"

    await eventually(lambda: _no_pending(gateway), "the queued delivery is made")
    state = await simulators.state(Vendor.JIM2)
    assert len(state["records"]) == 1
    assert state["counters"].get("creates") == 1, "delivered once"
    row = (await deliveries(gateway, vendor="JIM2"))["edges"][0]["node"]
    assert (row["status"], row["lastStatus"], row["id"]) == ("DELIVERED", "CREATED", jim2["deliveryId"])
    assert row["attempts"] >= 4
    link = await gateway.graphql(
        '{ contact(id: "C-1001") { vendorLinks { vendor remoteId status pendingDeliveries { id } } } }'
    )
    jim2_link = {lk["vendor"]: lk for lk in link["data"]["contact"]["vendorLinks"]}["JIM2"]
    assert (jim2_link["status"], jim2_link["pendingDeliveries"]) == ("CREATED", [])
    assert jim2_link["remoteId"] in state["records"]


async def _no_pending(gateway: Gateway) -> bool:
    return await pending(gateway) == 0


async def test_a_write_equal_to_the_delivered_one_is_sent_while_another_is_in_flight(
    make_gateway: Callable[..., Any], simulators: Simulators
) -> None:
    """Ada is delivered, Bob is on its way to Jim2, Ada is written again: the last write is Ada, so Jim2 must end
    with Ada. Ada equals what Jim2 last accepted, but Bob's delivery is open: the write is queued behind it, not
    answered UNCHANGED (which left Jim2 holding Bob with nothing pending)."""
    gateway: Gateway = await make_gateway(tables=FAST_OUTBOX)
    ada, bob = contact(lastName="Ada"), contact(lastName="Bob")
    first = (await gateway.graphql(UPSERT, {"input": ada, "vendors": ["JIM2"]}))["data"]["upsertContact"]
    assert first["results"][0]["status"] == "CREATED"

    before = len(await simulators.calls(Vendor.JIM2))
    await simulators.faults(Vendor.JIM2, latency_ms=1500)
    in_flight = asyncio.create_task(gateway.graphql(UPSERT, {"input": bob, "vendors": ["JIM2"]}))

    async def bob_reached_jim2() -> bool:
        return len(await simulators.calls(Vendor.JIM2)) > before

    await eventually(bob_reached_jim2, "Bob's write reaches Jim2")
    await simulators.faults(Vendor.JIM2, latency_ms=0)
    again = (await gateway.graphql(UPSERT, {"input": ada, "vendors": ["JIM2"]}))["data"]["upsertContact"]
    (result,) = again["results"]
    assert result["status"] == "QUEUED", result
    assert "still being sent" in result["errors"][0]["message"] and result["errors"][0]["code"] == "CONFLICT"
    assert (await in_flight)["data"]["upsertContact"]["results"][0]["status"] == "UPDATED"

    await eventually(lambda: _no_pending(gateway), "the queued write is made")
    (record,) = (await simulators.state(Vendor.JIM2))["records"].values()
    assert record["attributes"]["lastName"] == "Ada", "the vendor holds the last write"
    link = await gateway.graphql('{ contact(id: "C-1001") { lastName vendorLinks { vendor status } } }')
    assert link["data"]["contact"]["lastName"] == "Ada"


async def test_a_delete_uses_the_remote_id_a_create_stored_just_before_it_was_accepted(
    simulators: Simulators, tmp_path: Path
) -> None:
    """A create to Jim2 is in flight when deleteContact arrives, and completes (storing Jim2's id) just before the
    delete is accepted. The delete must use that id: read earlier, Jim2's delete had no id, answered SKIPPED
    ("nothing deleted") and closed its delivery, leaving the record at Jim2 with nothing pending."""
    server, task, url = await serve(gateway_config(simulators, f"sqlite:///{tmp_path / 'gateway.db'}"))
    store = server.config.app.state.runtime.fanout.store
    async with httpx.AsyncClient(timeout=30) as client:
        gateway = Gateway(url, client)
        try:
            await simulators.faults(Vendor.JIM2, latency_ms=800)
            create = asyncio.create_task(gateway.graphql(UPSERT, {"input": contact(), "vendors": ["JIM2"]}))

            async def create_reached_jim2() -> bool:
                return len(writes(await simulators.calls(Vendor.JIM2), "/contacts")) == 1

            await eventually(create_reached_jim2, "the create reaches Jim2")
            write = store.write

            async def create_completes_first(op: Callable[[Any], Any]) -> Any:
                # Only the delete's accept waits; the create's own completion (and the worker) pass through.
                if "delete" in op.__qualname__:
                    await create
                return await write(op)

            store.write = create_completes_first
            deleted = await gateway.graphql(DELETE, {"id": "C-1001", "vendors": ["JIM2"]})
            created = (await create)["data"]["upsertContact"]["results"][0]
            assert created["status"] == "CREATED"
            (result,) = deleted["data"]["deleteContact"]["results"]
            assert (result["status"], result["remoteId"]) == ("DELETED", created["remoteId"]), result
            assert (await simulators.state(Vendor.JIM2))["records"] == {}
        finally:
            await stop(server, task)


async def test_retry_after_is_honoured(make_gateway: Callable[..., Any], simulators: Simulators) -> None:
    gateway: Gateway = await make_gateway({"oneserve": {"timeout_s": 0.5}}, tables=FAST_OUTBOX)
    await simulators.faults(Vendor.ONESERVE, throttle_next=1, retry_after=1.5)
    payload = (await gateway.graphql(UPSERT, {"input": contact()}))["data"]["upsertContact"]
    oneserve = by_vendor(payload["results"])["ONESERVE"]
    # 1.5 s does not fit in a 0.5 s deadline: no hammering in-request, the outbox waits for it instead.
    assert (oneserve["status"], oneserve["attempts"]) == ("QUEUED", 1)
    assert [e["code"] for e in oneserve["errors"]] == ["RATE_LIMITED"]

    await eventually(lambda: _no_pending(gateway), "the throttled write is delivered")
    calls = writes(await simulators.calls(Vendor.ONESERVE))
    assert [c["outcome"] for c in calls] == [429, 200]
    assert calls[1]["at"] - calls[0]["at"] >= 1.5, "the vendor's Retry-After was honoured"


async def test_circuit_breaker_opens_and_recovers(make_gateway: Callable[..., Any], simulators: Simulators) -> None:
    overrides = {"eros": {"max_attempts": 1, "breaker_threshold": 2, "breaker_cooldown_s": 1.0}}
    gateway: Gateway = await make_gateway(overrides, tables=FAST_OUTBOX)
    await simulators.faults(Vendor.EROS, fail_next=1000, fail_status=503)

    async def circuit() -> str:
        vendors = (await gateway.graphql("{ vendors { vendor circuit queuedDeliveries } }", token=READ_TOKEN))["data"]
        return str({v["vendor"]: v["circuit"] for v in vendors["vendors"]}["EROS"])

    for i in range(2):
        await gateway.graphql(UPSERT, {"input": contact(id=f"CB-{i}"), "vendors": ["EROS"]})
    assert await circuit() == "OPEN"
    calls_when_open = len(await simulators.calls(Vendor.EROS))
    third = (await gateway.graphql(UPSERT, {"input": contact(id="CB-2"), "vendors": ["EROS"]}))["data"]
    result = third["upsertContact"]["results"][0]
    assert (result["status"], result["attempts"]) == ("QUEUED", 0), "an open breaker does not call the vendor"
    assert "paused" in result["errors"][0]["message"]
    assert len(await simulators.calls(Vendor.EROS)) == calls_when_open

    await simulators.faults(Vendor.EROS, fail_next=0)  # the vendor recovers
    await eventually(lambda: _no_pending(gateway), "the breaker's probe succeeds and the backlog drains")
    assert await circuit() == "CLOSED"
    assert len((await simulators.state(Vendor.EROS))["records"]) == 3


async def test_burst_of_updates_while_down_delivers_the_newest(
    make_gateway: Callable[..., Any], simulators: Simulators
) -> None:
    gateway: Gateway = await make_gateway({"jim2": {"max_attempts": 1, "breaker_threshold": 0}}, tables=FAST_OUTBOX)
    await simulators.faults(Vendor.JIM2, fail_next=100_000, fail_status=503)
    for i in range(8):
        answer = await gateway.graphql(UPSERT, {"input": contact(lastName=f"Version-{i}"), "vendors": ["JIM2"]})
        assert answer["data"]["upsertContact"]["results"][0]["status"] == "QUEUED"
    # The worker may be retrying the previous version at the moment the last write arrives: a delivery in flight
    # is never superseded under the sender, so it stays pending until its attempt ends, then is superseded.
    assert await pending(gateway, Vendor.JIM2) <= 2, "at most the newest and one in flight"

    async def only_the_newest() -> bool:
        superseded = await deliveries(gateway, status="SUPERSEDED", vendor="JIM2")
        return await pending(gateway, Vendor.JIM2) == 1 and superseded["totalCount"] == 7

    await eventually(only_the_newest, "older queued writes are superseded by newer ones")

    before = len(await simulators.calls(Vendor.JIM2))
    await simulators.faults(Vendor.JIM2, fail_next=0)
    await eventually(lambda: _no_pending(gateway), "the newest version is delivered")
    state = await simulators.state(Vendor.JIM2)
    (record,) = state["records"].values()
    assert record["attributes"]["lastName"] == "Version-7"
    after = state["calls"][before:]
    assert len(writes(after, "/contacts")) == 1, "only the newest version is sent after recovery"


async def test_operators_list_retry_and_cancel_deliveries(
    make_gateway: Callable[..., Any], simulators: Simulators
) -> None:
    overrides = {"valomnia": {"max_attempts": 1}}
    tables = {"outbox": {"backoff_base_s": 30, "backoff_cap_s": 30, "poll_interval_s": 0.05}}
    gateway: Gateway = await make_gateway(overrides, tables=tables)
    await simulators.faults(Vendor.VALOMNIA, fail_next=2, fail_status=500)
    for i in range(2):
        await gateway.graphql(UPSERT, {"input": contact(id=f"OP-{i}"), "vendors": ["VALOMNIA"]})
    queued = await deliveries(gateway, status="PENDING", vendor="VALOMNIA", first=1)
    assert queued["totalCount"] == 2 and queued["pageInfo"]["hasNextPage"]
    newest = queued["edges"][0]["node"]
    assert (newest["contactId"], newest["operation"], newest["lastStatus"]) == ("OP-1", "UPSERT", "UNAVAILABLE")
    older = await deliveries(gateway, status="PENDING", vendor="VALOMNIA", after=queued["pageInfo"]["endCursor"])
    assert [e["node"]["contactId"] for e in older["edges"]] == ["OP-0"]
    assert (await deliveries(gateway, contactId="OP-0"))["totalCount"] == 1
    assert (await deliveries(gateway, contactId=""))["totalCount"] == 0, "an empty id filters, it is not 'any'"

    cancel = await gateway.graphql(
        "mutation($id: ID!) { cancelDelivery(id: $id) { id status } }", {"id": newest["id"]}, token=ADMIN_TOKEN
    )
    assert cancel["data"]["cancelDelivery"]["status"] == "CANCELLED"
    # The link said QUEUED; with nothing left to send it says the write was cancelled (not waiting forever).
    shown = await gateway.graphql(
        '{ contact(id: "OP-1") { vendorLinks { vendor status lastError pendingDeliveries { id } } } }'
    )
    (link,) = shown["data"]["contact"]["vendorLinks"]
    assert (link["vendor"], link["status"], link["pendingDeliveries"]) == ("VALOMNIA", "UNAVAILABLE", [])
    assert link["lastError"] == f"CANCELLED: delivery {newest['id']} was cancelled by an operator"
    retry = await gateway.graphql(
        "mutation($id: ID!) { retryDelivery(id: $id) { id status } }",
        {"id": older["edges"][0]["node"]["id"]},
        token=ADMIN_TOKEN,
    )
    assert retry["data"]["retryDelivery"]["status"] == "PENDING"
    await eventually(lambda: _no_pending(gateway), "the retried delivery is made at once, not in 30 s")
    records = (await simulators.state(Vendor.VALOMNIA))["records"]
    assert len(records) == 1, "the cancelled one was not sent"

    again = await gateway.graphql(
        "mutation($id: ID!) { cancelDelivery(id: $id) { id } }", {"id": newest["id"]}, token=ADMIN_TOKEN
    )
    assert again["errors"][0]["message"].startswith("id:")
    for token in (WRITE_TOKEN, READ_TOKEN):
        denied = await gateway.graphql(DELIVERIES, {}, token=token)
        assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"


RETRY = "mutation($id: ID!) { retryDelivery(id: $id) { id status } }"
CANCEL = "mutation($id: ID!) { cancelDelivery(id: $id) { id status } }"


async def test_a_delivery_being_sent_cannot_be_retried_or_cancelled(
    make_gateway: Callable[..., Any], simulators: Simulators
) -> None:
    """V2 is on its way to Jim2 and V3 waits behind it. Retrying V2 superseded every other pending delivery of the
    pair, V3 included (V3 lost); cancelling it let the worker send V3 while V2 was still out (V2 could land last).
    Both are refused, naming `id`, and Jim2 ends with V3."""
    gateway: Gateway = await make_gateway(tables=FAST_OUTBOX)
    await gateway.graphql(UPSERT, {"input": contact(lastName="V1"), "vendors": ["JIM2"]})
    await simulators.faults(Vendor.JIM2, latency_ms=4000)  # V2 stays in flight while the operator acts, however slow
    sending = asyncio.create_task(gateway.graphql(UPSERT, {"input": contact(lastName="V2"), "vendors": ["JIM2"]}))

    await eventually(lambda: _pending_is(gateway, 1), "V2's delivery is being sent")
    queued = await gateway.graphql(UPSERT, {"input": contact(lastName="V3"), "vendors": ["JIM2"]})
    assert queued["data"]["upsertContact"]["results"][0]["status"] == "QUEUED", "V3 waits behind V2"
    # The reason is in `errors`, as for every QUEUED (README), so a client reading errors[0] learns why.
    assert [(e["code"], e["field"]) for e in queued["data"]["upsertContact"]["results"][0]["errors"]] == [
        ("CONFLICT", "")
    ]
    assert (
        "is still being sent; this one is queued"
        in queued["data"]["upsertContact"]["results"][0]["errors"][0]["message"]
    )
    found = await deliveries(gateway, status="PENDING", vendor="JIM2")
    in_flight = min(int(e["node"]["id"]) for e in found["edges"])
    for mutation in (RETRY, CANCEL):
        refused = await gateway.graphql(mutation, {"id": str(in_flight)}, token=ADMIN_TOKEN)
        assert refused["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "argument": "id"}, refused
        assert "is being sent to JIM2 now" in refused["errors"][0]["message"]
    await simulators.faults(Vendor.JIM2, latency_ms=0)  # V2's call keeps its 4 s; V3's goes at once
    assert (await sending)["data"]["upsertContact"]["results"][0]["status"] == "UPDATED"
    await eventually(lambda: _no_pending(gateway), "V3 is delivered after V2")
    (record,) = (await simulators.state(Vendor.JIM2))["records"].values()
    assert record["attributes"]["lastName"] == "V3"
    assert (await simulators.state(Vendor.JIM2))["max_in_flight"] == 1


async def _pending_is(gateway: Gateway, count: int) -> bool:
    return await pending(gateway, Vendor.JIM2) == count


async def test_an_older_delivery_is_never_retried_after_a_newer_one(
    make_gateway: Callable[..., Any], simulators: Simulators
) -> None:
    """A delivery sends the contact as stored now but keeps its operation: a cancelled delete retried after the
    contact was written again would delete the new record. A retry of any delivery with a newer one for the same
    contact and vendor is refused, naming the newer one."""
    # The queued delete waits 30 s: the worker must not be sending it when the operator cancels it (refused then).
    tables = {"outbox": {"backoff_base_s": 30, "backoff_cap_s": 30, "poll_interval_s": 0.05}}
    gateway: Gateway = await make_gateway({"superoffice": {"max_attempts": 1}}, tables=tables)
    await gateway.graphql(UPSERT, {"input": contact(lastName="V1"), "vendors": ["SUPEROFFICE"]})
    await simulators.faults(Vendor.SUPEROFFICE, fail_next=100_000, fail_status=503)
    deleted = await gateway.graphql(DELETE, {"id": "C-1001", "vendors": ["SUPEROFFICE"]})
    delete_id = deleted["data"]["deleteContact"]["results"][0]["deliveryId"]
    cancelled = await gateway.graphql(CANCEL, {"id": delete_id}, token=ADMIN_TOKEN)
    assert cancelled["data"]["cancelDelivery"]["status"] == "CANCELLED"
    await simulators.faults(Vendor.SUPEROFFICE, fail_next=0)
    written = await gateway.graphql(UPSERT, {"input": contact(lastName="V2"), "vendors": ["SUPEROFFICE"]})
    newer_id = written["data"]["upsertContact"]["results"][0]["deliveryId"]
    assert written["data"]["upsertContact"]["results"][0]["status"] == "UPDATED"

    refused = await gateway.graphql(RETRY, {"id": delete_id}, token=ADMIN_TOKEN)
    assert refused["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "argument": "id"}, refused
    assert refused["errors"][0]["message"].startswith(f"id: delivery {newer_id} of contact 'C-1001' to SUPEROFFICE")
    await asyncio.sleep(0.3)  # several worker polls
    (record,) = (await simulators.state(Vendor.SUPEROFFICE))["records"].values()
    assert record["Persons"][0]["Lastname"] == "V2", "the record written since is still there"


@pytest.mark.parametrize("bad", ["²", "١٢", "12a", "-1", "1" * 19])
async def test_delivery_ids_and_cursors_are_ascii_numbers_named_by_their_argument(gateway: Gateway, bad: str) -> None:
    """`int()` reads digits of every script ("١٢" is 12) and `str.isdigit()` passes "²", which `int()` then refuses
    (an INTERNAL error before): both are refused as input, naming the argument they came in."""
    retried = await gateway.graphql(
        "mutation($id: ID!) { retryDelivery(id: $id) { id } }", {"id": bad}, token=ADMIN_TOKEN
    )
    assert retried["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "argument": "id"}, retried
    assert retried["errors"][0]["message"] == "id: not a delivery id"
    paged = await gateway.graphql(
        "query($after: String) { deliveries(after: $after) { totalCount } }",
        {"after": encode_cursor(bad, "delivery:")},
        token=ADMIN_TOKEN,
    )
    assert paged["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "argument": "after"}, paged
    assert paged["errors"][0]["message"] == "after: not a cursor this API issued"


# -- idempotency ----------------------------------------------------------------------------------------------------

KEYED = """
mutation($input: ContactInput!, $key: String) {
  upsertContact(input: $input, idempotencyKey: $key) {
    status results { vendor status remoteId attempts durationMs deliveryId } contact { id lastName updatedAt }
  }
}
"""


async def test_idempotent_replay_calls_no_vendor(gateway: Gateway, simulators: Simulators) -> None:
    first = await gateway.graphql(KEYED, {"input": contact(), "key": "order-77"})
    calls = {v: len(await simulators.calls(v)) for v in simulators.by_vendor}
    # A change made meanwhile by someone else does not alter the replay: the first answer is returned as it was.
    await gateway.graphql(UPSERT, {"input": contact(lastName="Changed")})
    calls_after_change = {v: len(await simulators.calls(v)) for v in simulators.by_vendor}
    repeat = await gateway.graphql(KEYED, {"input": contact(), "key": "order-77"})
    assert repeat == first
    assert {v: len(await simulators.calls(v)) for v in simulators.by_vendor} == calls_after_change
    assert calls_after_change != calls


async def test_same_key_other_input_is_a_conflict(gateway: Gateway, simulators: Simulators) -> None:
    await gateway.graphql(KEYED, {"input": contact(), "key": "k-1"})
    before = {v: len(await simulators.calls(v)) for v in simulators.by_vendor}
    conflict = await gateway.graphql(KEYED, {"input": contact(lastName="Other"), "key": "k-1"})
    assert conflict["data"] is None
    assert conflict["errors"][0]["extensions"]["code"] == "CONFLICT"
    assert conflict["errors"][0]["message"].startswith("idempotencyKey:")
    assert {v: len(await simulators.calls(v)) for v in simulators.by_vendor} == before


async def test_keys_belong_to_their_caller(gateway: Gateway) -> None:
    await gateway.graphql(KEYED, {"input": contact(), "key": "shared"})
    other = await gateway.graphql(KEYED, {"input": contact(lastName="Theirs"), "key": "shared"}, token=WRITE_ONLY_TOKEN)
    assert other["data"]["upsertContact"]["status"] == "SUCCEEDED", other  # not a replay of the first answer
    stored = await gateway.graphql("query($id: ID!) { contact(id: $id) { lastName } }", {"id": contact()["id"]})
    assert stored["data"]["contact"]["lastName"] == "Theirs"


async def test_idempotency_key_header(gateway: Gateway, simulators: Simulators) -> None:
    body = {"query": UPSERT, "variables": {"input": contact()}}
    headers = {"Authorization": f"Bearer {WRITE_TOKEN}", "Idempotency-Key": "hdr-1"}
    first = (await gateway.client.post(f"{gateway.url}/graphql", json=body, headers=headers)).json()
    before = {v: len(await simulators.calls(v)) for v in simulators.by_vendor}
    second = (await gateway.client.post(f"{gateway.url}/graphql", json=body, headers=headers)).json()
    assert second == first
    assert {v: len(await simulators.calls(v)) for v in simulators.by_vendor} == before
    other = {"query": UPSERT, "variables": {"input": contact(lastName="X")}}
    conflict = (await gateway.client.post(f"{gateway.url}/graphql", json=other, headers=headers)).json()
    # Named as the caller sent it: the header, not an `idempotencyKey` argument the caller never used.
    assert conflict["errors"][0]["extensions"] == {"code": "CONFLICT", "argument": "Idempotency-Key"}, conflict
    assert conflict["errors"][0]["message"].startswith("Idempotency-Key: already used for a different input")


async def test_a_header_key_of_the_longest_length_allowed_works(gateway: Gateway, simulators: Simulators) -> None:
    """The limit the error states (255) is the header's: the `:<field>[:<index>]` the gateway adds cannot push a key
    of 255 characters over it (such a key is stored by its SHA-256), and it still replays."""
    headers = {"Authorization": f"Bearer {WRITE_TOKEN}", "Idempotency-Key": "k" * 255}
    for body, read in (
        ({"query": UPSERT, "variables": {"input": contact()}}, lambda a: a["data"]["upsertContact"]["status"]),
        ({"query": BATCH, "variables": {"inputs": [contact(id="L-1")]}}, lambda a: a["data"]["batch"][0]["status"]),
    ):
        first = (await gateway.client.post(f"{gateway.url}/graphql", json=body, headers=headers)).json()
        assert "errors" not in first, first
        assert read(first) == "SUCCEEDED"
        before = {v: len(await simulators.calls(v)) for v in simulators.by_vendor}
        again = (await gateway.client.post(f"{gateway.url}/graphql", json=body, headers=headers)).json()
        assert again == first
        assert {v: len(await simulators.calls(v)) for v in simulators.by_vendor} == before


async def test_an_idempotency_key_of_only_spaces_is_refused(gateway: Gateway, simulators: Simulators) -> None:
    answer = await gateway.graphql(KEYED, {"input": contact(), "key": "   "})
    (error,) = answer["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": "idempotencyKey"}, answer
    assert error["message"] == "idempotencyKey: must be 1-255 printable characters, not only spaces"
    for vendor in Vendor:
        assert await simulators.calls(vendor) == [], vendor


async def test_an_empty_idempotency_key_header_is_refused(gateway: Gateway, simulators: Simulators) -> None:
    """An empty `Idempotency-Key` (HTTP trims a value of spaces to one): a caller who believes the write is keyed
    is told it is not, and nothing is written."""
    headers = {"Authorization": f"Bearer {WRITE_TOKEN}", "Idempotency-Key": ""}
    for body in (
        {"query": UPSERT, "variables": {"input": contact()}},
        {"query": BATCH, "variables": {"inputs": [contact()]}},
    ):
        answer = (await gateway.client.post(f"{gateway.url}/graphql", json=body, headers=headers)).json()
        error = answer["errors"][0]
        assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": "Idempotency-Key"}, answer
        assert error["message"].startswith("Idempotency-Key: the header is empty"), answer
    for vendor in Vendor:
        assert await simulators.calls(vendor) == [], vendor


BATCH = """
mutation($inputs: [ContactInput!]!) {
  batch: upsertContacts(inputs: $inputs, vendors: [JIM2]) { status results { vendor status remoteId errors { code } } }
}
"""


async def test_idempotency_key_header_keys_each_input_of_a_batch(gateway: Gateway, simulators: Simulators) -> None:
    """A retried batch must not write again: with the header each input is keyed `<header>:<field>:<index>`. A
    contact without an e-mail is one Jim2 cannot find again, so an unkeyed repeat would create a second record."""
    no_email = [{"kind": "PHONE", "value": "02079460000"}]
    inputs = [contact(id=f"K-{i}", details=no_email) for i in range(3)]
    headers = {"Authorization": f"Bearer {WRITE_TOKEN}", "Idempotency-Key": "batch-1"}
    body = {"query": BATCH, "variables": {"inputs": inputs}}
    await simulators.faults(Vendor.JIM2, drop_after_next_create=1)  # one create's answer is lost
    first = (await gateway.client.post(f"{gateway.url}/graphql", json=body, headers=headers)).json()
    assert sorted(p["results"][0]["status"] for p in first["data"]["batch"]) == ["CREATED", "CREATED", "UNAVAILABLE"]
    before = len(await simulators.calls(Vendor.JIM2))
    again = (await gateway.client.post(f"{gateway.url}/graphql", json=body, headers=headers)).json()
    assert again == first
    assert len(await simulators.calls(Vendor.JIM2)) == before, "a replayed batch calls no vendor"
    assert len((await simulators.state(Vendor.JIM2))["records"]) == 3

    # The same key with input 1 changed: that input alone is a CONFLICT, in its payload; the others replay.
    changed = [*inputs[:1], contact(id="K-1", details=no_email, lastName="Other"), *inputs[2:]]
    body = {"query": BATCH, "variables": {"inputs": changed}}
    mixed = (await gateway.client.post(f"{gateway.url}/graphql", json=body, headers=headers)).json()
    assert mixed["data"]["batch"][0] == first["data"]["batch"][0]
    assert mixed["data"]["batch"][1] == {
        "status": "FAILED",
        "results": [{"vendor": "JIM2", "status": "SKIPPED", "remoteId": None, "errors": [{"code": "CONFLICT"}]}],
    }
    assert mixed["data"]["batch"][2] == first["data"]["batch"][2]
    assert "errors" not in mixed, "an input's refusal is data in its payload, never a top-level error"
    assert len(await simulators.calls(Vendor.JIM2)) == before

    bad = {"Authorization": f"Bearer {WRITE_TOKEN}", "Idempotency-Key": "x" * 300}
    refused = (await gateway.client.post(f"{gateway.url}/graphql", json=body, headers=bad)).json()
    assert refused["errors"][0]["message"].startswith("Idempotency-Key: must be 1-")
    assert refused["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "argument": "Idempotency-Key"}


async def test_concurrent_repeats_run_once(gateway: Gateway, simulators: Simulators) -> None:
    await simulators.faults(Vendor.EROS, latency_ms=300)
    answers = await asyncio.gather(*(gateway.graphql(KEYED, {"input": contact(), "key": "race"}) for _ in range(5)))
    assert all(a == answers[0] for a in answers)
    saves = [c for c in await simulators.calls(Vendor.EROS) if c["path"].endswith("SaveContact")]
    assert len(saves) == 1


async def test_keys_expire(make_gateway: Callable[..., Any]) -> None:
    gateway: Gateway = await make_gateway(tables={"idempotency": {"ttl_s": 0.3}})
    await gateway.graphql(KEYED, {"input": contact(), "key": "short"})
    await asyncio.sleep(0.4)
    reused = await gateway.graphql(KEYED, {"input": contact(lastName="Later"), "key": "short"})
    assert reused["data"]["upsertContact"]["contact"]["lastName"] == "Later"


async def test_a_key_is_leased_past_the_longest_vendor_deadline(simulators: Simulators, tmp_path: Path) -> None:
    """A keyed write may run as long as its slowest vendor's `timeout_s`; a repeat must not take its key over
    before then (it would run the write twice). With a 200 s deadline the lease is 205 s, not a fixed 120 s."""
    config = gateway_config(
        simulators, f"sqlite:///{tmp_path / 'gateway.db'}", vendor_overrides={"jim2": {"timeout_s": 200}}
    )
    server, task, _ = await serve(config)
    try:
        idempotency = server.config.app.state.runtime.idempotency
        assert idempotency.lease.total_seconds() == 200 + config.outbox.lease_grace_s
        assert await idempotency.begin("svc", "long", "h") == Begun(Claim.NEW)
        later = idempotency_module.utcnow() + timedelta(seconds=150)
        with patch.object(idempotency_module, "utcnow", lambda: later):
            assert await idempotency.begin("svc", "long", "h") == Begun(Claim.BUSY), "150 s in, still the first's"
        expired = idempotency_module.utcnow() + timedelta(seconds=206)
        with patch.object(idempotency_module, "utcnow", lambda: expired):
            assert await idempotency.begin("svc", "long", "h") == Begun(Claim.NEW), "past the lease: taken over"
    finally:
        await stop(server, task)
    assert Idempotency.lease_for(10, 5) == Idempotency.MIN_LEASE_S


def enqueue(
    outbox: Outbox, *, contact_id: str = "C-1", vendor: Vendor = Vendor.JIM2, operation: Operation = Operation.UPSERT
) -> Callable[[Any], dict[Vendor, tuple[int, bool]]]:
    """A store operation enqueueing one delivery (leased to `outbox`'s owner when none of the pair is in flight)."""
    return lambda conn: outbox.enqueue(
        conn,
        contact_id=contact_id,
        vendors=[vendor],
        operation=operation,
        version=1,
        force=operation is Operation.DELETE,
        lease_s={vendor: 30.0},
    )


async def test_a_claim_tells_an_interrupted_delivery_from_one_waiting_for_its_retry(store_url: str) -> None:
    """A delivery whose sender stopped mid-attempt (its lease given up at shutdown, or run out) is claimed as
    `interrupted`: its call may have reached the vendor. One whose attempt ended with a retry is not."""
    store = Store(store_url)
    await store.open()
    try:
        a, b = Outbox(store, owner="A", expire_after_s=3600), Outbox(store, owner="B", expire_after_s=3600)
        lease = {Vendor.JIM2: 30.0, Vendor.EROS: 30.0}
        (cut, _) = (await store.write(enqueue(a, contact_id="C-JIM2")))[Vendor.JIM2]
        (retried, _) = (await store.write(enqueue(a, contact_id="C-EROS", vendor=Vendor.EROS)))[Vendor.EROS]
        failed = VendorResult(vendor=Vendor.EROS, status=VendorStatus.UNAVAILABLE, attempts=1)
        await store.write(
            lambda conn: a.complete(conn, [Completion(retried, failed, utcnow(), VendorStatus.UNAVAILABLE)])
        )
        assert await a.release() == 1, "only the delivery still leased is given up"
        claimed = {d.id: d.interrupted for d in await b.claim(10, lease, [Vendor.JIM2, Vendor.EROS])}
        assert claimed == {cut: True, retried: False}
    finally:
        await store.close()


async def test_which_upserts_may_have_made_a_record_at_the_vendor(store_url: str) -> None:
    """A delete without a remote id looks the record up by content only where an upsert may have made one: not where
    every upsert was refused at its only attempt, stopped at pre-flight, or never sent."""
    store = Store(store_url)
    await store.open()
    try:
        a = Outbox(store, owner="A", expire_after_s=3600)

        async def upsert(contact_id: str, *outcomes: tuple[VendorStatus, int]) -> None:
            (delivery, _) = (await store.write(enqueue(a, contact_id=contact_id)))[Vendor.JIM2]
            for status, attempts in outcomes:
                result = VendorResult(vendor=Vendor.JIM2, status=status, attempts=attempts)
                done = Completion(delivery, result, utcnow() if status is VendorStatus.UNAVAILABLE else None, status)
                await store.write(partial(a.complete, completions=[done]))

        async def reached(contact_id: str) -> bool:
            found = await store.read(lambda conn: a.may_have_written(conn, contact_id, [Vendor.JIM2, Vendor.EROS]))
            assert found <= {Vendor.JIM2}
            return Vendor.JIM2 in found

        await upsert("refused", (VendorStatus.REJECTED, 1))
        await upsert("refused-twice", (VendorStatus.REJECTED, 1))
        await upsert("refused-twice", (VendorStatus.REJECTED, 1))
        await upsert("preflight", (VendorStatus.INVALID, 0))
        await upsert("lost", (VendorStatus.UNAVAILABLE, 1))
        await upsert("retried-then-refused", (VendorStatus.UNAVAILABLE, 1), (VendorStatus.REJECTED, 1))
        await upsert("refused-then-made", (VendorStatus.REJECTED, 1))
        await upsert("refused-then-made", (VendorStatus.CREATED, 1))
        await upsert("in-flight")  # leased at enqueue, no outcome yet: its sender may be mid-call
        await upsert("never-sent")
        await store.write(
            lambda conn: conn.execute(
                sa.update(delivery_rows).where(delivery_rows.c.contact_id == "never-sent").values(lease_until=None)
            )
        )
        await store.write(enqueue(a, contact_id="only-deleted", operation=Operation.DELETE))
        assert {
            cid: await reached(cid) for cid in ("refused", "refused-twice", "preflight", "never-sent")
        } == dict.fromkeys(("refused", "refused-twice", "preflight", "never-sent"), False)
        assert await reached("only-deleted") is False, "a delete delivery makes nothing"
        for made in ("lost", "retried-then-refused", "refused-then-made", "in-flight"):
            assert await reached(made), made
    finally:
        await store.close()


async def test_a_sender_whose_lease_ran_out_does_not_clear_the_lease_of_the_one_sending_now(store_url: str) -> None:
    """A's call outlived its lease and B took the delivery over. A's late completion (a retry) cleared B's lease, so
    a third claim could send the delivery while B's call was still out, and B's outcome was then overwritten. Only
    the lease holder records an outcome now."""
    store = Store(store_url)
    await store.open()
    try:
        a, b = Outbox(store, owner="A", expire_after_s=3600), Outbox(store, owner="B", expire_after_s=3600)
        lease = {Vendor.JIM2: 30.0}
        (d1, _) = (await store.write(enqueue(a)))[Vendor.JIM2]
        await store.write(
            lambda conn: conn.execute(sa.update(delivery_rows).values(lease_until=utcnow() - timedelta(seconds=1)))
        )  # A's lease runs out while its call is still out
        (taken,) = await b.claim(10, lease, [Vendor.JIM2])
        assert (taken.id, taken.interrupted) == (d1, True)
        late = VendorResult(vendor=Vendor.JIM2, status=VendorStatus.UNAVAILABLE, attempts=1)
        await store.write(lambda conn: a.complete(conn, [Completion(d1, late, utcnow(), VendorStatus.UNAVAILABLE)]))
        found = await b.get(d1)
        assert found is not None and found.lease_owner == "B" and found.attempts == 0, found
        assert await a.claim(10, lease, [Vendor.JIM2]) == [], "still being sent by B"
        done = VendorResult(vendor=Vendor.JIM2, status=VendorStatus.CREATED, attempts=1)
        await store.write(lambda conn: b.complete(conn, [Completion(d1, done, None, VendorStatus.CREATED)]))
        found = await b.get(d1)
        assert found is not None and found.status is DeliveryStatus.DELIVERED and found.lease_owner is None
    finally:
        await store.close()


async def test_the_first_answer_stored_for_a_key_is_kept(store_url: str) -> None:
    store = Store(store_url)
    await store.open()
    try:
        keys = Idempotency(store, ttl_s=3600)
        assert await keys.begin("svc", "k", "h") == Begun(Claim.NEW)
        first = Answer(Outcome(UpsertStatus.SUCCEEDED, "C-1", [], True), None)
        await keys.finish("svc", "k", first)
        await keys.finish("svc", "k", Answer(Outcome(UpsertStatus.PARTIAL, "C-1", [], True), None))
        assert await keys.begin("svc", "k", "h") == Begun(Claim.REPLAY, first)
    finally:
        await store.close()


async def _racing_begins(url: str, *, lease_s: float = 3600.0) -> tuple[Begun, Begun]:
    """Two processes' `begin` of one key on one PostgreSQL database: the first's transaction is held open after its
    statements ran, while the second's runs, then committed (the window in which read committed lets both read)."""
    first_store, second_store = Store(url), Store(url)
    await first_store.open()
    await second_store.open()
    try:
        first = Idempotency(first_store, ttl_s=3600, lease_s=lease_s)
        second = Idempotency(second_store, ttl_s=3600, lease_s=lease_s)
        ran, release = asyncio.Event(), asyncio.Event()

        async def held(op: Callable[[Any], Any]) -> Any:
            async with first_store.engine.begin() as conn:
                result = await conn.run_sync(op)
                ran.set()
                await release.wait()
            return result

        first_store.write = held  # type: ignore[method-assign]
        first_begun = asyncio.create_task(first.begin("svc", "k", "h"))
        await ran.wait()
        second_begun = asyncio.create_task(second.begin("svc", "k", "h"))
        await asyncio.sleep(0.3)  # the second's statements reach the row the first holds
        release.set()
        return await first_begun, await second_begun
    finally:
        await first_store.close()
        await second_store.close()


async def test_two_processes_reserving_one_key_at_once_one_waits(postgresql_url: str) -> None:
    """Both select no row; the second's insert then conflicts. It waits for the first (BUSY), not an error."""
    assert await _racing_begins(postgresql_url) == (Begun(Claim.NEW), Begun(Claim.BUSY))


async def test_two_processes_taking_over_one_dead_reservation_one_waits(postgresql_url: str) -> None:
    """A reservation whose lease ran out is taken over by one of two repeats racing for it, not by both."""
    store = Store(postgresql_url)
    await store.open()
    try:
        assert await Idempotency(store, ttl_s=3600, lease_s=0.01).begin("svc", "k", "h") == Begun(Claim.NEW)
    finally:
        await store.close()
    await asyncio.sleep(0.05)
    assert await _racing_begins(postgresql_url) == (Begun(Claim.NEW), Begun(Claim.BUSY))


async def _held(store: Store) -> tuple[asyncio.Event, asyncio.Event]:
    """Make `store`'s next writes (PostgreSQL) hold their transaction open after their statements ran, until the
    second event is set; the first is set when they have run."""
    ran, release = asyncio.Event(), asyncio.Event()

    async def held(op: Callable[[Any], Any]) -> Any:
        async with store.engine.begin() as conn:
            result = await conn.run_sync(op)
            ran.set()
            await release.wait()
        return result

    store.write = held  # type: ignore[method-assign]
    return ran, release


async def test_a_request_and_another_processs_worker_never_both_send_to_one_vendor(postgresql_url: str) -> None:
    """A delivery of C-1 to Jim2 waits for its retry. Process A's worker leases it; before A commits, a request in
    process B accepts a new write of C-1. B must see A's lease and queue its delivery behind it: before, B read no
    lease (not yet committed), and leased its own too, so two deliveries of one contact went to Jim2 at once and the
    older could land last."""
    worker_store, request_store = Store(postgresql_url), Store(postgresql_url)
    await worker_store.open()
    await request_store.open()
    try:
        worker, request = (
            Outbox(worker_store, owner="A", expire_after_s=3600),
            Outbox(request_store, owner="B", expire_after_s=3600),
        )
        lease = {Vendor.JIM2: 30.0}
        first = await request_store.write(enqueue(request))
        await request_store.write(
            lambda conn: conn.execute(sa.update(delivery_rows).values(lease_owner=None, lease_until=None))
        )  # as a failed attempt leaves it: pending, due, not leased
        ran, release = await _held(worker_store)
        claiming = asyncio.create_task(worker.claim(10, lease, [Vendor.JIM2]))
        await ran.wait()
        accepting = asyncio.create_task(request_store.write(enqueue(request)))
        await asyncio.sleep(0.3)  # B's statements reach what A holds
        release.set()
        (claimed,) = await claiming
        assert claimed.id == first[Vendor.JIM2][0]
        second = await accepting
        assert second[Vendor.JIM2][1] is False, "B queues behind A's delivery in flight"
        rows = await request_store.read(
            lambda conn: conn.execute(
                sa.select(delivery_rows.c.lease_owner).where(
                    delivery_rows.c.status == DeliveryStatus.PENDING.value, delivery_rows.c.lease_until.is_not(None)
                )
            ).all()
        )
        assert [owner for (owner,) in rows] == ["A"], "one delivery of the pair in flight"
    finally:
        await worker_store.close()
        await request_store.close()


async def test_a_retry_never_waits_beside_a_newer_write_another_process_accepted(postgresql_url: str) -> None:
    """Process A's call of D1 (an upsert of C-1 to Jim2) fails and its completion puts D1 back to wait for a retry;
    before A commits, process B accepts a delete of C-1. B saw D1 leased and queued D2 behind it; A's check for a
    newer delivery ran before B's commit: both waited, the worker sent D2 first and D1 later, writing the contact
    back after its delete. Completion now takes the contact's lock, so one of them sees the other."""
    a_store, b_store = Store(postgresql_url), Store(postgresql_url)
    await a_store.open()
    await b_store.open()
    try:
        a, b = Outbox(a_store, owner="A", expire_after_s=3600), Outbox(b_store, owner="B", expire_after_s=3600)
        (d1, leased) = (await a_store.write(enqueue(a)))[Vendor.JIM2]
        assert leased
        failed = VendorResult(vendor=Vendor.JIM2, status=VendorStatus.UNAVAILABLE, attempts=1)
        retry = Completion(d1, failed, utcnow() + timedelta(seconds=30), VendorStatus.UNAVAILABLE)
        ran, release = await _held(a_store)
        completing = asyncio.create_task(a_store.write(lambda conn: a.complete(conn, [retry])))
        await ran.wait()
        accepting = asyncio.create_task(b_store.write(enqueue(b, operation=Operation.DELETE)))
        await asyncio.sleep(0.3)  # B's statements reach what A holds
        release.set()
        await completing
        (d2, _) = (await accepting)[Vendor.JIM2]
        rows = await b_store.read(
            lambda conn: conn.execute(
                sa.select(delivery_rows.c.id, delivery_rows.c.status).order_by(delivery_rows.c.id)
            ).all()
        )
        waiting = [id_ for id_, status in rows if status == DeliveryStatus.PENDING.value]
        assert waiting == [d2], f"only the newest write of the pair may wait: {rows}"
    finally:
        await a_store.close()
        await b_store.close()


async def test_an_operator_cancel_does_not_hide_a_delivery_another_process_made(postgresql_url: str) -> None:
    """Process B reads the delivery (PENDING, cancellable) while process A's completion (DELIVERED) is about to
    commit; B's cancel must find it delivered and refuse, not record CANCELLED over a write that was made."""
    a_store, b_store = Store(postgresql_url), Store(postgresql_url)
    await a_store.open()
    await b_store.open()
    try:
        a, b = Outbox(a_store, owner="A", expire_after_s=3600), Outbox(b_store, owner="B", expire_after_s=3600)
        queued = await a_store.write(enqueue(a))
        delivery_id = queued[Vendor.JIM2][0]
        ran, release = await _held(a_store)
        delivering = asyncio.create_task(
            a_store.write(
                lambda conn: conn.execute(
                    sa.update(delivery_rows)
                    .where(delivery_rows.c.id == delivery_id)
                    .values(status=DeliveryStatus.DELIVERED.value, lease_owner=None, lease_until=None)
                )
            )
        )
        await ran.wait()
        cancelling = asyncio.create_task(b.cancel(delivery_id))
        await asyncio.sleep(0.3)
        release.set()
        await delivering
        refused = await cancelling
        assert refused is None or isinstance(refused, str), "a delivery being made cannot be cancelled"
        found = await b.get(delivery_id)
        assert found is not None and found.status is DeliveryStatus.DELIVERED
    finally:
        await a_store.close()
        await b_store.close()


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\tkey"])
async def test_bad_keys_are_refused(gateway: Gateway, key: str) -> None:
    answer = await gateway.graphql(KEYED, {"input": contact(), "key": key})
    assert answer["errors"][0]["message"].startswith("idempotencyKey:")


async def test_lost_answer_to_an_unfindable_create_is_failed_not_repeated(
    make_gateway: Callable[..., Any], simulators: Simulators
) -> None:
    """A Jim2 create without an e-mail whose answer is lost cannot be found again: repeating it could duplicate."""
    gateway: Gateway = await make_gateway(tables=FAST_OUTBOX)
    await simulators.faults(Vendor.JIM2, drop_after_next_write=1)
    no_email = contact(details=[{"kind": "PHONE", "value": "02079460000"}])
    payload = (await gateway.graphql(UPSERT, {"input": no_email, "vendors": ["JIM2"]}))["data"]["upsertContact"]
    result = payload["results"][0]
    assert (result["status"], result["attempts"]) == ("UNAVAILABLE", 1)
    assert any(w.startswith("not retried: JIM2 may have created the contact") for w in result["warnings"])
    row = (await deliveries(gateway, vendor="JIM2"))["edges"][0]["node"]
    assert (row["id"], row["status"]) == (result["deliveryId"], "FAILED")
    failed = await gateway.graphql('{ contact(id: "C-1001") { vendorLinks { vendor failedDeliveries { id } } } }')
    links = {lk["vendor"]: lk for lk in failed["data"]["contact"]["vendorLinks"]}
    assert [d["id"] for d in links["JIM2"]["failedDeliveries"]] == [result["deliveryId"]]
    assert (await simulators.state(Vendor.JIM2))["counters"]["creates"] == 1


async def test_a_write_after_an_unfindable_lost_create_is_held_until_an_operator_retries(
    make_gateway: Callable[..., Any], simulators: Simulators
) -> None:
    """The lost create is FAILED for an operator; the caller, who never saw a success, writes again. That write
    knew nothing of the first and created a second record. It is held now (the first may have made the record),
    until an operator, having checked Jim2, retries it: then it is sent."""
    gateway: Gateway = await make_gateway(tables=FAST_OUTBOX)
    await simulators.faults(Vendor.JIM2, drop_after_next_write=1)
    no_email = contact(details=[{"kind": "PHONE", "value": "02079460000"}])
    first = (await gateway.graphql(UPSERT, {"input": no_email, "vendors": ["JIM2"]}))["data"]["upsertContact"]
    assert first["results"][0]["status"] == "UNAVAILABLE"

    again = (await gateway.graphql(UPSERT, {"input": {**no_email, "lastName": "King"}, "vendors": ["JIM2"]}))["data"]
    (held,) = again["upsertContact"]["results"]
    assert (held["status"], held["attempts"]) == ("UNAVAILABLE", 0), held
    assert held["errors"][0]["message"] == (
        f"not sent: delivery {first['results'][0]['deliveryId']} of this contact may have made it at JIM2 already, "
        "unfindable"
    )
    assert any(w.startswith("not retried: JIM2 may have created the contact") for w in held["warnings"])
    rows = {r["node"]["id"]: r["node"]["status"] for r in (await deliveries(gateway, vendor="JIM2"))["edges"]}
    assert rows == {first["results"][0]["deliveryId"]: "FAILED", held["deliveryId"]: "FAILED"}
    assert (await simulators.state(Vendor.JIM2))["counters"]["creates"] == 1, "no second create"

    retried = await gateway.graphql(RETRY, {"id": held["deliveryId"]}, token=ADMIN_TOKEN)
    assert retried["data"]["retryDelivery"]["status"] == "PENDING", retried
    await eventually(lambda: _no_pending(gateway), "the retried delivery is sent")
    assert (await simulators.state(Vendor.JIM2))["counters"]["creates"] == 2, "the operator's call"


async def test_a_queued_write_behind_an_unfindable_create_cut_off_is_held(
    store_url: str, make_gateway: Callable[..., Any], simulators: Simulators
) -> None:  # store_url first: its database is dropped after the gateway stops
    """A's create of a contact without an e-mail is cut off mid-call (its lease left behind), and a newer write of
    the contact waits behind it. The worker supersedes the older delivery and took the newer one as a fresh start:
    a second create. The newer one is held (FAILED, naming the older) instead."""
    gateway: Gateway = await make_gateway(tables=FAST_OUTBOX, store_url=store_url)
    store = Store(store_url)
    await store.open()
    try:
        a = Outbox(store, owner="dead-process", expire_after_s=3600)
        (cut, _) = (await store.write(enqueue(a, contact_id="C-1001")))[Vendor.JIM2]
        no_email = contact(details=[{"kind": "PHONE", "value": "02079460000"}])
        # The cut-off create's contact, then the newer write queued behind the lease (still held by A).
        payload = (await gateway.graphql(UPSERT, {"input": no_email, "vendors": ["JIM2"]}))["data"]["upsertContact"]
        (queued,) = payload["results"]
        assert queued["status"] == "QUEUED", queued
        await store.write(
            lambda conn: conn.execute(
                sa.update(delivery_rows)
                .where(delivery_rows.c.id == cut)
                .values(lease_until=utcnow() - timedelta(seconds=1))
            )
        )  # A's lease runs out: A was killed mid-call

        async def settled() -> bool:
            row = await a.get(int(queued["deliveryId"]))
            return row is not None and row.status is not DeliveryStatus.PENDING

        await eventually(settled, "the worker takes the newer delivery")
        newer = await a.get(int(queued["deliveryId"]))
        older = await a.get(cut)
        assert newer is not None and older is not None
        # Which of the two a claim takes first is the database's row order: the older one is superseded by the
        # newer, or (taken after the newer was held) held itself as cut off. Either way nothing is created.
        assert newer.status is DeliveryStatus.FAILED, newer
        assert older.status in {DeliveryStatus.SUPERSEDED, DeliveryStatus.FAILED}, older
        assert newer.last_error is not None and f"delivery {cut}" in newer.last_error, newer.last_error
        assert (await simulators.state(Vendor.JIM2))["counters"].get("creates", 0) == 0
    finally:
        await store.close()


@pytest.mark.parametrize("vendor", [Vendor.JIM2, Vendor.VALOMNIA])
@pytest.mark.parametrize(
    "fault",
    [{"drop_after_next_create": 1}, {"fail_after_next_create": 1, "fail_status": 502}],
    ids=["lost", "proxy-502"],
)
async def test_a_lost_create_is_found_by_what_it_sent_after_the_email_changed(
    make_gateway: Callable[..., Any], simulators: Simulators, vendor: Vendor, fault: dict[str, int]
) -> None:
    """A create with an e-mail whose answer is lost (or is a proxy's 502, `ambiguous_statuses`) waits to be retried
    (a repeat finds the record by that e-mail). The contact is written again with another e-mail first: that write
    looked the record up by the new address, found nothing and created a second one. The link keeps what the lost
    create sent, and the lookup tries it."""
    tables = {"outbox": {"backoff_base_s": 30, "backoff_cap_s": 30, "poll_interval_s": 0.05}}
    gateway: Gateway = await make_gateway({vendor.value: {"max_attempts": 1}}, tables=tables)
    await simulators.faults(vendor, **fault)
    first = (await gateway.graphql(UPSERT, {"input": contact(), "vendors": [vendor.name]}))["data"]["upsertContact"]
    assert first["results"][0]["status"] == "QUEUED", first
    records = simulators.by_vendor[vendor].state.records
    assert len(records) == 1, "made, but the answer was lost"

    moved = contact(details=[{"kind": "EMAIL", "value": "ada.new@example.com"}])
    again = (await gateway.graphql(UPSERT, {"input": moved, "vendors": [vendor.name]}))["data"]["upsertContact"]
    (result,) = again["results"]
    assert (result["status"], result["matchedBy"]) == ("UPDATED", "email"), result
    assert list(records) == [result["remoteId"]], "the one record, adopted and updated; no second"
    await eventually(lambda: _no_pending(gateway), "nothing left to send")
    assert len(records) == 1


@pytest.mark.parametrize("vendor", [Vendor.JIM2, Vendor.VALOMNIA])
async def test_update_of_a_record_gone_at_the_vendor_whose_create_answer_is_lost_is_not_repeated(
    make_gateway: Callable[..., Any], simulators: Simulators, vendor: Vendor
) -> None:
    """The gateway knows the record's remote id, so repeating the update is safe; but the vendor no longer has it,
    the connector falls through to a create, and that create's answer is lost. Without an e-mail a repeat would
    not find what it made: the result is ambiguous (FAILED for an operator), never a second record."""
    gateway: Gateway = await make_gateway({vendor.value: {"max_attempts": 3}}, tables=FAST_OUTBOX)
    no_email = contact(details=[{"kind": "PHONE", "value": "02079460000"}])
    first = (await gateway.graphql(UPSERT, {"input": no_email, "vendors": [vendor.name]}))["data"]["upsertContact"]
    assert first["results"][0]["status"] == "CREATED"
    records = simulators.by_vendor[vendor].state.records
    del records[first["results"][0]["remoteId"]]  # deleted at the vendor by someone else
    await simulators.faults(vendor, drop_after_next_create=1)

    changed = contact(details=[{"kind": "PHONE", "value": "02079460000"}], lastName="Lovelace-King")
    payload = (await gateway.graphql(UPSERT, {"input": changed, "vendors": [vendor.name]}))["data"]["upsertContact"]
    result = payload["results"][0]
    assert (result["status"], result["attempts"]) == ("UNAVAILABLE", 1)
    assert any(w.startswith(f"not retried: {vendor.name} may have created") for w in result["warnings"])
    row = (await deliveries(gateway, vendor=vendor.name))["edges"][0]["node"]
    assert (row["id"], row["status"]) == (result["deliveryId"], "FAILED")
    await asyncio.sleep(0.3)  # several worker polls: a FAILED delivery is not redelivered on its own
    assert len(records) == 1, "the lost create made one record, and nothing made a second"


@pytest.mark.parametrize("vendor", [Vendor.JIM2, Vendor.VALOMNIA])
@pytest.mark.parametrize(
    ("fault", "http_status"),
    [({"garble_after_next_create": 1}, 201), ({"fail_after_next_create": 1, "fail_status": 504}, 504)],
    ids=["unreadable-2xx", "proxy-504"],
)
async def test_a_create_answered_ambiguously_is_not_repeated(
    make_gateway: Callable[..., Any], simulators: Simulators, vendor: Vendor, fault: dict[str, int], http_status: int
) -> None:
    """The vendor made the record, but its answer does not say so: a 2xx whose body the connector cannot read (no
    id), or a proxy in front of it that gave up (504, `ambiguous_statuses`) while it committed. With no e-mail
    nothing can find the record again: a repeat would make a second one. Ambiguous, FAILED for an operator, as
    with a lost answer, and no second record is made, in the request or by the worker."""
    gateway: Gateway = await make_gateway({vendor.value: {"max_attempts": 3}}, tables=FAST_OUTBOX)
    await simulators.faults(vendor, **fault)
    no_email = contact(details=[{"kind": "PHONE", "value": "02079460000"}])
    payload = (await gateway.graphql(UPSERT, {"input": no_email, "vendors": [vendor.name]}))["data"]["upsertContact"]
    result = payload["results"][0]
    assert (result["status"], result["attempts"], result["httpStatus"]) == ("UNAVAILABLE", 1, http_status), result
    assert any(w.startswith(f"not retried: {vendor.name} may have created") for w in result["warnings"])
    row = (await deliveries(gateway, vendor=vendor.name))["edges"][0]["node"]
    assert (row["id"], row["status"]) == (result["deliveryId"], "FAILED")
    await asyncio.sleep(0.3)  # several worker polls: a FAILED delivery is not redelivered on its own
    assert len(simulators.by_vendor[vendor].state.records) == 1, "one record, and no second"


async def test_a_deadline_during_a_fall_through_create_is_not_repeated(
    make_gateway: Callable[..., Any], simulators: Simulators
) -> None:
    """As with a lost answer, so with a deadline: Jim2 no longer has the linked record, the update falls through to
    a create (no e-mail to find it again), and the create is made but never answered. The result is ambiguous and
    FAILED for an operator; redelivering it would make a second record."""
    gateway: Gateway = await make_gateway({"jim2": {"timeout_s": 3.0}}, tables=FAST_OUTBOX)
    no_email = [{"kind": "PHONE", "value": "02079460000"}]
    first = (await gateway.graphql(UPSERT, {"input": contact(details=no_email), "vendors": ["JIM2"]}))["data"]
    records = simulators.by_vendor[Vendor.JIM2].state.records
    del records[first["upsertContact"]["results"][0]["remoteId"]]
    await simulators.faults(Vendor.JIM2, hang_after_next_create=1)
    changed = contact(details=no_email, lastName="Later")
    result = (await gateway.graphql(UPSERT, {"input": changed, "vendors": ["JIM2"]}))["data"]["upsertContact"]
    (jim2,) = result["results"]
    assert jim2["status"] == "UNAVAILABLE", jim2
    assert any(w.startswith("not retried: JIM2 may have created") for w in jim2["warnings"])
    row = (await deliveries(gateway, vendor="JIM2"))["edges"][0]["node"]
    assert (row["id"], row["status"]) == (jim2["deliveryId"], "FAILED")
    await asyncio.sleep(0.5)  # several worker polls
    assert len(records) == 1, "the create whose answer never came made one record, and nothing made a second"


async def test_a_delete_finds_the_record_of_a_create_whose_answer_was_lost(
    make_gateway: Callable[..., Any], simulators: Simulators
) -> None:
    """Jim2 made the record, the answer was lost, the write is QUEUED (no remote id, no accepted payload); a delete
    supersedes it. Jim2's delete finds records by the e-mail of the payload it is given: it was given none and
    answered SKIPPED, leaving the record. The contact as stored now stands in, and the record is deleted."""
    tables = {"outbox": {"backoff_base_s": 30, "backoff_cap_s": 30, "poll_interval_s": 0.05}}
    gateway: Gateway = await make_gateway({"jim2": {"max_attempts": 1}}, tables=tables)
    await simulators.faults(Vendor.JIM2, drop_after_next_create=1)
    written = (await gateway.graphql(UPSERT, {"input": contact(), "vendors": ["JIM2"]}))["data"]["upsertContact"]
    assert written["results"][0]["status"] == "QUEUED"
    assert len((await simulators.state(Vendor.JIM2))["records"]) == 1, "made, but the answer was lost"
    deleted = (await gateway.graphql(DELETE, {"id": "C-1001", "vendors": ["JIM2"]}))["data"]["deleteContact"]
    (result,) = deleted["results"]
    assert (result["status"], result["remoteId"]) == ("DELETED", "10-1"), result
    assert (await simulators.state(Vendor.JIM2))["records"] == {}
    assert await pending(gateway) == 0


async def test_a_delete_after_only_refused_writes_leaves_anothers_record_with_that_email(
    make_gateway: Callable[..., Any], simulators: Simulators
) -> None:
    """Jim2 finds records by e-mail. Another system (here a second gateway) made a Jim2 record with Ada's e-mail;
    this gateway's write of Ada found it, and Jim2 refused the update (a detail type it does not have): the record was
    never the gateway's. A delete of Ada must not look it up by e-mail and delete it; nothing was ever made."""
    other: Gateway = await make_gateway(store="other.db")
    made = (await other.graphql(UPSERT, {"input": contact(id="X-1"), "vendors": ["JIM2"]}))["data"]["upsertContact"]
    assert made["results"][0]["status"] == "CREATED"
    types = {"phone": "Phone", "mobile": "Mobile", "email": "EMail", "other": "Pager"}
    gateway: Gateway = await make_gateway({"jim2": {"detail_types": types}})
    pager = {"kind": "OTHER", "value": "555"}
    refused = await gateway.graphql(
        UPSERT, {"input": contact(details=[*contact()["details"], pager]), "vendors": ["JIM2"]}
    )
    assert refused["data"]["upsertContact"]["results"][0]["status"] == "REJECTED", refused

    deleted = (await gateway.graphql(DELETE, {"id": "C-1001", "vendors": ["JIM2"]}))["data"]["deleteContact"]
    (result,) = deleted["results"]
    assert (result["status"], result["remoteId"]) == ("SKIPPED", None), result
    assert list((await simulators.state(Vendor.JIM2))["records"]) == ["10-1"], "the other system's record stays"
    assert not [c for c in await simulators.calls(Vendor.JIM2) if c["method"] == "DELETE"]


async def test_a_fast_vendors_lease_lasts_until_the_writes_slowest_vendor_answers(
    make_gateway: Callable[..., Any], simulators: Simulators
) -> None:
    """A request records all its vendors' outcomes once the slowest has answered. Jim2's delivery had only Jim2's
    lease (1 s): it ran out while Eros took 2.5 s, a worker sent a newer write to Jim2, and the late completion
    then recorded the older payload as Jim2's. Writing that older payload again answered UNCHANGED while Jim2 held
    the newer one. Every delivery of a request is now leased for its slowest vendor's deadline."""
    tables = {"outbox": {"backoff_base_s": 0.05, "backoff_cap_s": 0.2, "poll_interval_s": 0.05, "lease_grace_s": 0.2}}
    gateway: Gateway = await make_gateway({"jim2": {"timeout_s": 1.0}, "eros": {"timeout_s": 20.0}}, tables=tables)
    both = ["JIM2", "EROS"]
    assert (await gateway.graphql(UPSERT, {"input": contact(), "vendors": both}))["data"]["upsertContact"]
    await simulators.faults(Vendor.EROS, latency_ms=2500)
    first = asyncio.create_task(gateway.graphql(UPSERT, {"input": contact(lastName="One"), "vendors": both}))

    async def jim2_holds(name: str) -> bool:
        records = (await simulators.state(Vendor.JIM2))["records"]
        return [r["attributes"]["lastName"] for r in records.values()] == [name]

    await eventually(lambda: jim2_holds("One"), "Jim2 has the first write")
    second = (await gateway.graphql(UPSERT, {"input": contact(lastName="Two"), "vendors": ["JIM2"]}))["data"]
    assert second["upsertContact"]["results"][0]["status"] == "QUEUED", "behind the first, still in flight"
    assert (await first)["data"]["upsertContact"]["status"] == "SUCCEEDED"
    await eventually(lambda: jim2_holds("Two"), "the second write is delivered after the first")
    await eventually(lambda: _no_pending(gateway), "nothing left to send")
    await simulators.faults(Vendor.EROS, latency_ms=0)

    again = (await gateway.graphql(UPSERT, {"input": contact(lastName="One"), "vendors": ["JIM2"]}))["data"]
    (result,) = again["upsertContact"]["results"]
    assert result["status"] == "UPDATED", result
    assert await jim2_holds("One")


async def test_two_contacts_sharing_an_email_written_at_once_stay_two_records(
    make_gateway: Callable[..., Any], simulators: Simulators
) -> None:
    """Jim2 finds records by e-mail, and a record another contact's link names is not adopted. But the first
    contact's link was recorded only once all its vendors had answered: while Eros was slow, a second contact with
    the same e-mail found Jim2's new record unowned, adopted it and overwrote it. The link of a record made or
    adopted at such a vendor is recorded as soon as that vendor answers."""
    gateway: Gateway = await make_gateway(tables=FAST_OUTBOX)
    await simulators.faults(Vendor.EROS, latency_ms=1500)  # the first write's other vendor is slow
    first = asyncio.create_task(gateway.graphql(UPSERT, {"input": contact(id="SHARED-1"), "vendors": ["JIM2", "EROS"]}))

    async def made() -> bool:
        return bool((await simulators.state(Vendor.JIM2))["records"])

    await eventually(made, "Jim2 has SHARED-1's record")
    second = await gateway.graphql(UPSERT, {"input": contact(id="SHARED-2", firstName="Bea"), "vendors": ["JIM2"]})
    (two,) = second["data"]["upsertContact"]["results"]
    one = by_vendor((await first)["data"]["upsertContact"]["results"])["JIM2"]
    assert (one["status"], one["remoteId"]) == ("CREATED", "10-1"), one
    assert (two["status"], two["remoteId"], two["matchedBy"]) == ("CREATED", "10-2", None), two
    records = (await simulators.state(Vendor.JIM2))["records"]
    assert {k: r["attributes"]["firstName"] for k, r in records.items()} == {"10-1": "Ada", "10-2": "Bea"}


async def test_per_vendor_concurrency_limit(make_gateway: Callable[..., Any], simulators: Simulators) -> None:
    gateway: Gateway = await make_gateway({"oneserve": {"max_concurrency": 2}})
    await simulators.faults(Vendor.ONESERVE, latency_ms=150)
    await asyncio.gather(
        *(gateway.graphql(UPSERT, {"input": contact(id=f"CC-{i}"), "vendors": ["ONESERVE"]}) for i in range(8))
    )
    state = await simulators.state(Vendor.ONESERVE)
    assert len(state["records"]) == 8
    assert state["max_in_flight"] == 2, "never more than max_concurrency calls at once, and the limit is used"


async def test_per_vendor_rate_limit(make_gateway: Callable[..., Any], simulators: Simulators) -> None:
    gateway: Gateway = await make_gateway({"eros": {"rate_per_s": 4}})
    await asyncio.gather(
        *(gateway.graphql(UPSERT, {"input": contact(id=f"RL-{i}"), "vendors": ["EROS"]}) for i in range(10))
    )
    saves = sorted(c["at"] for c in await simulators.calls(Vendor.EROS) if c["path"].endswith("SaveContact"))
    assert len(saves) == 10
    # Evenly spaced, 4 a second: the 10th call starts 9 intervals (2.25 s) after the first, and no second holds more.
    assert saves[-1] - saves[0] >= 2.2
    for start in saves:
        assert sum(1 for t in saves if start <= t < start + 0.9) <= 4


async def test_undeliverable_writes_expire_visibly(make_gateway: Callable[..., Any], simulators: Simulators) -> None:
    tables = {"outbox": {"expire_after_s": 0.5, "backoff_base_s": 0.05, "backoff_cap_s": 0.1, "poll_interval_s": 0.05}}
    gateway: Gateway = await make_gateway({"eros": {"max_attempts": 1, "breaker_threshold": 0}}, tables=tables)
    await simulators.faults(Vendor.EROS, fail_next=100_000, fail_status=503)
    payload = (await gateway.graphql(UPSERT, {"input": contact(), "vendors": ["EROS"]}))["data"]["upsertContact"]
    assert payload["results"][0]["status"] == "QUEUED"

    async def failed() -> bool:
        return (await deliveries(gateway, status="FAILED", vendor="EROS"))["totalCount"] == 1

    await eventually(failed, "the delivery expires")
    row = (await deliveries(gateway, status="FAILED"))["edges"][0]["node"]
    assert row["lastError"].startswith("EXPIRED")
    answer = await gateway.graphql(
        '{ contact(id: "C-1001") { vendorLinks { vendor status lastError failedDeliveries { id } } } }'
    )
    (link,) = answer["data"]["contact"]["vendorLinks"]
    assert (link["status"], link["lastError"], link["failedDeliveries"]) == (
        "UNAVAILABLE",
        "EXPIRED",
        [{"id": row["id"]}],
    )
    assert await pending(gateway) == 0


async def idle(worker: OutboxWorker) -> bool:
    """The worker's loop is parked in its wait for a wakeup: the coroutines its task is awaiting, followed down."""
    if worker._task is None:
        return False
    names: list[str] = []
    awaited: Any = worker._task.get_coro()
    while (code := getattr(awaited, "cr_code", None)) is not None:
        names.append(code.co_name)
        awaited = getattr(awaited, "cr_await", None)
    # `Event.wait` directly, or (as before the fix) inside `asyncio.wait_for`: not while reading when work is due.
    return names[-2:] in (["_wait", "wait"], ["_wait", "wait_for"])


async def test_worker_stops_when_woken_in_the_same_step_as_its_stop(tmp_path: Path) -> None:
    # A delivery finishing (wakeup.set) in the same loop step as shutdown's cancel: Python 3.11's asyncio.wait_for
    # returns the finished wait and drops the cancellation, so a worker idling in wait_for never stopped and the
    # app's shutdown waited forever (seen once as a CI run stuck in a test's teardown).
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    await store.open()
    try:
        fanout = FanOut({}, store, settings=OutboxSettings(poll_interval_s=30))
        worker = OutboxWorker(fanout)
        worker.start()
        await eventually(lambda: idle(worker), "the worker waits for work")
        fanout.wakeup.set()
        stopping = asyncio.ensure_future(worker.stop())
        done, _ = await asyncio.wait({stopping}, timeout=5)
        assert done, "the worker did not stop"
        assert not worker.alive
    finally:
        if worker._task is not None:  # only after the failure: end the loop that ignored its cancellation
            worker._task.cancel()
        await store.close()


async def test_which_5xx_leave_a_create_in_doubt_is_a_setting(
    make_gateway: Callable[..., Any], simulators: Simulators
) -> None:
    """A vendor whose own 500 can come after a commit is configured so (`ambiguous_statuses`): its 500 to a create
    nothing can find is then not repeated either. Outside the list a 5xx means "did not act" and is retried."""
    gateway: Gateway = await make_gateway(
        {"jim2": {"max_attempts": 3, "ambiguous_statuses": [500, 502, 504]}}, tables=FAST_OUTBOX
    )
    no_email = contact(details=[{"kind": "PHONE", "value": "02079460000"}])
    await simulators.faults(Vendor.JIM2, fail_after_next_create=1, fail_status=500)
    payload = (await gateway.graphql(UPSERT, {"input": no_email, "vendors": ["JIM2"]}))["data"]["upsertContact"]
    assert (payload["results"][0]["status"], payload["results"][0]["attempts"]) == ("UNAVAILABLE", 1)

    await simulators.faults(Vendor.JIM2, fail_next=1, fail_status=503)  # refused before acting
    other = contact(id="c-503", details=[{"kind": "PHONE", "value": "02079460001"}])
    payload = (await gateway.graphql(UPSERT, {"input": other, "vendors": ["JIM2"]}))["data"]["upsertContact"]
    assert (payload["results"][0]["status"], payload["results"][0]["attempts"]) == ("CREATED", 2)
    assert len(simulators.by_vendor[Vendor.JIM2].state.records) == 2


def test_only_server_errors_can_be_ambiguous_statuses() -> None:
    with pytest.raises(ValidationError, match=r"only 5xx statuses can leave a create in doubt, not \[404\]"):
        Jim2Settings.model_validate({**demo_config("http://127.0.0.1:9/jim2/"), "ambiguous_statuses": [404, 504]})


async def test_a_completion_recorded_late_leaves_a_newer_writes_link_alone(
    make_gateway: Callable[..., Any], simulators: Simulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request's process stalls between Oneserve's answer and recording it, past the delivery's lease (a blocked
    loop, a lock waited on). A newer write of the contact meanwhile supersedes that delivery, is sent and
    recorded. When the stalled completion finally runs, the link keeps the newer write's payload: had it taken the
    older one, a later write equal to that older version would answer UNCHANGED while Oneserve holds the newer."""
    tables = {"outbox": {"lease_grace_s": 0, "poll_interval_s": 60}}
    gateway: Gateway = await make_gateway({"oneserve": {"timeout_s": 0.5}}, tables=tables)
    stalled, release = asyncio.Event(), asyncio.Event()
    complete = FanOut._complete

    async def stalling(self: FanOut, contact_id: str, sent: Any, **kwargs: Any) -> Any:
        if not stalled.is_set():  # the first write's completion only
            stalled.set()
            await release.wait()
        return await complete(self, contact_id, sent, **kwargs)

    monkeypatch.setattr(FanOut, "_complete", stalling)
    first = asyncio.create_task(gateway.graphql(UPSERT, {"input": contact(firstName="Ada"), "vendors": ["ONESERVE"]}))
    try:
        await asyncio.wait_for(stalled.wait(), 10)
        await asyncio.sleep(0.8)  # past the first delivery's lease (timeout_s 0.5 + lease_grace_s 0)
        newer = await gateway.graphql(UPSERT, {"input": contact(firstName="Augusta"), "vendors": ["ONESERVE"]})
        # CREATED if no link was recorded yet, UPDATED if this process's worker took the first delivery over once its
        # lease ran out and recorded it: either way the newer write reached Oneserve.
        assert newer["data"]["upsertContact"]["results"][0]["status"] in {"CREATED", "UPDATED"}, newer
    finally:
        release.set()
    assert (await first)["data"]["upsertContact"]["results"][0]["status"] == "CREATED"

    again = await gateway.graphql(UPSERT, {"input": contact(firstName="Ada"), "vendors": ["ONESERVE"]})
    (result,) = again["data"]["upsertContact"]["results"]
    assert result["status"] == "UPDATED", "Oneserve holds Augusta: Ada must be sent again, not taken as UNCHANGED"
    (record,) = simulators.by_vendor[Vendor.ONESERVE].state.records.values()
    assert record["forename"] == "Ada"


async def test_a_proxys_502_at_jim2s_token_endpoint_leaves_no_create_in_doubt(
    make_gateway: Callable[..., Any], simulators: Simulators
) -> None:
    """A contact without an e-mail: Jim2's create cannot be found again, so a 502 answering it leaves it in doubt.
    A 502 answering the token request before it sent nothing: the write is retried and made once."""
    gateway: Gateway = await make_gateway({"jim2": {"max_attempts": 3}}, tables=FAST_OUTBOX)
    await simulators.faults(Vendor.JIM2, fail_next=1, fail_status=502)  # the first call: the token request
    no_email = contact(details=[{"kind": "PHONE", "value": "02079460000"}])
    payload = (await gateway.graphql(UPSERT, {"input": no_email, "vendors": ["JIM2"]}))["data"]["upsertContact"]
    assert (payload["results"][0]["status"], payload["results"][0]["attempts"]) == ("CREATED", 2), payload
    calls = await simulators.calls(Vendor.JIM2)
    assert [(c["method"], c["path"].split("?")[0].rsplit("/", 1)[-1], c["outcome"]) for c in calls][:3] == [
        ("POST", "token", 502),
        ("POST", "token", 200),
        ("POST", "contacts", 201),
    ]
    assert len(simulators.by_vendor[Vendor.JIM2].state.records) == 1


async def test_an_early_claim_recorded_late_leaves_a_newer_writes_link_alone(
    make_gateway: Callable[..., Any], simulators: Simulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Jim2 records the link to a record it made as soon as it answers (the early claim). When that claim runs late,
    past the delivery's lease, after a newer write adopted the record and recorded its own payload, the late claim
    is the older delivery's outcome and leaves the newer one in place, as the late completion does."""
    tables = {"outbox": {"lease_grace_s": 0, "poll_interval_s": 60}}
    gateway: Gateway = await make_gateway({"jim2": {"timeout_s": 0.5}}, tables=tables)
    stalled, release = asyncio.Event(), asyncio.Event()
    claim = FanOut._claim

    async def stalling(self: FanOut, *args: Any) -> None:
        if not stalled.is_set():  # the first write's claim only
            stalled.set()
            await release.wait()
        await claim(self, *args)

    monkeypatch.setattr(FanOut, "_claim", stalling)
    first = asyncio.create_task(gateway.graphql(UPSERT, {"input": contact(firstName="Ada"), "vendors": ["JIM2"]}))
    try:
        await asyncio.wait_for(stalled.wait(), 10)
        await asyncio.sleep(0.8)  # past the first delivery's lease (timeout_s 0.5 + lease_grace_s 0)
        newer = await gateway.graphql(UPSERT, {"input": contact(firstName="Augusta"), "vendors": ["JIM2"]})
        (result,) = newer["data"]["upsertContact"]["results"]
        # Adopted by e-mail, or updated by the remote id this process's worker recorded when it took the first
        # delivery over (its lease ran out) and found the record: either way Jim2's one record, updated.
        assert result["status"] == "UPDATED", result
    finally:
        release.set()
    assert (await first)["data"]["upsertContact"]["results"][0]["status"] == "CREATED"

    again = await gateway.graphql(UPSERT, {"input": contact(firstName="Ada"), "vendors": ["JIM2"]})
    (result,) = again["data"]["upsertContact"]["results"]
    assert result["status"] == "UPDATED", "Jim2 holds Augusta: Ada must be sent again, not taken as UNCHANGED"
    (record,) = simulators.by_vendor[Vendor.JIM2].state.records.values()
    assert record["attributes"]["firstName"] == "Ada"


@pytest.mark.postgresql
async def test_leases_follow_the_databases_clock_not_the_hosts(
    postgresql_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Host A leases a delivery for 30 s. Host B's clock runs 60 s ahead: on its own clock the lease ran out long
    ago, and it would take over a delivery A is still sending. B's store reads the database's clock and B stamps
    and compares on it: nothing is claimed, and what B stamps is the database's time, also after B's wall clock
    is stepped again before the next reading."""
    monkeypatch.setattr(clock, "_anchor", clock._anchor)  # restored after the test
    monkeypatch.setattr(clock, "_readers", clock._readers)
    store = Store(postgresql_url)
    await store.open()
    try:
        assert abs(clock.offset().total_seconds()) < 1, "this machine's clock and its PostgreSQL's agree"
        a, b = Outbox(store, owner="A", expire_after_s=3600), Outbox(store, owner="B", expire_after_s=3600)
        (leased, sendable) = (await store.write(enqueue(a)))[Vendor.JIM2]
        (control, _) = (await store.write(enqueue(a, contact_id="C-2", vendor=Vendor.EROS)))[Vendor.EROS]
        assert sendable

        monkeypatch.setattr(clock, "local_now", lambda: datetime.now(UTC) + timedelta(seconds=60))
        clock.forget()  # B on its own clock, as before leases followed the database's
        taken = await b.claim(10, {Vendor.EROS: 30.0}, [Vendor.EROS])
        assert [d.id for d in taken] == [control], "on its own clock B takes over what A is still sending"
        measured = await store.sync_clock()
        assert abs(measured.total_seconds() + 60) < 1, measured
        assert abs((clock.utcnow() - datetime.now(UTC)).total_seconds()) < 1, "B's stamps are the database's time"
        assert await b.claim(10, {Vendor.JIM2: 30.0}, [Vendor.JIM2]) == [], "A's lease has not run out"

        # NTP steps B's wall clock another 30 s before the next reading: the stamps do not move.
        monkeypatch.setattr(clock, "local_now", lambda: datetime.now(UTC) + timedelta(seconds=90))
        assert abs((clock.utcnow() - datetime.now(UTC)).total_seconds()) < 1
        assert abs(clock.offset().total_seconds() + 90) < 1
        assert await b.claim(10, {Vendor.JIM2: 30.0}, [Vendor.JIM2]) == []
        row = await b.get(leased)
        assert row is not None and row.lease_owner == "A"
    finally:
        await store.close()
    assert clock._anchor is None, "the last store reading the database's clock forgot it when it closed"
    assert clock.offset() == timedelta(0)


def test_without_a_reading_the_hosts_clock_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite (one machine's file) never reads a database clock: stamps are the host's wall clock."""
    monkeypatch.setattr(clock, "_anchor", None)
    monkeypatch.setattr(clock, "local_now", lambda: datetime(2030, 1, 1, tzinfo=UTC))
    assert clock.utcnow() == datetime(2030, 1, 1, tzinfo=UTC)
    assert clock.offset() == timedelta(0)
