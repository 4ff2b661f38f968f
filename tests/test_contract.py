"""The contract suite: written once, run for every registered vendor, over real sockets to the simulators.

Each case drives one vendor into a situation (success, auth failure, rejection, 5xx, 429, timeout, dropped
connection, lost answer, lost cross-reference, delete) through the gateway's GraphQL endpoint with every vendor
targeted, and checks that vendor's status and code, and that every other vendor's result is untouched by it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson
import pytest

from resolvers.model import Contact
from resolvers.results import Vendor
from resolvers.vendors import REGISTRY
from resolvers.vendors.base import Connector, VendorPlugin
from tests.conftest import Gateway, Simulators
from tests.support import DELETE, FULL_CONTACT, UPSERT, by_vendor, contact

pytestmark = pytest.mark.parametrize("vendor", list(REGISTRY), ids=lambda v: v.value)


def mapping_module(plugin: VendorPlugin) -> Any:
    package = plugin.connector.__module__.rsplit(".", 1)[0]
    return importlib.import_module(f"{package}.mapping")


def leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten nested data to `{"details[0].value": ...}`."""
    if isinstance(value, dict):
        return {p: v for k, item in value.items() for p, v in leaves(item, f"{prefix}.{k}" if prefix else k).items()}
    if isinstance(value, list):
        return {p: v for i, item in enumerate(value) for p, v in leaves(item, f"{prefix}[{i}]").items()}
    return {prefix: value}


def others_succeeded(results: dict[str, dict[str, Any]], vendor: Vendor) -> None:
    for name, result in results.items():
        if name != vendor.name:
            assert result["status"] == "CREATED", (name, result)
            assert result["errors"] == []


async def upsert(gateway: Gateway, data: dict[str, Any], **variables: Any) -> dict[str, Any]:
    answer = await gateway.graphql(UPSERT, {"input": data, **variables})
    assert "errors" not in answer, answer
    payload: dict[str, Any] = answer["data"]["upsertContact"]
    return payload


def connector_for(vendor: Vendor, simulators: Simulators) -> Connector[Any]:
    """The vendor's connector with the demo settings (no transport: for pure mapping calls only)."""
    plugin = REGISTRY[vendor]
    settings = plugin.connector.settings_type.model_validate(plugin.demo_config(simulators.url(vendor)))
    return plugin.connector(settings, transport=None)  # type: ignore[arg-type]


def decoded_body(call: dict[str, Any]) -> Any:
    """A received request body as the vendor's mapping reads it: JSON, or a flat dict for a urlencoded form."""
    content_type = next((v for k, v in call["headers"].items() if k.lower() == "content-type"), "")
    if "json" in content_type:
        return orjson.loads(call["body"])
    return dict(parse_qsl(call["body"], keep_blank_values=True))


def retries_create(vendor: Vendor, simulators: Simulators) -> bool:
    """Whether a first write of FULL_CONTACT that failed after reaching the vendor may be repeated in-request."""
    connector = connector_for(vendor, simulators)
    return connector.capabilities.native_upsert or connector.reconciles(
        connector.prepare(Contact.model_validate(FULL_CONTACT))
    )


async def test_mapping_round_trip(vendor: Vendor, gateway: Gateway, simulators: Simulators) -> None:
    """The vendor received what the mapping built, and mapping it back gives the contact's own values."""
    payload = await upsert(gateway, contact())
    assert by_vendor(payload["results"])[vendor.name]["status"] == "CREATED"

    canonical = Contact.model_validate(FULL_CONTACT)
    writes = [c for c in await simulators.calls(vendor) if c["method"] in {"POST", "PUT", "PATCH"} and c["body"]]
    mapping = mapping_module(REGISTRY[vendor])
    back = mapping.from_wire(decoded_body(writes[-1]))
    assert back == mapping.from_wire(connector_for(vendor, simulators).prepare(canonical).payload)
    expected = leaves(canonical.model_dump(mode="json", by_alias=True, exclude_defaults=True))
    returned = leaves(back)
    assert len(returned) >= 3, f"from_wire gave too little back: {returned}"
    for path, value in returned.items():
        assert path in expected, f"{path} came back but was never sent"
        assert value == expected[path], path


async def test_create_then_update_then_unchanged(vendor: Vendor, gateway: Gateway, simulators: Simulators) -> None:
    first = by_vendor((await upsert(gateway, contact()))["results"])[vendor.name]
    assert first["status"] == "CREATED"
    assert first["remoteId"]
    assert first["attempts"] == 1

    second = by_vendor((await upsert(gateway, contact(lastName="King")))["results"])[vendor.name]
    assert second["status"] == "UPDATED"
    assert second["remoteId"] == first["remoteId"]

    calls_before = len(await simulators.calls(vendor))
    third = by_vendor((await upsert(gateway, contact(lastName="King")))["results"])[vendor.name]
    assert third["status"] == "UNCHANGED"
    assert third["remoteId"] == first["remoteId"]
    assert third["attempts"] == 0
    assert len(await simulators.calls(vendor)) == calls_before, "an unchanged contact must not be sent"

    forced = by_vendor((await upsert(gateway, contact(lastName="King"), force=True))["results"])
    assert forced[vendor.name]["status"] == "UPDATED"
    assert len(await simulators.calls(vendor)) > calls_before, "a forced write is sent"
    if vendor is Vendor.EROS:  # which skips a contact its hash knows, unless told not to (seed 001: IgnoreHash)
        assert (await simulators.state(vendor))["counters"].get("unchanged") is None

    state = await simulators.state(vendor)
    assert len(state["records"]) == 1, "one contact, one record at the vendor"


async def test_auth_failure(vendor: Vendor, make_gateway: Callable[..., Any]) -> None:
    plugin = REGISTRY[vendor]
    gateway: Gateway = await make_gateway({vendor.value: plugin.bad_credentials})
    results = by_vendor((await upsert(gateway, contact()))["results"])
    result = results[vendor.name]
    assert result["status"] == "REJECTED"
    assert [e["code"] for e in result["errors"]] == ["AUTH_FAILED"]
    assert result["errors"][0]["message"]
    others_succeeded(results, vendor)


async def test_vendor_rejection(vendor: Vendor, gateway: Gateway) -> None:
    plugin = REGISTRY[vendor]
    data = contact(vendorOptions={vendor.value: plugin.rejecting_options})
    payload = await upsert(gateway, data)
    results = by_vendor(payload["results"])
    result = results[vendor.name]
    assert result["status"] == "REJECTED", result
    assert result["errors"], result
    assert all(e["code"] in {"VENDOR_REJECTED", "NOT_FOUND", "UNKNOWN_TYPE"} for e in result["errors"]), result
    assert any(e["field"].startswith(f"vendorOptions.{vendor.value}") for e in result["errors"]), result
    others_succeeded(results, vendor)
    assert payload["status"] == "PARTIAL"


@pytest.mark.parametrize(
    ("faults", "code", "http_status"),
    [
        ({"fail_next": 50, "fail_status": 503}, "VENDOR_ERROR", 503),
        ({"fail_next": 50, "fail_status": 500}, "VENDOR_ERROR", 500),
        ({"throttle_next": 50, "retry_after": 0}, "RATE_LIMITED", 429),
        ({"drop_next": 50}, "VENDOR_ERROR", None),
    ],
    ids=["503", "500", "429", "drop"],
)
async def test_transient_failures(
    vendor: Vendor,
    gateway: Gateway,
    simulators: Simulators,
    faults: dict[str, Any],
    code: str,
    http_status: int | None,
) -> None:
    await simulators.faults(vendor, **faults)
    payload = await upsert(gateway, contact())
    results = by_vendor(payload["results"])
    result = results[vendor.name]
    assert result["status"] == "QUEUED", result
    assert result["deliveryId"], "a queued write names its outbox delivery"
    assert [e["code"] for e in result["errors"]] == [code]
    assert result["httpStatus"] == http_status
    # Only a call that cannot duplicate is repeated: a native upsert, or a create that first looks for its record.
    assert result["attempts"] == (3 if retries_create(vendor, simulators) else 1)
    others_succeeded(results, vendor)
    assert payload["status"] == "PARTIAL"


async def test_timeout(vendor: Vendor, make_gateway: Callable[..., Any], simulators: Simulators) -> None:
    gateway: Gateway = await make_gateway({vendor.value: {"timeout_s": 0.5}})
    await simulators.faults(vendor, hang_next=50)
    results = by_vendor((await upsert(gateway, contact()))["results"])
    result = results[vendor.name]
    assert result["status"] == "QUEUED"
    assert [e["code"] for e in result["errors"]] == ["TIMEOUT"]
    assert result["durationMs"] >= 450
    others_succeeded(results, vendor)


async def test_transient_failure_then_recovery(vendor: Vendor, gateway: Gateway, simulators: Simulators) -> None:
    """One 503, then the vendor recovers: retried at once where safe, queued for the background where not."""
    await simulators.faults(vendor, fail_next=1, fail_status=503)
    result = by_vendor((await upsert(gateway, contact()))["results"])[vendor.name]
    if retries_create(vendor, simulators):
        assert (result["status"], result["attempts"]) == ("CREATED", 2)
    else:
        assert (result["status"], result["attempts"]) == ("QUEUED", 1)


async def test_lost_answer_does_not_duplicate(vendor: Vendor, gateway: Gateway, simulators: Simulators) -> None:
    """The vendor acts on the first write but its answer is lost: the retry must not make a second record."""
    await simulators.faults(vendor, drop_after_next_write=1)
    result = by_vendor((await upsert(gateway, contact()))["results"])[vendor.name]
    if not retries_create(vendor, simulators):
        assert result["status"] == "QUEUED"
        result = by_vendor((await upsert(gateway, contact()))["results"])[vendor.name]  # the caller retries
    assert result["status"] in {"CREATED", "UPDATED"}, result
    assert result["remoteId"]
    if not REGISTRY[vendor].connector.capabilities.native_upsert:
        assert result["matchedBy"], "the record made by the lost call was adopted"
    assert len((await simulators.state(vendor))["records"]) == 1


async def test_adoption_when_cross_reference_is_missing(
    vendor: Vendor, make_gateway: Callable[..., Any], simulators: Simulators
) -> None:
    """A second gateway with an empty store (store lost) finds the record the first one made, and updates it."""
    first: Gateway = await make_gateway(store="first.db")
    created = by_vendor((await upsert(first, contact()))["results"])[vendor.name]
    assert created["status"] == "CREATED"

    second: Gateway = await make_gateway(store="second.db")
    again = by_vendor((await upsert(second, contact(lastName="King")))["results"])[vendor.name]
    assert again["remoteId"] == created["remoteId"]
    assert len((await simulators.state(vendor))["records"]) == 1
    if not REGISTRY[vendor].connector.capabilities.native_upsert:
        assert (again["status"], bool(again["matchedBy"])) == ("UPDATED", True)


async def test_delete(vendor: Vendor, gateway: Gateway, simulators: Simulators) -> None:
    created = by_vendor((await upsert(gateway, contact()))["results"])[vendor.name]
    answer = await gateway.graphql(DELETE, {"id": FULL_CONTACT["id"], "vendors": [vendor.name]})
    result = answer["data"]["deleteContact"]["results"][0]
    if not REGISTRY[vendor].connector.capabilities.delete:
        assert (result["status"], [e["code"] for e in result["errors"]]) == ("SKIPPED", ["NOT_SUPPORTED"])
        return
    assert (result["status"], result["remoteId"]) == ("DELETED", created["remoteId"])
    assert (await simulators.state(vendor))["counters"].get("deletes") == 1
    recreated = by_vendor((await upsert(gateway, contact()))["results"])[vendor.name]
    assert recreated["status"] == "CREATED", "a deleted contact written again is created again"


async def test_contacts_sharing_an_email_stay_two_records(
    vendor: Vendor, gateway: Gateway, simulators: Simulators
) -> None:
    """Adoption by e-mail never takes a record another contact of the gateway is linked to."""
    first = by_vendor((await upsert(gateway, contact(id="SHARED-1")))["results"])[vendor.name]
    second = by_vendor((await upsert(gateway, contact(id="SHARED-2", firstName="Bea")))["results"])[vendor.name]
    assert (first["status"], second["status"]) == ("CREATED", "CREATED")
    assert first["remoteId"] != second["remoteId"]
    assert len((await simulators.state(vendor))["records"]) == 2
