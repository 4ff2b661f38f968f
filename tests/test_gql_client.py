"""A service calling the gateway server-to-server with the Python `gql` client (aiohttp transport) over a real socket.

What a backend integration does: batches of keyed upserts in one document, whole-batch retries with the same keys,
`upsertContacts`, riding out a vendor outage through the outbox, CONFLICT handling, and local validation against the
schema gql fetches from the gateway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest
from gql import Client, GraphQLRequest, gql
from gql.client import AsyncClientSession
from gql.dsl import DSLField, DSLMutation, DSLSchema, DSLVariableDefinitions, dsl_gql
from gql.transport.aiohttp import AIOHTTPTransport
from gql.transport.exceptions import TransportQueryError
from graphql import GraphQLError

from resolvers.results import Vendor
from tests.conftest import ADMIN_TOKEN, WRITE_TOKEN, Gateway, Simulators
from tests.support import contact, eventually

#: Redelivery quick enough for tests (as in test_outbox); every other setting is the product's default.
FAST_OUTBOX = {"outbox": {"backoff_base_s": 0.05, "backoff_cap_s": 0.2, "poll_interval_s": 0.05}}

VENDOR_NAMES = sorted(v.name for v in Vendor)

PAYLOAD = """
  status
  contact { id lastName }
  results { vendor status remoteId attempts durationMs deliveryId errors { code message } }
"""

UPSERT_CONTACTS = f"""
mutation ServiceBulk($inputs: [ContactInput!]!) {{
  upsertContacts(inputs: $inputs) {{ {PAYLOAD} }}
}}
"""

KEYED_ONE = f"""
mutation ServiceUpsert($input: ContactInput!, $key: String!) {{
  upsertContact(input: $input, idempotencyKey: $key) {{ {PAYLOAD} }}
}}
"""

PENDING_DELIVERIES = gql(
    """
    query Pending($vendor: Vendor) {
      deliveries(status: PENDING, vendor: $vendor, first: 100) { totalCount }
    }
    """
)

DELIVERIES_OF = gql(
    """
    query Deliveries($vendor: Vendor!) {
      deliveries(vendor: $vendor, first: 100) { totalCount edges { node { id contactId status lastStatus } } }
    }
    """
)


# -- the service side -----------------------------------------------------------------------------------------------


@asynccontextmanager
async def service(
    gateway: Gateway,
    token: str = WRITE_TOKEN,
    *,
    fetch_schema: bool = True,
    trace: aiohttp.TraceConfig | None = None,
) -> AsyncIterator[AsyncClientSession]:
    """A gql client session as a service would open it: bearer token, aiohttp transport, the schema fetched."""
    transport = AIOHTTPTransport(
        url=f"{gateway.url}/graphql",
        headers={"Authorization": f"Bearer {token}"},
        client_session_args={"trace_configs": [trace]} if trace else None,
    )
    client = Client(transport=transport, fetch_schema_from_transport=fetch_schema, execute_timeout=60)
    async with client as session:
        yield session


def person(i: int, **changes: Any) -> dict[str, Any]:
    """A distinct contact (own id and e-mail, so no vendor can match one to another)."""
    fields: dict[str, Any] = {
        "id": f"SVC-{i:03d}",
        "firstName": f"Person{i}",
        "lastName": f"Batch{i}",
        "details": [
            {"kind": "EMAIL", "value": f"person{i}@example.com", "preferred": True},
            {"kind": "MOBILE", "value": "07700900123"},
        ],
    }
    fields.update(changes)
    return contact(**fields)


def payload_selection(ds: DSLSchema) -> list[DSLField]:
    """The payload fields a service reads, built with gql's DSL (fresh nodes for every use)."""
    result = ds.VendorResult
    return [
        ds.UpsertContactPayload.status,
        ds.UpsertContactPayload.contact.select(ds.Contact.id, ds.Contact.lastName),
        ds.UpsertContactPayload.results.select(
            result.vendor,
            result.status,
            result.remoteId,
            result.attempts,
            result.durationMs,
            result.deliveryId,
            result.errors.select(ds.FieldError.code, ds.FieldError.message),
        ),
    ]


def keyed_batch_dsl(session: AsyncClientSession, contacts: list[dict[str, Any]], keys: list[str]) -> GraphQLRequest:
    """ONE mutation document with an aliased `upsertContact` per contact, each with its own key, via gql's DSL."""
    assert session.client.schema is not None
    ds = DSLSchema(session.client.schema)
    var = DSLVariableDefinitions()
    fields = [
        ds.Mutation.upsertContact.args(input=getattr(var, f"input{i}"), idempotencyKey=getattr(var, f"key{i}")).alias(
            f"c{i}"
        )
        for i in range(len(contacts))
    ]
    for field in fields:
        field.select(*payload_selection(ds))
    operation = DSLMutation(*fields)
    operation.variable_definitions = var
    request = dsl_gql(ServiceBatch=operation)
    request.variable_values = {f"input{i}": c for i, c in enumerate(contacts)}
    request.variable_values.update({f"key{i}": k for i, k in enumerate(keys)})
    return request


def keyed_batch_text(contacts: list[dict[str, Any]], keys: list[str]) -> GraphQLRequest:
    """The same batch as a generated document string with variables (what a service without the DSL sends)."""
    params = ", ".join(f"$input{i}: ContactInput!, $key{i}: String!" for i in range(len(contacts)))
    fields = "\n".join(
        f"  c{i}: upsertContact(input: $input{i}, idempotencyKey: $key{i}) {{ {PAYLOAD} }}"
        for i in range(len(contacts))
    )
    variables: dict[str, Any] = {f"input{i}": c for i, c in enumerate(contacts)}
    variables.update({f"key{i}": k for i, k in enumerate(keys)})
    return GraphQLRequest(f"mutation ServiceBatch({params}) {{\n{fields}\n}}", variable_values=variables)


def request(document: str, **variables: Any) -> GraphQLRequest:
    return GraphQLRequest(document, variable_values=variables)


async def call_counts(simulators: Simulators) -> dict[Vendor, int]:
    return {v: len(await simulators.calls(v)) for v in simulators.by_vendor}


def assert_written_everywhere(payload: dict[str, Any], contact_id: str) -> None:
    assert payload["status"] == "SUCCEEDED", payload
    assert payload["contact"]["id"] == contact_id
    results = {r["vendor"]: r for r in payload["results"]}
    assert sorted(results) == VENDOR_NAMES
    for vendor, result in results.items():
        assert (result["status"], result["errors"]) == ("CREATED", []), (vendor, result)
        assert result["remoteId"], (vendor, result)
    assert results["ONESERVE"]["remoteId"] == f"29/{contact_id}", "each answer belongs to its own contact"


# -- the tests ------------------------------------------------------------------------------------------------------


async def test_keyed_batch_in_one_document_then_whole_batch_retry_is_replayed(
    gateway: Gateway, simulators: Simulators
) -> None:
    contacts = [person(i) for i in range(25)]
    keys = [f"import-2024-06-01/{c['id']}" for c in contacts]
    async with service(gateway) as session:
        first = await session.execute(keyed_batch_dsl(session, contacts, keys))
        assert list(first) == [f"c{i}" for i in range(25)]
        for i, c in enumerate(contacts):
            assert_written_everywhere(first[f"c{i}"], c["id"])
        remote_ids = {(a, r["vendor"]): r["remoteId"] for a, p in first.items() for r in p["results"]}
        assert len(set(remote_ids.values())) == 25 * len(VENDOR_NAMES), "25 distinct records at every vendor"
        before = await call_counts(simulators)

        # The service lost the answer (timeout, crash) and sends the whole batch again: same keys, same inputs.
        retried = await session.execute(keyed_batch_dsl(session, contacts, keys))
        assert retried == first, "the first answers, unchanged (CREATED again, not UNCHANGED: nothing re-ran)"
        assert await call_counts(simulators) == before, "a replay calls no vendor"

        # The same batch sent as a generated text document is the same request to the gateway: replayed too.
        assert await session.execute(keyed_batch_text(contacts, keys)) == first
        assert await call_counts(simulators) == before

    for vendor in simulators.by_vendor:
        assert len((await simulators.state(vendor))["records"]) == 25, vendor


async def test_idempotency_key_header_keys_each_aliased_field(gateway: Gateway, simulators: Simulators) -> None:
    """One `Idempotency-Key` header for a document: each aliased field is keyed by the header plus its alias."""
    contacts = [person(i) for i in range(3)]
    fields = "\n".join(f"c{i}: upsertContact(input: $input{i}) {{ {PAYLOAD} }}" for i in range(3))
    params = ", ".join(f"$input{i}: ContactInput!" for i in range(3))
    batch = GraphQLRequest(
        f"mutation HeaderBatch({params}) {{ {fields} }}",
        variable_values={f"input{i}": c for i, c in enumerate(contacts)},
    )
    header = {"headers": {"Idempotency-Key": "nightly-sync-42"}}
    async with service(gateway) as session:
        first = await session.execute(batch, extra_args=header)
        for i, c in enumerate(contacts):
            assert_written_everywhere(first[f"c{i}"], c["id"])
        before = await call_counts(simulators)
        assert await session.execute(batch, extra_args=header) == first
        assert await call_counts(simulators) == before
        # Without the header the same document is a new write: change detection answers UNCHANGED, not a replay.
        fresh = await session.execute(batch)
        assert {r["status"] for p in fresh.values() for r in p["results"]} == {"UNCHANGED"}


async def test_upsert_contacts_answers_in_input_order(gateway: Gateway, simulators: Simulators) -> None:
    # Ids deliberately not in sorted order, and vendors answering with random latency so completions interleave.
    order = [17, 3, 11, 0, 9, 14, 5, 1, 19, 7, 12, 2, 16, 8, 4, 18, 10, 6, 15, 13]
    contacts = [person(i) for i in order]
    for vendor in (Vendor.EROS, Vendor.JIM2):
        await simulators.faults(vendor, jitter_ms=60)
    async with service(gateway) as session:
        answers = (await session.execute(request(UPSERT_CONTACTS, inputs=contacts)))["upsertContacts"]
        assert [a["contact"]["id"] for a in answers] == [c["id"] for c in contacts]
        for answer, c in zip(answers, contacts, strict=True):
            assert_written_everywhere(answer, c["id"])
            assert answer["contact"]["lastName"] == c["lastName"]
        before = await call_counts(simulators)

        # Retrying the whole batch without keys: change detection, so every vendor is UNCHANGED and none is called.
        again = (await session.execute(request(UPSERT_CONTACTS, inputs=contacts)))["upsertContacts"]
        assert [a["contact"]["id"] for a in again] == [c["id"] for c in contacts]
        for answer, earlier in zip(again, answers, strict=True):
            assert {r["status"] for r in answer["results"]} == {"UNCHANGED"}
            assert {r["vendor"]: r["remoteId"] for r in answer["results"]} == {
                r["vendor"]: r["remoteId"] for r in earlier["results"]
            }
        assert await call_counts(simulators) == before

        # A changed contact in the middle is updated; the answers still line up with the inputs.
        contacts[7] = person(order[7], lastName="Renamed")
        third = (await session.execute(request(UPSERT_CONTACTS, inputs=contacts)))["upsertContacts"]
        statuses = [{r["status"] for r in a["results"]} for a in third]
        assert statuses[7] == {"UPDATED"}
        assert third[7]["contact"]["lastName"] == "Renamed"
        assert all(s == {"UNCHANGED"} for i, s in enumerate(statuses) if i != 7)
    for vendor in simulators.by_vendor:
        assert len((await simulators.state(vendor))["records"]) == len(contacts), vendor


async def test_retry_during_outage_is_replayed_and_queued_writes_drain_once(
    make_gateway: Callable[..., Any], simulators: Simulators
) -> None:
    gateway: Gateway = await make_gateway({"jim2": {"max_attempts": 1, "breaker_threshold": 0}}, tables=FAST_OUTBOX)
    await simulators.faults(Vendor.JIM2, fail_next=100_000, fail_status=503)
    contacts = [person(i) for i in range(10)]
    keys = [f"crm-export-7/{c['id']}" for c in contacts]
    async with service(gateway) as writer, service(gateway, ADMIN_TOKEN) as operator:

        async def pending(vendor: str | None = None) -> int:
            answer = await operator.execute(GraphQLRequest(PENDING_DELIVERIES, variable_values={"vendor": vendor}))
            return int(answer["deliveries"]["totalCount"])

        first = await writer.execute(keyed_batch_text(contacts, keys))
        delivery_ids = []
        for i, c in enumerate(contacts):
            payload = first[f"c{i}"]
            results = {r["vendor"]: r for r in payload["results"]}
            assert (payload["status"], payload["contact"]["id"]) == ("PARTIAL", c["id"])
            jim2 = results.pop("JIM2")
            assert jim2["status"] == "QUEUED" and jim2["deliveryId"], jim2
            assert jim2["errors"], "the reason is in errors"
            assert {r["status"] for r in results.values()} == {"CREATED"}
            delivery_ids.append(jim2["deliveryId"])
        assert len(set(delivery_ids)) == len(contacts)
        assert await pending("JIM2") == len(contacts)
        others = {v: n for v, n in (await call_counts(simulators)).items() if v is not Vendor.JIM2}

        # The service saw PARTIAL and retries the batch with the same keys while Jim2 is still down.
        retried = await writer.execute(keyed_batch_text(contacts, keys))
        assert retried == first, "the same answers, the same deliveryIds: not a second write"
        assert {v: n for v, n in (await call_counts(simulators)).items() if v is not Vendor.JIM2} == others
        jim2_deliveries = (await operator.execute(GraphQLRequest(DELIVERIES_OF, variable_values={"vendor": "JIM2"})))[
            "deliveries"
        ]
        assert jim2_deliveries["totalCount"] == len(contacts), "no new delivery was queued (none superseded)"

        await simulators.faults(Vendor.JIM2, fail_next=0)  # Jim2 recovers

        async def drained() -> bool:
            return await pending() == 0

        await eventually(drained, "the queued Jim2 writes are delivered")
        rows = (await operator.execute(GraphQLRequest(DELIVERIES_OF, variable_values={"vendor": "JIM2"})))["deliveries"]
        by_id = {e["node"]["id"]: e["node"] for e in rows["edges"]}
        assert sorted(by_id) == sorted(delivery_ids)
        assert {(n["status"], n["lastStatus"]) for n in by_id.values()} == {("DELIVERED", "CREATED")}
        assert sorted(n["contactId"] for n in by_id.values()) == sorted(c["id"] for c in contacts)

        # A late retry after recovery still replays the first answer (it is the answer to that request).
        assert await writer.execute(keyed_batch_text(contacts, keys)) == first

    state = await simulators.state(Vendor.JIM2)
    emails = sorted(
        d["value"] for r in state["records"].values() for d in r["attributes"]["details"] if "@" in d["value"]
    )
    assert emails == sorted(f"person{i}@example.com" for i in range(10)), "each contact exactly once at Jim2"
    assert state["counters"].get("creates") == len(contacts)


async def test_conflict_is_a_transport_query_error(gateway: Gateway, simulators: Simulators) -> None:
    async with service(gateway) as session:
        await session.execute(request(KEYED_ONE, input=person(1), key="order-991"))
        before = await call_counts(simulators)
        with pytest.raises(TransportQueryError) as raised:
            await session.execute(request(KEYED_ONE, input=person(1, lastName="Other"), key="order-991"))
        error = raised.value
        assert error.errors is not None
        (only,) = error.errors
        assert only["extensions"]["code"] == "CONFLICT"
        assert only["extensions"]["argument"] == "idempotencyKey"
        assert only["path"] == ["upsertContact"]
        assert error.data is None
        assert await call_counts(simulators) == before, "a conflicting request calls no vendor"

        # In a keyed batch a conflict names the alias at fault; the fields before it ran and stay replayable.
        contacts = [person(10), person(1, lastName="Other"), person(12)]
        keys = ["batch-b/10", "order-991", "batch-b/12"]
        with pytest.raises(TransportQueryError) as in_batch:
            await session.execute(keyed_batch_text(contacts, keys))
        assert in_batch.value.errors is not None
        codes = [(e["path"], e["extensions"]["code"]) for e in in_batch.value.errors]
        assert codes == [(["c1"], "CONFLICT")]
        assert in_batch.value.data is None, "a non-null field failed: the document has no data at all"
        lookup = """{ a: contact(id: "SVC-001") { lastName }
                      b: contact(id: "SVC-010") { id } c: contact(id: "SVC-012") { id } }"""
        stored = await session.execute(gql(lookup))
        assert stored["a"]["lastName"] == "Batch1", "the conflicting input was not written"
        assert stored["b"] == {"id": "SVC-010"}, "the field before the conflict ran"
        assert stored["c"] is None, "mutation fields run in order: the one after the conflict did not run"
        # Re-sending the batch with a fresh key for the bad entry: c0 is replayed, c1 and c2 are written now.
        before = await call_counts(simulators)
        fixed = await session.execute(keyed_batch_text(contacts, ["batch-b/10", "order-992", "batch-b/12"]))
        assert {r["status"] for r in fixed["c0"]["results"]} == {"CREATED"}, "replayed, not re-run"
        assert {r["status"] for r in fixed["c1"]["results"]} == {"UPDATED"}
        assert_written_everywhere(fixed["c2"], "SVC-012")
        after = await call_counts(simulators)
        assert all(after[v] > before[v] for v in simulators.by_vendor)


async def test_schema_is_fetched_and_documents_validate_locally(gateway: Gateway) -> None:
    sent = SimpleNamespace(count=0)

    async def on_request_start(*_: Any) -> None:
        sent.count += 1

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    async with service(gateway, trace=trace) as session:
        schema = session.client.schema
        assert schema is not None, "fetch_schema_from_transport=True fetched it"
        assert sent.count == 1, "one introspection request"
        upsert = schema.mutation_type.fields["upsertContact"] if schema.mutation_type else None
        assert upsert is not None and set(upsert.args) == {"input", "vendors", "force", "idempotencyKey"}
        assert sorted(schema.get_type("Vendor").values) == VENDOR_NAMES  # type: ignore[union-attr]
        assert "deliveryId" in schema.get_type("VendorResult").fields  # type: ignore[union-attr]

        # The DSL batch is built from that schema and validates; a wrong document fails before anything is sent.
        keyed_batch_dsl(session, [person(1)], ["k-1"])
        bad = {
            "unknown field": 'mutation { upsertContact(input: {id: "X"}) { status results { vendorId } } }',
            "key of the wrong type": 'mutation { upsertContact(input: {id: "X"}, idempotencyKey: 5) { status } }',
            "unknown vendor": 'mutation { upsertContact(input: {id: "X"}, vendors: [SALESFORCE]) { status } }',
            "missing input": "mutation { upsertContacts { status } }",
        }
        for what, document in bad.items():
            with pytest.raises(GraphQLError):
                await session.execute(gql(document))
            assert sent.count == 1, f"{what}: rejected locally, not sent"
        fine = await session.execute(gql("{ vendors { vendor } }"))
        assert sorted(v["vendor"] for v in fine["vendors"]) == VENDOR_NAMES
        assert sent.count == 2
