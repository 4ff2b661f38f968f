"""The contract suite: written once, run for every registered vendor, over real sockets to the simulators.

Each case drives one vendor into a situation (success, auth failure, rejection, 5xx, 429, timeout, dropped
connection) through the gateway's GraphQL endpoint with every vendor targeted, and checks that vendor's status and
code, and that every other vendor's result is untouched by it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from resolvers.model import Contact
from resolvers.results import Vendor
from resolvers.vendors import REGISTRY
from resolvers.vendors.base import VendorPlugin
from tests.conftest import Gateway, Simulators
from tests.support import FULL_CONTACT, UPSERT, by_vendor, contact

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


async def test_mapping_round_trip(vendor: Vendor, gateway: Gateway, simulators: Simulators) -> None:
    """What the vendor received is exactly the mapped payload, and mapping it back gives the contact's fields."""
    plugin = REGISTRY[vendor]
    payload = await upsert(gateway, contact())
    assert by_vendor(payload["results"])[vendor.name]["status"] == "CREATED"

    canonical = Contact.model_validate(FULL_CONTACT)
    sent = [c for c in await simulators.calls(vendor) if c["method"] != "GET" and c["outcome"] == 200]
    mapped = mapping_module(plugin)
    back = mapped.from_wire(orjson.loads(sent[-1]["body"]))
    expected = leaves(canonical.model_dump(mode="json", by_alias=True, exclude_defaults=True))
    returned = leaves(back)
    assert returned, "from_wire returned nothing"
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
    assert result["status"] == "UNAVAILABLE", result
    assert [e["code"] for e in result["errors"]] == [code]
    assert result["httpStatus"] == http_status
    plugin = REGISTRY[vendor]
    # Only a call that cannot duplicate is repeated: a native upsert is; a first create that may have arrived is not.
    expected_attempts = 3 if plugin.connector.capabilities.native_upsert else 1
    assert result["attempts"] == expected_attempts
    others_succeeded(results, vendor)
    assert payload["status"] == "PARTIAL"


async def test_timeout(vendor: Vendor, make_gateway: Callable[..., Any], simulators: Simulators) -> None:
    gateway: Gateway = await make_gateway({vendor.value: {"timeout_s": 0.5}})
    await simulators.faults(vendor, hang_next=50)
    results = by_vendor((await upsert(gateway, contact()))["results"])
    result = results[vendor.name]
    assert result["status"] == "UNAVAILABLE"
    assert [e["code"] for e in result["errors"]] == ["TIMEOUT"]
    assert result["durationMs"] >= 450
    others_succeeded(results, vendor)


async def test_transient_failure_then_recovery(vendor: Vendor, gateway: Gateway, simulators: Simulators) -> None:
    """One 503, then the vendor recovers: retried where safe, reported unavailable where not."""
    await simulators.faults(vendor, fail_next=1, fail_status=503)
    result = by_vendor((await upsert(gateway, contact()))["results"])[vendor.name]
    if REGISTRY[vendor].connector.capabilities.native_upsert:
        assert (result["status"], result["attempts"]) == ("CREATED", 2)
    else:
        assert (result["status"], result["attempts"]) == ("UNAVAILABLE", 1)
