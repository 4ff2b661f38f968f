"""End to end through the HTTP app: GraphQL over a real socket, vendors simulated over real sockets."""

from __future__ import annotations

import base64
import contextlib
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest.mock import patch

import httpx
import pytest
import sqlalchemy as sa

from resolvers.results import Vendor
from resolvers.store import Store
from resolvers.vendors import REGISTRY
from tests.conftest import ADMIN_TOKEN, READ_TOKEN, WRITE_ONLY_TOKEN, WRITE_TOKEN, Gateway, Simulators
from tests.support import DELETE, UPSERT, VALIDATE, by_vendor, contact

ALL = [v.name for v in REGISTRY]


async def test_full_contact_to_every_vendor(gateway: Gateway, simulators: Simulators) -> None:
    answer = await gateway.graphql(UPSERT, {"input": contact()})
    payload = answer["data"]["upsertContact"]
    assert payload["status"] == "SUCCEEDED"
    results = by_vendor(payload["results"])
    assert list(results) == ALL
    for result in results.values():
        assert result["status"] == "CREATED"
        assert result["remoteId"]
        assert result["errors"] == []
    links = {link["vendor"]: link for link in payload["contact"]["vendorLinks"]}
    assert {v: links[v]["remoteId"] for v in links} == {v: results[v]["remoteId"] for v in results}
    assert payload["contact"]["firstName"] == "Ada"
    for vendor in REGISTRY:
        assert len((await simulators.state(vendor))["records"]) == 1


async def test_eros_warns_about_what_it_cannot_hold(gateway: Gateway) -> None:
    payload = (await gateway.graphql(UPSERT, {"input": contact()}))["data"]["upsertContact"]
    eros = by_vendor(payload["results"])["EROS"]
    assert "locations: not supported by EROS, not sent" in eros["warnings"], eros["warnings"]


async def test_one_vendor_down_is_partial(gateway: Gateway, simulators: Simulators) -> None:
    await simulators.faults(Vendor.EROS, fail_next=50, fail_status=503)
    payload = (await gateway.graphql(UPSERT, {"input": contact()}))["data"]["upsertContact"]
    assert payload["status"] == "PARTIAL"
    results = by_vendor(payload["results"])
    assert {name: r["status"] for name, r in results.items() if name != "EROS"} == dict.fromkeys(
        set(ALL) - {"EROS"}, "CREATED"
    )
    assert results["EROS"]["status"] == "QUEUED"
    links = {link["vendor"]: link for link in payload["contact"]["vendorLinks"]}
    assert links["EROS"]["status"] == "QUEUED"
    assert links["EROS"]["lastError"] == "VENDOR_ERROR"
    assert links["ONESERVE"]["status"] == "CREATED"


async def test_a_vendor_a_later_write_was_invalid_for_shows_it_in_its_link(
    gateway: Gateway, simulators: Simulators
) -> None:
    """After a write that broke one vendor's rules, the stored contact is newer than what that vendor holds: its link
    says INVALID with the codes (keeping the remote id), not the old CREATED. Writing again the version it holds is
    UNCHANGED (not sent) and the link says so; a new version it takes is sent and the link is a success again."""
    first = (await gateway.graphql(UPSERT, {"input": contact()}))["data"]["upsertContact"]
    oneserve_id = by_vendor(first["results"])["ONESERVE"]["remoteId"]
    data = contact()
    data["details"][1]["value"] = "0" * 60  # contact2 holds 50 at Oneserve
    payload = (await gateway.graphql(UPSERT, {"input": data}))["data"]["upsertContact"]
    links = {link["vendor"]: link for link in payload["contact"]["vendorLinks"]}
    assert (links["ONESERVE"]["status"], links["ONESERVE"]["lastError"], links["ONESERVE"]["remoteId"]) == (
        "INVALID",
        "TOO_LONG",
        oneserve_id,
    )
    assert (links["EROS"]["status"], links["EROS"]["lastError"]) == ("UPDATED", None)

    # A contact never written to a vendor gets no link from an INVALID answer.
    fresh = contact(id="C-2")
    fresh["details"][1]["value"] = "0" * 60
    other = (await gateway.graphql(UPSERT, {"input": fresh}))["data"]["upsertContact"]
    assert "ONESERVE" not in {link["vendor"] for link in other["contact"]["vendorLinks"]}

    calls = len(await simulators.calls(Vendor.ONESERVE))
    again = (await gateway.graphql(UPSERT, {"input": contact()}))["data"]["upsertContact"]
    assert by_vendor(again["results"])["ONESERVE"]["status"] == "UNCHANGED"
    assert len(await simulators.calls(Vendor.ONESERVE)) == calls
    links = {link["vendor"]: link for link in again["contact"]["vendorLinks"]}
    assert (links["ONESERVE"]["status"], links["ONESERVE"]["lastError"]) == ("UNCHANGED", None)

    changed = (await gateway.graphql(UPSERT, {"input": contact(firstName="Augusta")}))["data"]["upsertContact"]
    assert by_vendor(changed["results"])["ONESERVE"]["status"] == "UPDATED"
    links = {link["vendor"]: link for link in changed["contact"]["vendorLinks"]}
    assert (links["ONESERVE"]["status"], links["ONESERVE"]["lastError"]) == ("UPDATED", None)


async def test_two_vendors_fail_differently_while_three_succeed(gateway: Gateway, simulators: Simulators) -> None:
    await simulators.faults(Vendor.JIM2, fail_next=50, fail_status=502)
    data = contact(vendorOptions={"valomnia": REGISTRY[Vendor.VALOMNIA].rejecting_options})
    payload = (await gateway.graphql(UPSERT, {"input": data}))["data"]["upsertContact"]
    assert payload["status"] == "PARTIAL"
    results = by_vendor(payload["results"])
    jim2, valomnia = results["JIM2"], results["VALOMNIA"]
    assert (jim2["status"], jim2["httpStatus"], [e["code"] for e in jim2["errors"]]) == (
        "QUEUED",
        502,
        ["VENDOR_ERROR"],
    )
    assert valomnia["status"] == "REJECTED"
    assert valomnia["httpStatus"] == 404
    assert [(e["field"], e["code"], e["vendorCode"]) for e in valomnia["errors"]] == [
        ("vendorOptions.valomnia.customerId", "NOT_FOUND", "not_found")
    ]
    for name in ("ONESERVE", "EROS", "SUPEROFFICE"):
        assert (results[name]["status"], results[name]["errors"]) == ("CREATED", []), name


async def test_oneserve_limit_is_invalid_for_oneserve_only(gateway: Gateway, simulators: Simulators) -> None:
    data = contact()
    data["details"][1]["value"] = "0" * 60  # contact2 holds 50 at Oneserve; Eros has no such limit
    payload = (await gateway.graphql(UPSERT, {"input": data}))["data"]["upsertContact"]
    results = by_vendor(payload["results"])
    assert payload["status"] == "PARTIAL"
    assert {name: r["status"] for name, r in results.items() if name != "ONESERVE"} == dict.fromkeys(
        set(ALL) - {"ONESERVE"}, "CREATED"
    )
    oneserve = results["ONESERVE"]
    assert oneserve["status"] == "INVALID"
    assert oneserve["attempts"] == 0
    assert {(e["field"], e["vendorField"], e["code"]) for e in oneserve["errors"]} == {
        ("details[1].value", "contact2", "TOO_LONG")
    }
    assert await simulators.calls(Vendor.ONESERVE) == [], "an invalid payload must never be sent"


async def test_every_violated_rule_is_reported(gateway: Gateway) -> None:
    data = contact(firstName=None, details=[{"kind": "PHONE", "value": str(i)} for i in range(5)])
    data["address"]["lines"] = ["only one line"]
    result = (await gateway.graphql(VALIDATE, {"input": data, "vendors": ["ONESERVE"]}))["data"]["validateContact"]
    codes = {(e["field"], e["code"]) for e in result[0]["errors"]}
    assert ("firstName", "REQUIRED") in codes
    assert ("details", "TOO_MANY") in codes
    assert ("address.lines[1]", "REQUIRED") in codes


async def test_universal_rules_make_every_vendor_invalid(gateway: Gateway, simulators: Simulators) -> None:
    data = contact(id="x" * 51)
    data["address"]["country"] = "UK"
    data["details"][0]["value"] = "not-an-email"
    payload = (await gateway.graphql(UPSERT, {"input": data}))["data"]["upsertContact"]
    assert payload["status"] == "FAILED"
    assert payload["contact"] is None
    for result in payload["results"]:
        assert result["status"] == "INVALID"
        fields = {(e["field"], e["code"]) for e in result["errors"]}
        assert fields == {
            ("id", "TOO_LONG"),
            ("address.country", "INVALID_FORMAT"),
            ("details[0].value", "INVALID_FORMAT"),
        }
    for vendor in REGISTRY:
        assert await simulators.calls(vendor) == []


async def test_validate_contact_calls_no_vendor(gateway: Gateway, simulators: Simulators) -> None:
    result = (await gateway.graphql(VALIDATE, {"input": contact()}, token=READ_TOKEN))["data"]["validateContact"]
    assert {r["vendor"]: r["status"] for r in result} == dict.fromkeys(ALL, "VALID")
    for vendor in REGISTRY:
        assert await simulators.calls(vendor) == []
    contacts = await gateway.graphql("{ contacts { totalCount } }", token=READ_TOKEN)
    assert contacts["data"]["contacts"]["totalCount"] == 0


async def test_only_named_vendors_are_called(gateway: Gateway, simulators: Simulators) -> None:
    payload = (await gateway.graphql(UPSERT, {"input": contact(), "vendors": ["EROS"]}))["data"]["upsertContact"]
    assert [r["vendor"] for r in payload["results"]] == ["EROS"]
    assert await simulators.calls(Vendor.ONESERVE) == []


async def test_empty_vendor_list_is_a_clear_error(gateway: Gateway) -> None:
    answer = await gateway.graphql(UPSERT, {"input": contact(), "vendors": []})
    assert answer["data"] is None
    assert answer["errors"][0]["message"].startswith("vendors:")
    assert answer["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_read_back_and_paging(gateway: Gateway) -> None:
    for i in range(5):
        await gateway.graphql(UPSERT, {"input": contact(id=f"P-{i}")})
    one = await gateway.graphql(
        'query { contact(id: "P-3") { id lastName details { kind value preferred } '
        "address { lines country } locations { ref startDate } vendorLinks { vendor remoteId } } }",
        token=READ_TOKEN,
    )
    node = one["data"]["contact"]
    assert node["id"] == "P-3"
    assert node["details"][0] == {"kind": "EMAIL", "value": "ada@example.com", "preferred": True}
    assert node["locations"] == [{"ref": "LOC-1", "startDate": "2024-01-01"}]
    assert [link["vendor"] for link in node["vendorLinks"]] == ALL
    assert (await gateway.graphql('{ contact(id: "nope") { id } }', token=READ_TOKEN))["data"]["contact"] is None

    seen: list[str] = []
    after = None
    while True:
        page = await gateway.graphql(
            "query($after: String) { contacts(first: 2, after: $after) { totalCount "
            "edges { cursor node { id } } pageInfo { hasNextPage endCursor } } }",
            {"after": after},
            token=READ_TOKEN,
        )
        conn = page["data"]["contacts"]
        assert conn["totalCount"] == 5
        seen += [e["node"]["id"] for e in conn["edges"]]
        if not conn["pageInfo"]["hasNextPage"]:
            break
        after = conn["pageInfo"]["endCursor"]
    assert seen == [f"P-{i}" for i in range(5)]

    bad = await gateway.graphql('{ contacts(after: "bogus") { totalCount } }', token=READ_TOKEN)
    assert bad["errors"][0]["message"].startswith("after:")
    too_many = await gateway.graphql("{ contacts(first: 1000) { totalCount } }", token=READ_TOKEN)
    assert too_many["errors"][0]["message"].startswith("first:")


@pytest.mark.parametrize("bad", ["", " C-1", "C" * 51])
async def test_contact_by_an_id_no_contact_can_have_is_bad_user_input(gateway: Gateway, bad: str) -> None:
    """Not a silent null (a typo such as a leading space would read as "no such contact"): refused as deleteContact
    refuses it, naming the argument."""
    answer = await gateway.graphql("query($id: ID!) { contact(id: $id) { id } }", {"id": bad}, token=READ_TOKEN)
    (error,) = answer["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": "id"}, answer
    assert error["message"].startswith("id: ")
    missing = await gateway.graphql('{ contact(id: "C-404") { id } }', token=READ_TOKEN)
    assert missing == {"data": {"contact": None}}


async def test_batch_upsert_answers_in_input_order(gateway: Gateway) -> None:
    query = "mutation($inputs: [ContactInput!]!) { upsertContacts(inputs: $inputs) { status contact { id } } }"
    inputs = [contact(id=f"B-{i}") for i in range(10)] + [contact(id="")]
    answer = (await gateway.graphql(query, {"inputs": inputs}))["data"]["upsertContacts"]
    assert [p["contact"]["id"] if p["contact"] else None for p in answer] == [f"B-{i}" for i in range(10)] + [None]
    assert [p["status"] for p in answer] == ["SUCCEEDED"] * 10 + ["FAILED"]


async def test_the_same_contact_twice_in_a_batch_is_written_in_order(gateway: Gateway, simulators: Simulators) -> None:
    """The later input is an ordinary update after the earlier one, which it waits for: both answers are clean
    (CREATED, then UPDATED), never the later one queued behind the earlier one in flight (answered FAILED while it
    lands moments later); the later input wins. The vendors are slow so the two would otherwise overlap."""
    for vendor in Vendor:
        await simulators.faults(vendor, latency_ms=150)
    query = (
        "mutation($inputs: [ContactInput!]!) "
        "{ upsertContacts(inputs: $inputs) { status contact { firstName } results { vendor status } } }"
    )
    inputs = [contact(id="B-dup", firstName="First"), contact(id="B-other"), contact(id="B-dup", firstName="Second")]
    items = (await gateway.graphql(query, {"inputs": inputs}))["data"]["upsertContacts"]
    assert [p["status"] for p in items] == ["SUCCEEDED"] * 3
    assert {r["status"] for r in items[0]["results"]} == {"CREATED"}
    assert {r["status"] for r in items[2]["results"]} == {"UPDATED"}
    assert (items[0]["contact"]["firstName"], items[2]["contact"]["firstName"]) == ("First", "Second")
    stored = await gateway.graphql('{ contact(id: "B-dup") { firstName } }', token=READ_TOKEN)
    assert stored["data"]["contact"]["firstName"] == "Second"


async def test_a_write_breaking_a_universal_rule_answers_with_the_contact_as_stored(gateway: Gateway) -> None:
    """`contact` is the contact as stored after the write. A write that breaks a rule every vendor shares stores
    nothing, but the contact stored by an earlier write is still there: it was answered null."""
    query = "mutation($input: ContactInput!) { upsertContact(input: $input) { status contact { lastName } } }"
    stored = (await gateway.graphql(query, {"input": contact(id="L-2")}, token=ADMIN_TOKEN))["data"]["upsertContact"]
    assert stored["contact"] == {"lastName": "Lovelace"}
    future = contact(id="L-2", lastName="Later", birthDate="2999-01-01")
    refused = (await gateway.graphql(query, {"input": future}, token=ADMIN_TOKEN))["data"]["upsertContact"]
    assert refused == {"status": "FAILED", "contact": {"lastName": "Lovelace"}}, refused
    unknown = (await gateway.graphql(query, {"input": {**future, "id": "L-3"}}, token=ADMIN_TOKEN))["data"]
    assert unknown["upsertContact"] == {"status": "FAILED", "contact": None}


async def test_an_input_of_a_batch_that_fails_unexpectedly_fails_alone(
    gateway: Gateway, simulators: Simulators
) -> None:
    """A store error on one input (injected: the database cannot be made to fail for one row) answers FAILED at that
    input's index, every vendor UNAVAILABLE saying so (the contract's list holds no null); every other input is
    written and answered before the batch answers."""
    save = Store.save_contact

    def failing(self: Store, conn: sa.Connection, stored: Any, *args: Any) -> int:
        if stored.id == "BOOM":
            raise sa.exc.OperationalError("INSERT INTO contacts ...", {}, Exception("database is locked"))
        return save(self, conn, stored, *args)

    query = (
        "mutation($inputs: [ContactInput!]!) "
        "{ upsertContacts(inputs: $inputs, vendors: [EROS]) { status contact { id } results { status errors { code "
        "message } } } }"
    )
    inputs = (
        [contact(id=f"OK-{i}") for i in range(3)] + [contact(id="BOOM")] + [contact(id=f"OK-{i}") for i in range(3, 8)]
    )
    await simulators.faults(Vendor.EROS, latency_ms=300)
    with patch.object(Store, "save_contact", failing):
        answer = await gateway.graphql(query, {"inputs": inputs})
    items = answer["data"]["upsertContacts"]
    assert (items[3]["status"], items[3]["contact"]) == ("FAILED", None)
    (failed,) = items[3]["results"]
    assert (failed["status"], failed["errors"][0]["code"]) == ("UNAVAILABLE", "VENDOR_ERROR")
    assert failed["errors"][0]["message"].startswith("the gateway failed on this input (logged)")
    assert "database is locked" not in failed["errors"][0]["message"], "internals stay in the log"
    assert [p["contact"]["id"] for i, p in enumerate(items) if i != 3] == [f"OK-{i}" for i in range(8)]
    assert {p["status"] for i, p in enumerate(items) if i != 3} == {"SUCCEEDED"}
    assert "errors" not in answer
    kept = (await simulators.state(Vendor.EROS))["records"].values()
    assert sorted(r["AlternateKey"] for r in kept) == [f"OK-{i}" for i in range(8)]


async def test_a_page_of_contacts_shows_each_links_pending_deliveries(
    make_gateway: Callable[..., Any], simulators: Simulators
) -> None:
    """`contacts` showed every link's pendingDeliveries and failedDeliveries empty, where `contact(id)` fills them."""
    gateway: Gateway = await make_gateway({"eros": {"max_attempts": 1}})
    await simulators.faults(Vendor.EROS, fail_next=100_000, fail_status=503)
    written = await gateway.graphql(UPSERT, {"input": contact(id="PG-1"), "vendors": ["EROS"]})
    delivery_id = written["data"]["upsertContact"]["results"][0]["deliveryId"]
    links = "vendorLinks { vendor status pendingDeliveries { id status } failedDeliveries { id } }"
    one = await gateway.graphql(f'{{ contact(id: "PG-1") {{ {links} }} }}', token=READ_TOKEN)
    # The deliveries are read for a page only when selected: here through a fragment, as a front end would.
    page = await gateway.graphql(
        f"{{ contacts(first: 10) {{ edges {{ node {{ ...Links }} }} }} }} fragment Links on Contact {{ {links} }}",
        token=READ_TOKEN,
    )
    (edge,) = page["data"]["contacts"]["edges"]
    assert edge["node"] == one["data"]["contact"]
    (eros,) = [lk for lk in edge["node"]["vendorLinks"] if lk["vendor"] == "EROS"]
    assert eros["pendingDeliveries"] == [{"id": delivery_id, "status": "PENDING"}]


async def test_ids_and_cursors_with_a_nul_are_not_found_or_refused(
    store_url: str, make_gateway: Callable[..., Any]
) -> None:
    """PostgreSQL text cannot hold a NUL: such an id reached the driver and failed the whole read as INTERNAL (the
    other ids of a batched load with it). Such an id is refused as one no contact can have, alone, and such a
    cursor is refused naming `after`."""
    gateway: Gateway = await make_gateway(store_url=store_url)
    await gateway.graphql(UPSERT, {"input": contact(id="N-1")})
    both = await gateway.graphql(
        'query { a: contact(id: "N-1") { id } b: contact(id: "N\\u0000") { id } }', token=READ_TOKEN
    )
    assert both["data"] == {"a": {"id": "N-1"}, "b": None}
    (error,) = both["errors"]
    assert (error["path"], error["extensions"]) == (["b"], {"code": "BAD_USER_INPUT", "argument": "id"})
    cursor = base64.urlsafe_b64encode(b"contact:\x00").decode()
    paged = await gateway.graphql(
        "query($after: String) { contacts(after: $after) { totalCount } }", {"after": cursor}, token=READ_TOKEN
    )
    assert paged["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "argument": "after"}, paged


async def test_delete_everywhere_it_is_supported(gateway: Gateway, simulators: Simulators) -> None:
    await gateway.graphql(UPSERT, {"input": contact()})
    payload = (await gateway.graphql(DELETE, {"id": "C-1001"}))["data"]["deleteContact"]
    results = by_vendor(payload["results"])
    for vendor, plugin in REGISTRY.items():
        if plugin.connector.capabilities.delete:
            assert results[vendor.name]["status"] == "DELETED", vendor
        else:
            assert results[vendor.name]["status"] == "SKIPPED", vendor
            assert results[vendor.name]["errors"][0]["code"] == "NOT_SUPPORTED"
    links = await gateway.graphql('{ contact(id: "C-1001") { vendorLinks { vendor status deleted } } }')
    for link in links["data"]["contact"]["vendorLinks"]:
        assert link["deleted"] == REGISTRY[Vendor[link["vendor"]]].connector.capabilities.delete, link
    again = (await gateway.graphql(UPSERT, {"input": contact()}))["data"]["upsertContact"]
    assert by_vendor(again["results"])["EROS"]["status"] == "CREATED"


async def test_deleting_an_id_the_gateway_never_stored_sends_and_records_nothing(
    gateway: Gateway, simulators: Simulators, tmp_path: Path
) -> None:
    payload = (await gateway.graphql(DELETE, {"id": "NEVER-1"}))["data"]["deleteContact"]
    assert payload["status"] == "FAILED", payload
    for vendor, result in by_vendor(payload["results"]).items():
        assert result["status"] == "SKIPPED", result
        code = "NOT_FOUND" if REGISTRY[Vendor[vendor]].connector.capabilities.delete else "NOT_SUPPORTED"
        assert result["errors"][0]["code"] == code, result
    for vendor in Vendor:
        assert await simulators.calls(vendor) == [], vendor
    stored = await gateway.graphql('{ contact(id: "NEVER-1") { id } deliveries { totalCount } }', token=ADMIN_TOKEN)
    assert stored["data"] == {"contact": None, "deliveries": {"totalCount": 0}}, stored
    with contextlib.closing(sqlite3.connect(tmp_path / "gateway.db")) as db:
        assert db.execute("SELECT count(*) FROM vendor_links").fetchone() == (0,)


async def test_a_delete_sends_nothing_to_a_vendor_the_contact_was_never_written_to(
    gateway: Gateway, simulators: Simulators, tmp_path: Path
) -> None:
    """Written to Eros and Jim2 only, the contact is deleted everywhere: SuperOffice (which can delete) was sent a
    DbiKey lookup, answered SKIPPED with nothing in errors, and got a cross-reference it never had. Now it is sent
    nothing and says why (NOT_FOUND on `id`); no delivery or link is made for it."""
    # An id holding format braces: the message was built with str.format, and "{0}" in an id made it fail.
    await gateway.graphql(UPSERT, {"input": contact(id="B-2{0}"), "vendors": ["EROS", "JIM2"]})
    before = len(await simulators.calls(Vendor.SUPEROFFICE))
    payload = (await gateway.graphql(DELETE, {"id": "B-2{0}"}))["data"]["deleteContact"]
    results = by_vendor(payload["results"])
    assert payload["status"] == "SUCCEEDED", payload
    assert (results["EROS"]["status"], results["JIM2"]["status"]) == ("DELETED", "DELETED")
    superoffice = results["SUPEROFFICE"]
    assert (superoffice["status"], superoffice["deliveryId"]) == ("SKIPPED", None), superoffice
    assert [(e["field"], e["code"]) for e in superoffice["errors"]] == [("id", "NOT_FOUND")], superoffice
    assert "never written to SUPEROFFICE" in superoffice["errors"][0]["message"]
    assert len(await simulators.calls(Vendor.SUPEROFFICE)) == before
    links = await gateway.graphql('{ contact(id: "B-2{0}") { vendorLinks { vendor } } }')
    assert sorted(link["vendor"] for link in links["data"]["contact"]["vendorLinks"]) == ["EROS", "JIM2"]
    with contextlib.closing(sqlite3.connect(tmp_path / "gateway.db")) as db:
        assert db.execute("SELECT count(*) FROM deliveries WHERE vendor = 'SUPEROFFICE'").fetchone() == (0,)


async def test_vendors_query_lists_capabilities_and_coverage(gateway: Gateway) -> None:
    answer = await gateway.graphql(
        "{ vendors { vendor capabilities { create delete nativeUpsert } coverage { field vendorField } } }",
        token=READ_TOKEN,
    )
    vendors = {v["vendor"]: v for v in answer["data"]["vendors"]}
    assert vendors["ONESERVE"]["capabilities"] == {"create": True, "delete": False, "nativeUpsert": True}
    coverage = {row["field"]: row["vendorField"] for row in vendors["ONESERVE"]["coverage"]}
    assert coverage["firstName"] == "forename"
    assert coverage["organisation"] is None


# -- auth -----------------------------------------------------------------------------------------------------------


async def _post(gateway: Gateway, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    return await gateway.client.post(f"{gateway.url}/graphql", json=body, headers=headers)


async def test_missing_or_wrong_token_is_401(gateway: Gateway, simulators: Simulators) -> None:
    body = {"query": UPSERT, "variables": {"input": contact()}}
    for headers in (
        {},
        {"Authorization": "Bearer wrong-token-wrong-token"},
        {"Authorization": f"Basic {WRITE_TOKEN}"},
    ):
        response = await _post(gateway, body, headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert await simulators.calls(Vendor.ONESERVE) == []


async def test_scopes(gateway: Gateway, simulators: Simulators) -> None:
    denied = await gateway.graphql(UPSERT, {"input": contact()}, token=READ_TOKEN)
    assert denied["data"] is None
    assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert await simulators.calls(Vendor.EROS) == []

    query_denied = await gateway.graphql("{ contacts { totalCount } }", token=WRITE_ONLY_TOKEN)
    assert query_denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    allowed = await gateway.graphql(UPSERT, {"input": contact()}, token=WRITE_ONLY_TOKEN)
    assert allowed["data"]["upsertContact"]["status"] == "SUCCEEDED"
    # Writing is not reading: the stored contact in a write's answer needs contacts:read, as contact(id) does (a
    # delete that changes nothing answered any id's name and e-mail to a write-only token).
    assert allowed["data"]["upsertContact"]["contact"] is None
    [refused] = allowed["errors"]
    assert (refused["path"], refused["extensions"]["code"]) == (["upsertContact", "contact"], "FORBIDDEN"), refused
    assert "contacts:read" in refused["message"]
    delete = "mutation($id: ID!) { deleteContact(id: $id, vendors: [ONESERVE]) { status contact { firstName } } }"
    deleted = await gateway.graphql(delete, {"id": contact()["id"]}, token=WRITE_ONLY_TOKEN)
    assert deleted["data"]["deleteContact"]["contact"] is None, deleted
    assert deleted["errors"][0]["path"] == ["deleteContact", "contact"], deleted
    many = "mutation($inputs: [ContactInput!]!) { upsertContacts(inputs: $inputs) { status contact { lastName } } }"
    batch = await gateway.graphql(many, {"inputs": [contact()]}, token=WRITE_ONLY_TOKEN)
    assert batch["data"]["upsertContacts"] == [{"status": "SUCCEEDED", "contact": None}], batch
    assert batch["errors"][0]["path"] == ["upsertContacts", 0, "contact"], batch
    mine = await gateway.graphql(UPSERT, {"input": contact()}, token=WRITE_TOKEN)
    assert mine["data"]["upsertContact"]["contact"]["lastName"] == contact()["lastName"] and "errors" not in mine
    assert (await gateway.graphql("{ contacts { totalCount } }", token=READ_TOKEN))["data"]["contacts"][
        "totalCount"
    ] == 1
    assert (await gateway.graphql("{ contacts { totalCount } }", token=WRITE_TOKEN))["data"]


async def test_graphiql_page_loads_without_token(gateway: Gateway) -> None:
    response = await gateway.client.get(f"{gateway.url}/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()
    get_query = await gateway.client.get(f"{gateway.url}/graphql", params={"query": "{ vendors { vendor } }"})
    assert get_query.status_code == 401


@pytest.mark.parametrize(
    "selection",
    [
        "contact { id firstName }",
        "... on UpsertContactPayload { contact { id firstName } }",
        "...Answer",
        "status",
    ],
)
async def test_the_contact_is_answered_whenever_it_is_selected(gateway: Gateway, selection: str) -> None:
    """A write reads the contact back only when the caller selects it (directly or through a fragment)."""
    query = (
        "mutation($input: ContactInput!) { upsertContact(input: $input) { status " + selection + " } }"
        "\nfragment Answer on UpsertContactPayload { contact { id firstName } }"
        if selection == "...Answer"
        else "mutation($input: ContactInput!) { upsertContact(input: $input) { status " + selection + " } }"
    )
    body = await gateway.graphql(query, {"input": {"id": "sel-1", "firstName": "Ada", "lastName": "L"}})
    assert "errors" not in body, body
    answer = body["data"]["upsertContact"]
    if selection == "status":
        assert set(answer) == {"status"}
    else:
        assert answer["contact"] == {"id": "sel-1", "firstName": "Ada"}
