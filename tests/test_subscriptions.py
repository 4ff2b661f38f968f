"""Live delivery status: `deliveryUpdates` over graphql-transport-ws and over SSE, against a real gateway on a socket
with the real vendor simulators and its background outbox worker.

Every wait is bounded (`asyncio.timeout`): a broken stream fails the test rather than hanging it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.typing import Subprotocol

from resolvers.events import DeliveryEvent, DeliveryEvents
from resolvers.results import Vendor, VendorStatus
from tests.conftest import READ_TOKEN, WRITE_ONLY_TOKEN, Gateway, Simulators
from tests.support import UPSERT, by_vendor, contact

#: Redelivery quick enough for tests; one in-request attempt, so a single 503 makes the write QUEUED.
FAST_OUTBOX = {"outbox": {"backoff_base_s": 0.05, "backoff_cap_s": 0.2, "poll_interval_s": 0.1}}
ONE_ATTEMPT = {"jim2": {"max_attempts": 1}}
#: How long any one step may take before the test fails.
STEP_S = 20.0

SUBSCRIBE = """
subscription Updates($id: ID!) {
  deliveryUpdates(contactId: $id) {
    contactId vendor status deliveryId attempts error at nextAttemptAt remoteId snapshot missed
  }
}
"""
OTHERS = ("EROS", "SUPEROFFICE", "VALOMNIA")
PROTOCOLS = [Subprotocol("graphql-transport-ws")]


def ws_url(gateway: Gateway) -> str:
    return gateway.url.replace("http://", "ws://") + "/graphql"


async def open_ws(gateway: Gateway, payload: dict[str, Any] | None, headers: dict[str, str] | None = None) -> Any:
    """A graphql-transport-ws connection, `connection_init` sent with `payload`."""
    ws = await websockets.connect(
        ws_url(gateway),
        subprotocols=PROTOCOLS,
        additional_headers=headers or {},
    )
    init: dict[str, Any] = {"type": "connection_init"}
    if payload is not None:
        init["payload"] = payload
    await ws.send(json.dumps(init))
    return ws


async def recv(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(STEP_S):
        message: dict[str, Any] = json.loads(await ws.recv())
    return message


async def ws_updates(ws: ClientConnection, operation_id: str = "1") -> AsyncIterator[dict[str, Any]]:
    """The `deliveryUpdates` items of one operation (an `error` message or a result with errors fails)."""
    while True:
        message = await recv(ws)
        if message.get("id") != operation_id or message["type"] in ("ping", "pong"):
            continue
        assert message["type"] == "next", message
        assert "errors" not in message["payload"], message
        yield message["payload"]["data"]["deliveryUpdates"]


async def subscribe_ws(gateway: Gateway, contact_id: str, token: str = READ_TOKEN) -> ClientConnection:
    ws = await open_ws(gateway, {"Authorization": f"Bearer {token}"})
    assert (await recv(ws))["type"] == "connection_ack"
    await ws.send(
        json.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIBE, "variables": {"id": contact_id}}})
    )
    conn: ClientConnection = ws
    return conn


async def close_code(ws: ClientConnection) -> int:
    """Read until the server closes the socket; its close code."""
    with pytest.raises(websockets.exceptions.ConnectionClosed) as closed:
        async with asyncio.timeout(STEP_S):
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


async def collect(
    updates: AsyncIterator[dict[str, Any]], done: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """Read updates until `done(all so far)` holds, within STEP_S."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(STEP_S):
        async for update in updates:
            seen.append(update)
            if done(seen):
                return seen
    raise AssertionError(f"the stream ended early: {seen}")


def jim2_created(seen: list[dict[str, Any]]) -> bool:
    finished = {u["vendor"] for u in seen if u["status"] != "QUEUED" and not u["snapshot"]}
    return finished >= {"ONESERVE", "JIM2", *OTHERS}


def statuses(seen: list[dict[str, Any]], vendor: str) -> list[str]:
    return [u["status"] for u in seen if u["vendor"] == vendor]


async def upsert(gateway: Gateway, vendors: list[str] | None = None) -> dict[str, Any]:
    answer = await gateway.graphql(UPSERT, {"input": contact(), "vendors": vendors})
    assert "errors" not in answer, answer
    payload: dict[str, Any] = answer["data"]["upsertContact"]
    return payload


def assert_queued_then_delivered(seen: list[dict[str, Any]], delivery_id: str) -> None:
    """JIM2: QUEUED (in the write, then by each failed redelivery) and CREATED by the worker, under one delivery;
    the vendors that took the write at once: CREATED; ONESERVE (already holding it): UNCHANGED."""
    live = [u for u in seen if not u["snapshot"]]
    jim2 = [u for u in live if u["vendor"] == "JIM2"]
    assert [u["status"] for u in jim2][-1] == "CREATED", jim2
    assert len(jim2) >= 2 and all(u["status"] == "QUEUED" for u in jim2[:-1]), jim2
    assert {u["deliveryId"] for u in jim2} == {delivery_id}
    attempts = [u["attempts"] for u in jim2]
    assert attempts == sorted(attempts) and attempts[0] >= 1 and attempts[-1] > attempts[0], attempts
    assert all(u["nextAttemptAt"] and u["error"] for u in jim2[:-1]), jim2
    assert jim2[-1]["remoteId"] and jim2[-1]["error"] is None
    for vendor in OTHERS:
        assert statuses(live, vendor) == ["CREATED"], (vendor, live)
    assert statuses(live, "ONESERVE") == ["UNCHANGED"], live
    assert all(u["contactId"] == "C-1001" and u["missed"] == 0 for u in seen)
    at = [datetime.fromisoformat(u["at"]) for u in live]
    assert all(t.tzinfo is not None for t in at)


# -- graphql-transport-ws ---------------------------------------------------------------------------------------------


async def test_websocket_streams_queued_then_delivered(
    make_gateway: Callable[..., Any], simulators: Simulators
) -> None:
    """Token in connection_init (as a browser must send it); JIM2 fails transiently so the write is QUEUED, then the
    outbox worker delivers it: the stream shows each step as it happens."""
    gateway: Gateway = await make_gateway(ONE_ATTEMPT, tables=FAST_OUTBOX)
    await upsert(gateway, ["ONESERVE"])  # the contact exists: the snapshot proves the subscription is live
    ws = await subscribe_ws(gateway, "C-1001")
    try:
        updates = ws_updates(ws)
        first = await collect(updates, lambda seen: True)
        assert [(u["vendor"], u["status"], u["snapshot"]) for u in first] == [("ONESERVE", "CREATED", True)]

        await simulators.faults(Vendor.JIM2, fail_next=2, fail_status=503)
        payload = await upsert(gateway)
        jim2 = by_vendor(payload["results"])["JIM2"]
        assert jim2["status"] == "QUEUED"

        seen = await collect(updates, jim2_created)
        assert_queued_then_delivered(seen, jim2["deliveryId"])
        delivered = [u for u in seen if u["vendor"] == "JIM2"][-1]
        assert delivered["remoteId"] in (await simulators.state(Vendor.JIM2))["records"]

        await ws.send(json.dumps({"id": "1", "type": "complete"}))
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv(ws))["type"] == "pong", "the connection stays usable after the subscription ends"
    finally:
        await ws.close()


async def test_queries_over_one_websocket_read_the_contact_as_it_is_now(gateway: Gateway) -> None:
    """A graphql-transport-ws connection keeps one context for all its operations: its contact loader cached the
    first read for the life of the socket, so a later `contact` answered what the contact was."""
    await gateway.graphql(UPSERT, {"input": contact(id="WS-1", firstName="Before")})
    ws = await open_ws(gateway, {"Authorization": f"Bearer {READ_TOKEN}"})
    assert (await recv(ws))["type"] == "connection_ack"
    query = '{ contact(id: "WS-1") { firstName } }'

    async def read(operation_id: str) -> str:
        await ws.send(json.dumps({"id": operation_id, "type": "subscribe", "payload": {"query": query}}))
        while True:
            message = await recv(ws)
            if message.get("id") == operation_id and message["type"] == "next":
                return str(message["payload"]["data"]["contact"]["firstName"])

    try:
        assert await read("1") == "Before"
        await gateway.graphql(UPSERT, {"input": contact(id="WS-1", firstName="After")})
        assert await read("2") == "After"
    finally:
        await ws.close()


async def test_websocket_without_a_valid_token_is_refused(make_gateway: Callable[..., Any]) -> None:
    """No token, a bad token in connection_init, a bad Authorization header: refused. A token without
    `contacts:read` connects but the subscription is FORBIDDEN. A failed connection_init counts towards the
    failed-authentication limit of the address."""
    gateway: Gateway = await make_gateway(tables={"auth": {"max_failures": 3, "failure_window_s": 60}})

    ws = await open_ws(gateway, None)
    assert await close_code(ws) == 4403  # connection_init without a token

    ws = await websockets.connect(ws_url(gateway), subprotocols=PROTOCOLS)
    await ws.send(
        json.dumps({"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIBE, "variables": {"id": "x"}}})
    )
    assert await close_code(ws) == 4401, "subscribe before connection_init"

    ws = await subscribe_ws(gateway, "C-1001", token=WRITE_ONLY_TOKEN)
    try:
        message = await recv(ws)
        errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
        assert errors[0]["extensions"]["code"] == "FORBIDDEN", message
        assert "contacts:read" in errors[0]["message"]
    finally:
        await ws.close()

    ws = await open_ws(gateway, {"Authorization": "Bearer not-a-valid-token-0123456789"})
    assert await close_code(ws) == 4403

    with pytest.raises(websockets.exceptions.InvalidStatus):  # a bad header is refused at the handshake
        await websockets.connect(
            ws_url(gateway),
            subprotocols=PROTOCOLS,
            additional_headers={"Authorization": "Bearer not-a-valid-token-0123456789"},
        )

    # Three failures from this address (two connection_inits, one header): now even a good token is refused.
    with pytest.raises(websockets.exceptions.InvalidStatus):
        await websockets.connect(ws_url(gateway), subprotocols=PROTOCOLS)
    response = await gateway.client.post(
        f"{gateway.url}/graphql", json={"query": "{ __typename }"}, headers={"Authorization": f"Bearer {READ_TOKEN}"}
    )
    assert response.status_code == 429


async def test_websocket_with_header_token_and_lowercase_payload_key(make_gateway: Callable[..., Any]) -> None:
    """The Authorization header still works (non-browser clients), and so does `authorization` in the payload."""
    gateway: Gateway = await make_gateway()
    await upsert(gateway, ["EROS"])
    for headers, payload in (
        ({"Authorization": f"Bearer {READ_TOKEN}"}, None),
        ({}, {"authorization": f"Bearer {READ_TOKEN}"}),
    ):
        ws = await open_ws(gateway, payload, headers)
        try:
            assert (await recv(ws))["type"] == "connection_ack"
            await ws.send(
                json.dumps(
                    {"id": "1", "type": "subscribe", "payload": {"query": SUBSCRIBE, "variables": {"id": "C-1001"}}}
                )
            )
            first = await collect(ws_updates(ws), lambda seen: True)
            assert [(u["vendor"], u["status"]) for u in first] == [("EROS", "CREATED")]
        finally:
            await ws.close()


# -- SSE --------------------------------------------------------------------------------------------------------------


async def sse_updates(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """`next` events of a GraphQL-over-SSE stream (comments, i.e. heartbeats, skipped)."""
    event, data = None, []
    async for line in response.aiter_lines():
        if line.startswith(":"):
            continue
        if line.startswith("event:"):
            event = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data.append(line.removeprefix("data:").strip())
        elif line == "" and event is not None:
            if event == "complete":
                return
            assert event == "next", event
            body = json.loads("\n".join(data))
            assert "errors" not in body, body
            yield body["data"]["deliveryUpdates"]
            event, data = None, []


async def test_sse_streams_queued_then_delivered(make_gateway: Callable[..., Any], simulators: Simulators) -> None:
    """POST the subscription with `Accept: text/event-stream` and a bearer header: the updates WebSocket gets."""
    gateway: Gateway = await make_gateway(ONE_ATTEMPT, tables=FAST_OUTBOX)
    await upsert(gateway, ["ONESERVE"])
    headers = {"Authorization": f"Bearer {READ_TOKEN}", "Accept": "text/event-stream"}
    body = {"query": SUBSCRIBE, "variables": {"id": "C-1001"}}
    async with asyncio.timeout(STEP_S * 2):
        async with gateway.client.stream("POST", f"{gateway.url}/graphql", json=body, headers=headers) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            assert response.headers["cache-control"].startswith("no-cache")
            updates = sse_updates(response)
            first = await collect(updates, lambda seen: True)
            assert [(u["vendor"], u["status"], u["snapshot"]) for u in first] == [("ONESERVE", "CREATED", True)]

            await simulators.faults(Vendor.JIM2, fail_next=2, fail_status=503)
            payload = await upsert(gateway)
            seen = await collect(updates, jim2_created)
    assert_queued_then_delivered(seen, by_vendor(payload["results"])["JIM2"]["deliveryId"])


async def test_sse_negotiation(gateway: Gateway) -> None:
    """text/event-stream answers subscriptions only; queries keep JSON; no bearer is 401; no read scope FORBIDDEN."""
    url = f"{gateway.url}/graphql"
    sse = {"Accept": "text/event-stream"}
    subscription = {"query": SUBSCRIBE, "variables": {"id": "C-1001"}}

    response = await gateway.client.post(url, json=subscription, headers=sse)
    assert response.status_code == 401

    query = {"query": "{ __typename }"}
    response = await gateway.client.post(url, json=query, headers={**sse, "Authorization": f"Bearer {READ_TOKEN}"})
    assert response.status_code == 406
    assert "subscriptions only" in response.json()["errors"][0]["message"]

    both = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {READ_TOKEN}"}
    response = await gateway.client.post(url, json=query, headers=both)
    assert (response.status_code, response.json()) == (200, {"data": {"__typename": "Query"}})

    response = await gateway.client.get(url, params=query, headers={**sse, "Authorization": f"Bearer {READ_TOKEN}"})
    assert response.status_code == 406, "SSE is for POST"

    # A subscription cannot be answered in one JSON document: 406 with where to go, not an internal error.
    for accept in ("application/json", "application/graphql-response+json"):
        headers = {"Accept": accept, "Authorization": f"Bearer {READ_TOKEN}"}
        response = await gateway.client.post(url, json=subscription, headers=headers)
        assert response.status_code == 406
        assert "text/event-stream" in response.json()["errors"][0]["message"]

    forbidden = {**sse, "Authorization": f"Bearer {WRITE_ONLY_TOKEN}"}
    async with asyncio.timeout(STEP_S):
        async with gateway.client.stream("POST", url, json=subscription, headers=forbidden) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            text = (await response.aread()).decode()
    data = [line.removeprefix("data:").strip() for line in text.splitlines() if line.startswith("data:")]
    errors = json.loads(data[0])["errors"]
    assert errors[0]["extensions"]["code"] == "FORBIDDEN"


async def test_the_stream_opens_at_once_and_a_contact_id_no_contact_can_have_is_refused(gateway: Gateway) -> None:
    """The SSE answer starts with a comment, before any event: uvicorn sends the headers with the first chunk, so a
    subscriber to a quiet contact waited 15 s (the first heartbeat) to learn the stream was open. A contactId no
    contact can have (empty, blank-padded, over 50 characters) is refused naming `contactId`, over SSE and
    WebSocket, instead of a stream that never fires."""
    await upsert(gateway, ["ONESERVE"])
    url = f"{gateway.url}/graphql"
    headers = {"Authorization": f"Bearer {READ_TOKEN}", "Accept": "text/event-stream"}
    body = {"query": SUBSCRIBE, "variables": {"id": "C-1001"}}
    async with asyncio.timeout(STEP_S), gateway.client.stream("POST", url, json=body, headers=headers) as response:
        lines = response.aiter_lines()
        assert (await anext(lines)).startswith(":"), "a comment comes first"
        assert await anext(_until_blank(lines)) == "event: next", "then the snapshot"

    for bad in ("", " a", "x" * 51):
        body = {"query": SUBSCRIBE, "variables": {"id": bad}}
        async with asyncio.timeout(STEP_S), gateway.client.stream("POST", url, json=body, headers=headers) as response:
            text = (await response.aread()).decode()
        data = [line.removeprefix("data:").strip() for line in text.splitlines() if line.startswith("data:")]
        errors = json.loads(data[0])["errors"]
        assert errors[0]["extensions"] == {"code": "BAD_USER_INPUT", "argument": "contactId"}, (bad, errors)
        assert errors[0]["message"].startswith("contactId: "), errors

        ws = await subscribe_ws(gateway, bad)
        try:
            message = await recv(ws)
            errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
            assert errors[0]["extensions"] == {"code": "BAD_USER_INPUT", "argument": "contactId"}, (bad, message)
        finally:
            await ws.close()


async def _until_blank(lines: AsyncIterator[str]) -> AsyncIterator[str]:
    """The lines of the next SSE event (skipping the blank lines before it)."""
    async for line in lines:
        if line:
            yield line
            break
    async for line in lines:
        if not line:
            return
        yield line


# -- the current state first ----------------------------------------------------------------------------------------


async def test_a_late_subscriber_first_gets_the_current_state(
    make_gateway: Callable[..., Any], simulators: Simulators
) -> None:
    """Subscribing after the write: first where every vendor stands (JIM2 QUEUED behind a 2 s Retry-After, the
    others CREATED), then JIM2's delivery as the worker makes it."""
    gateway: Gateway = await make_gateway({"jim2": {"timeout_s": 0.5}}, tables=FAST_OUTBOX)
    await simulators.faults(Vendor.JIM2, throttle_next=1, retry_after=2)
    payload = await upsert(gateway)
    results = by_vendor(payload["results"])
    assert results["JIM2"]["status"] == "QUEUED"

    ws = await subscribe_ws(gateway, "C-1001")
    try:
        updates = ws_updates(ws)
        snapshot = await collect(updates, lambda seen: len(seen) == 5)
        assert all(u["snapshot"] for u in snapshot)
        assert [u["vendor"] for u in snapshot] == [v.name for v in Vendor], "one per vendor, in vendor order"
        now = by_vendor(snapshot)
        assert now["JIM2"]["status"] == "QUEUED"
        assert now["JIM2"]["deliveryId"] == results["JIM2"]["deliveryId"]
        assert now["JIM2"]["attempts"] == 1 and "RATE_LIMITED" in now["JIM2"]["error"]
        assert datetime.fromisoformat(now["JIM2"]["nextAttemptAt"]) > datetime.now(UTC)
        for vendor in ("ONESERVE", *OTHERS):
            assert (now[vendor]["status"], now[vendor]["remoteId"]) == ("CREATED", results[vendor]["remoteId"])

        live = await collect(updates, lambda seen: seen[-1]["vendor"] == "JIM2")
        assert [(u["vendor"], u["status"], u["snapshot"]) for u in live] == [("JIM2", "CREATED", False)]
        assert live[0]["deliveryId"] == results["JIM2"]["deliveryId"] and live[0]["attempts"] == 2
    finally:
        await ws.close()


# -- the publisher --------------------------------------------------------------------------------------------------


async def test_a_slow_subscriber_loses_the_oldest_events_and_is_told() -> None:
    """Publishing never waits: a full queue drops its oldest event, and the next one read says how many went."""
    events = DeliveryEvents(queue_size=2)

    def event(attempts: int, contact_id: str = "C-1") -> DeliveryEvent:
        return DeliveryEvent(contact_id, Vendor.EROS, VendorStatus.QUEUED, 7, attempts, None, datetime.now(UTC))

    with events.subscribe("C-1") as feed, events.subscribe("C-2") as other:
        assert events.subscribers == 2
        for attempts in range(1, 6):
            events.publish(event(attempts))
        events.publish(event(9, "C-3"))  # nobody listens: nothing happens
        async with asyncio.timeout(1):
            first, second = await anext(feed), await anext(feed)
        assert (first.attempts, first.missed) == (4, 3)
        assert (second.attempts, second.missed) == (5, 0)
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.05):
                await anext(other)
    assert events.subscribers == 0


def test_a_contact_is_watched_while_someone_subscribes() -> None:
    """A write builds its events only for a watched contact (`FanOut._publish`): watched from the moment a feed opens
    (before its snapshot is read) until the last feed of the contact closes."""
    events = DeliveryEvents()
    assert not events.watched("C-1")
    with events.subscribe("C-1"):
        with events.subscribe("C-1"):
            assert events.watched("C-1") and not events.watched("C-2")
        assert events.watched("C-1")
    assert not events.watched("C-1")
