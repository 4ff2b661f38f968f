"""Oneserve quirks: four contact slots, contact2 at 50, two required address lines, dd/MM/yyyy, `result` bodies."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from typing import Any, cast

import aiohttp
import orjson
import pytest
from pydantic import ValidationError

from resolvers.errors import (
    AuthFailed,
    RateLimited,
    VendorError,
    VendorNotFound,
    VendorProtocolError,
    VendorRejected,
    VendorUnavailable,
)
from resolvers.model import Contact
from resolvers.results import ErrorCode, Vendor, VendorStatus
from resolvers.transport import Transport, VendorResponse
from resolvers.vendors.base import CrossReference, Prepared
from resolvers.vendors.oneserve import PLUGIN, OneserveConnector, OneserveSettings, OneserveSimulator, demo_config
from resolvers.vendors.oneserve.mapping import format_date, from_wire, to_wire
from resolvers.vendors.oneserve.simulator import DEMO_TOKEN
from resolvers.vendors.oneserve.wire import OneserveLocation
from tests.vendors.kit import cross_reference, simulator_server, unchecked

# Oneserve's own example payload, verbatim: numbers and booleans as strings.
SEED_PAYLOAD: dict[str, Any] = {
    "clientRef": "29",
    "contactRef": "ZARADILLO1",
    "salutation": "Mr",
    "forename": "John",
    "surname": "Test",
    "contact1": "",
    "contact1Type": "1",
    "contact2": "07123456789",
    "contact2Type": "10",
    "contact3": "test@test.test",
    "contact3Type": "6",
    "contact4": "",
    "contact4Type": "1",
    "preferredContact": "1",
    "address1": "Address line 1",
    "address2": "Address line 2",
    "address3": "Address line 3",
    "address4": "Address line 4",
    "notes": "These are notes",
    "considerations": "These are considerations",
    "postCode": "EX49HL",
    "locations": [
        {
            "locationRef": "10174",
            "isPreferred": "True",
            "startDate": "09/07/2019",
            "endDate": "18/12/2019",
            "usageTypeId": "1",
        }
    ],
}
STATEMENT_FAILED = (
    "could not execute statement; SQL [n/a]; nested exception is org.hibernate.exception.DataException: "
    "could not execute statement"
)
SETTINGS = OneserveSettings.model_validate(demo_config("http://127.0.0.1:1/oneserve/acme/"))


def make_contact(**overrides: Any) -> Contact:
    data: dict[str, Any] = {
        "id": "C-1",
        "title": "Mr",
        "firstName": "John",
        "lastName": "Test",
        "details": [
            {"kind": "PHONE", "value": "01392 000000"},
            {"kind": "MOBILE", "value": "07123456789", "preferred": True},
            {"kind": "EMAIL", "value": "test@test.test"},
        ],
        "address": {"lines": ["Address line 1", "Address line 2"], "postCode": "EX4 9HL"},
        "locations": [
            {"ref": "10174", "preferred": True, "startDate": "2019-07-09", "endDate": "2019-12-18", "usageTypeId": 1}
        ],
    }
    data.update(overrides)
    return Contact.model_validate(data)


def offline(settings: OneserveSettings = SETTINGS) -> OneserveConnector:
    # Pre-flight never touches the network: a transport without a session is enough.
    return OneserveConnector(settings, Transport(cast(aiohttp.ClientSession, None)))


def errors_of(contact: Contact, settings: OneserveSettings = SETTINGS) -> set[tuple[str, ErrorCode, str | None]]:
    return {(e.field, e.code, e.vendor_field) for e in offline(settings).prepare(contact).errors}


def link(remote_id: str | None) -> CrossReference:
    return cross_reference(Vendor.ONESERVE, remote_id, contact_id="C-1", last_status=None)


def raw(payload: dict[str, Any]) -> Prepared:
    """A payload sent as is, skipping pre-flight: what the simulator does with what the gateway would refuse."""
    return unchecked(Vendor.ONESERVE, payload)


# ---- mapping ----------------------------------------------------------------------------------------------------


def test_details_fill_slots_in_order_with_configured_type_ids() -> None:
    settings = SETTINGS.model_copy(update={"detail_types": {"phone": 3, "mobile": 42, "email": 6}})
    mapped = to_wire(make_contact(), settings, {})

    assert [mapped.payload.get(f"contact{n}") for n in range(1, 5)] == [
        "01392 000000",
        "07123456789",
        "test@test.test",
        None,
    ]
    assert [mapped.payload.get(f"contact{n}Type") for n in range(1, 5)] == [3, 42, 6, None]
    assert mapped.payload["preferredContact"] == 2
    assert mapped.sources["contact2"] == "details[1].value"
    assert mapped.sources["contact2Type"] == "details[1].kind"
    assert mapped.sources["preferredContact"] == "details[1].preferred"
    assert mapped.errors == []


def test_preferred_contact_is_slot_one_when_none_is_preferred() -> None:
    details = [{"kind": "EMAIL", "value": "a@b.co"}, {"kind": "PHONE", "value": "1"}]
    mapped = to_wire(make_contact(details=details), SETTINGS, {})
    assert mapped.payload["preferredContact"] == 1
    assert mapped.warnings == [
        "details: none is marked preferred, and Oneserve needs one (preferredContact): details[0] is sent as the "
        "preferred contact"
    ]


def test_five_details_are_too_many_and_the_first_four_still_map() -> None:
    details = [{"kind": "PHONE", "value": f"0{n}"} for n in range(5)]
    prepared = offline().prepare(make_contact(details=details))

    assert [(e.field, e.code, e.vendor_field) for e in prepared.errors] == [
        ("details", ErrorCode.TOO_MANY, "contact1..4")
    ]
    assert prepared.payload["contact4"] == "03"
    assert "contact5" not in prepared.payload
    assert not prepared.valid


def test_contact2_is_limited_to_50_while_contact3_takes_80() -> None:
    def with_values(second: str, third: str) -> Contact:
        return make_contact(
            details=[
                {"kind": "PHONE", "value": "1"},
                {"kind": "PHONE", "value": second},
                {"kind": "PHONE", "value": third},
            ]
        )

    prepared = offline().prepare(with_values("9" * 51, "9" * 80))
    assert [(e.field, e.code, e.vendor_field, e.message) for e in prepared.errors] == [
        ("details[1].value", ErrorCode.TOO_LONG, "contact2", "at most 50 characters")
    ]
    assert errors_of(with_values("9" * 50, "9" * 81)) == {("details[2].value", ErrorCode.TOO_LONG, "contact3")}


def test_address_lines_one_and_two_and_post_code_are_required() -> None:
    one_line = make_contact(address={"lines": ["Only line"], "postCode": "EX4 9HL"})
    assert errors_of(one_line) == {("address.lines[1]", ErrorCode.REQUIRED, "address2")}

    assert errors_of(make_contact(address=None)) == {
        ("address.lines[0]", ErrorCode.REQUIRED, "address1"),
        ("address.lines[1]", ErrorCode.REQUIRED, "address2"),
        ("address.postCode", ErrorCode.REQUIRED, "postCode"),
    }


def test_more_than_four_address_lines_are_too_many() -> None:
    lines = ["1", "2", "3", "4", "5"]
    contact = make_contact(address={"lines": lines, "postCode": "EX4 9HL"})
    assert errors_of(contact) == {("address.lines", ErrorCode.TOO_MANY, "address1..4")}
    assert to_wire(contact, SETTINGS, {}).payload["address4"] == "4"


@pytest.mark.parametrize(
    "text",
    [
        "09/07/2019",
        "29/02/2024",
        "29/02/2023",
        "31/04/2020",
        "00/01/2020",
        "01/13/2020",
        "01/01/0000",
        "02/01/0999",
        "9/7/2019",
        "09/07/19",
        "09-07-2019",
        " 09/07/2019",
        "09/07/2019\n",
        "31/12/9999",
        "\uff11\uff12/07/2019",
    ],
)
def test_a_date_is_valid_exactly_when_two_digits_day_month_and_strptime_agree(text: str) -> None:
    import re
    from datetime import datetime

    def by_strptime() -> bool:  # the check the validator had before it read the digits itself
        try:
            return bool(re.match(r"^\d{2}/\d{2}/\d{4}$", text)) and bool(datetime.strptime(text, "%d/%m/%Y"))
        except ValueError:
            return False

    try:
        OneserveLocation.model_validate({"locationRef": "L", "isPreferred": True, "startDate": text})
        valid = True
    except ValidationError as caught:
        assert caught.errors()[0]["type"] == "invalid_format"
        valid = False
    assert valid == by_strptime()


def test_dates_are_sent_as_dd_mm_yyyy() -> None:
    location = to_wire(make_contact(), SETTINGS, {}).payload["locations"][0]
    assert location == {
        "locationRef": "10174",
        "isPreferred": True,
        "startDate": "09/07/2019",
        "endDate": "18/12/2019",
        "usageTypeId": 1,
    }
    assert format_date(date(999, 1, 2)) == "02/01/0999"
    with pytest.raises(ValidationError) as caught:
        OneserveLocation.model_validate({"locationRef": "L", "isPreferred": True, "startDate": "2019-07-09"})
    assert caught.value.errors()[0]["type"] == "invalid_format"
    with pytest.raises(ValidationError):
        OneserveLocation.model_validate({"locationRef": "L", "isPreferred": True, "startDate": "31/02/2019"})


def test_client_ref_from_vendor_options_wins_over_configuration() -> None:
    assert to_wire(make_contact(), SETTINGS, {}).payload["clientRef"] == "29"
    contact = make_contact(vendorOptions={"oneserve": {"clientRef": "31"}})
    assert offline().map(contact).payload["clientRef"] == "31"


def test_unknown_vendor_option_is_not_supported() -> None:
    contact = make_contact(vendorOptions={"oneserve": {"cardNo": "10"}})
    assert errors_of(contact) == {("vendorOptions.oneserve.cardNo", ErrorCode.NOT_SUPPORTED, "cardNo")}


def test_detail_kind_without_configured_type_is_one_unknown_type_error() -> None:
    settings = SETTINGS.model_copy(update={"detail_types": {"phone": 1}})
    contact = make_contact(details=[{"kind": "WEB", "value": "https://example.com"}])
    # Slot 1's type is also required by the wire model; only the UNKNOWN_TYPE explains it.
    assert errors_of(contact, settings) == {("details[0].kind", ErrorCode.UNKNOWN_TYPE, "contact1Type")}


def test_title_becomes_salutation_and_canonical_salutation_is_not_sent() -> None:
    prepared = offline().prepare(make_contact(title="Dr", salutation="Dear Dr Test"))
    assert prepared.payload["salutation"] == "Dr"
    assert "salutation: not supported by ONESERVE, not sent" in prepared.warnings
    assert errors_of(make_contact(title=None)) == {("title", ErrorCode.REQUIRED, "salutation")}


def test_a_client_ref_of_only_spaces_names_no_client() -> None:
    # Part of Oneserve's key: sent, it would file the contact under a client nobody can name, or be refused
    # without saying which field; the caller hears it at the option, and a config saying so fails at start.
    contact = make_contact(vendorOptions={"oneserve": {"clientRef": "   "}})
    assert errors_of(contact) == {("vendorOptions.oneserve.clientRef", ErrorCode.REQUIRED, "clientRef")}
    with pytest.raises(ValidationError, match="client_ref"):
        OneserveSettings.model_validate({**demo_config("http://127.0.0.1:1/oneserve/acme/"), "client_ref": " "})


def test_every_violated_rule_is_reported_at_once() -> None:
    contact = make_contact(
        title=None,
        firstName="F" * 81,
        details=[{"kind": "PHONE", "value": "1"}, {"kind": "PHONE", "value": "2" * 51}]
        + [{"kind": "PHONE", "value": "3"}] * 3,
        address={"lines": ["Only line"]},
        notes="n" * 2001,
        locations=[{"ref": "L" * 51}],
        vendorOptions={"oneserve": {"clientRef": "C" * 51}},
    )
    assert errors_of(contact) == {
        ("title", ErrorCode.REQUIRED, "salutation"),
        ("firstName", ErrorCode.TOO_LONG, "forename"),
        ("details", ErrorCode.TOO_MANY, "contact1..4"),
        ("details[1].value", ErrorCode.TOO_LONG, "contact2"),
        ("address.lines[1]", ErrorCode.REQUIRED, "address2"),
        ("address.postCode", ErrorCode.REQUIRED, "postCode"),
        ("notes", ErrorCode.TOO_LONG, "notes"),
        ("locations[0].ref", ErrorCode.TOO_LONG, "locations[0].locationRef"),
        ("vendorOptions.oneserve.clientRef", ErrorCode.TOO_LONG, "clientRef"),
    }


def test_round_trip_through_the_wire_is_stable() -> None:
    contact = make_contact(notes="notes", considerations="care")
    payload = to_wire(contact, SETTINGS, {}).payload
    again = Contact.model_validate(from_wire(payload))
    assert to_wire(again, SETTINGS, {}).payload == payload
    assert again.details == contact.details
    assert again.locations == contact.locations


def test_from_wire_reads_the_vendor_example_with_strings() -> None:
    data = from_wire(SEED_PAYLOAD)
    assert [(d["kind"], d["value"]) for d in data["details"]] == [
        ("MOBILE", "07123456789"),
        ("EMAIL", "test@test.test"),
    ]
    assert data["address"] == {"lines": [f"Address line {n}" for n in range(1, 5)], "postCode": "EX49HL"}
    assert data["locations"] == [
        {"ref": "10174", "preferred": True, "startDate": "2019-07-09", "endDate": "2019-12-18", "usageTypeId": 1}
    ]
    # Shaped like a canonical dump without defaults, so the contract suite can compare it field by field.
    contact = Contact.model_validate(data)
    assert data == contact.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    assert "details" not in from_wire({**SEED_PAYLOAD, "contact2": "", "contact3": ""})


def test_settings_reject_unknown_detail_kinds_and_long_client_refs() -> None:
    base = demo_config("http://127.0.0.1:1/oneserve/acme/")
    with pytest.raises(ValidationError, match="unknown detail kinds"):
        OneserveSettings.model_validate({**base, "detail_types": {"pager": 3}})
    with pytest.raises(ValidationError, match="client_ref"):
        OneserveSettings.model_validate({**base, "client_ref": "x" * 51})


def test_demo_config_adds_the_site_to_the_simulator_mount_only() -> None:
    assert demo_config("http://127.0.0.1:8100/oneserve")["base_url"] == "http://127.0.0.1:8100/oneserve/acme/"
    assert demo_config("http://127.0.0.1:8100/oneserve/other/")["base_url"] == "http://127.0.0.1:8100/oneserve/other/"


# ---- connector against the simulator, over a real socket --------------------------------------------------------

Serve = Callable[..., Awaitable[tuple[OneserveSimulator, str]]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start a simulator (with the given constructor arguments); returns it and its mount URL."""
    async with simulator_server() as serve_one:

        async def start(**kwargs: Any) -> tuple[OneserveSimulator, str]:
            simulator = OneserveSimulator(**kwargs)
            return simulator, f"http://127.0.0.1:{await serve_one(simulator)}/oneserve/"

        yield start


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def connect(session: aiohttp.ClientSession, mount: str, **overrides: Any) -> OneserveConnector:
    settings = OneserveSettings.model_validate({**demo_config(f"{mount}acme/"), **overrides})
    return OneserveConnector(settings, Transport(session))


@pytest.mark.parametrize("length_unit", ["characters", "utf16"])
async def test_the_length_unit_is_read_both_ways(
    serve: Serve, session: aiohttp.ClientSession, length_unit: str
) -> None:
    """Seed 000's "Text (80)" does not say what counts. 80 emoji are 80 characters but 160 UTF-16 code units: an
    Oneserve counting units refuses them with a failure that names no field, so with `length_unit = "utf16"`
    pre-flight refuses them first, naming the field; counting characters, they go through."""
    simulator, mount = await serve(length_unit=length_unit)
    connector = connect(session, mount, length_unit=length_unit)
    prepared = connector.prepare(make_contact(firstName="\U0001f600" * 80))
    if length_unit == "characters":
        assert prepared.valid, prepared.errors
        assert (await connector.upsert(prepared, None)).status is VendorStatus.CREATED
        return
    assert [(e.field, e.code, e.vendor_field, e.message) for e in prepared.errors] == [
        ("firstName", ErrorCode.TOO_LONG, "forename", "at most 80 characters (an emoji counts as 2)")
    ]
    # And the simulator, counting units, refuses what pre-flight would have (sent regardless here).
    with pytest.raises(VendorRejected):
        await connector.upsert(dataclasses.replace(prepared, errors=[]), None)
    assert simulator.state.records == {}


def test_known_usage_type_ids_are_checked_before_sending() -> None:
    """Seed 000: usageTypeId "must match an existing usage type ID"; with the tenant's ids configured, another is
    UNKNOWN_TYPE at the caller's path instead of Oneserve's 'Transaction rolled back', which names no field."""
    settings = SETTINGS.model_copy(update={"usage_type_ids": [1, 2, 3]})
    contact = make_contact(locations=[{"ref": "L1", "usageTypeId": 99}, {"ref": "L2", "usageTypeId": 2}])
    assert errors_of(contact, settings) == {
        ("locations[0].usageTypeId", ErrorCode.UNKNOWN_TYPE, "locations[0].usageTypeId")
    }
    assert errors_of(contact) == set()  # not configured: Oneserve judges


async def test_create_then_update_keeps_one_record(serve: Serve, session: aiohttp.ClientSession) -> None:
    simulator, mount = await serve()
    connector = connect(session, mount)
    prepared = connector.prepare(make_contact())
    assert prepared.valid, prepared.errors

    created = await connector.upsert(prepared, None)
    assert (created.status, created.remote_id, created.http_status) == (VendorStatus.CREATED, "29/C-1", 200)
    assert simulator.state.calls[-1].headers["OS-REST-AUTH-TOKEN"] == DEMO_TOKEN

    renamed = connector.prepare(make_contact(firstName="Jonathan"))
    updated = await connector.upsert(renamed, link("29/C-1"))
    assert (updated.status, updated.remote_id) == (VendorStatus.UPDATED, "29/C-1")

    assert list(simulator.state.records) == ["29/C-1"]
    assert simulator.state.records["29/C-1"] == renamed.payload
    assert simulator.state.counters == {"creates": 1, "updates": 1}


@pytest.mark.parametrize("removed_fields", ["omit", "blank"])
async def test_a_removed_field_is_cleared_at_a_oneserve_that_keeps_what_is_left_out_only_by_blanking(
    serve: Serve, session: aiohttp.ClientSession, removed_fields: str
) -> None:
    """Against an Oneserve whose update keeps the fields a body leaves out, "omit" leaves removed notes, a third
    detail and the locations there (why the setting exists); "blank" sends them as "" and [] and they are gone. A
    removed detail's type id is a number, which "" cannot clear: said in a warning."""
    simulator, mount = await serve(keeps_omitted=True)
    connector = connect(session, mount, removed_fields=removed_fields)
    first = connector.prepare(make_contact(notes="call first"))
    await connector.upsert(first, None)
    two_details = make_contact(details=make_contact().model_dump(by_alias=True)["details"][:2], locations=[])
    second = connector.prepare(two_details)
    assert second.valid, second.errors
    previous = cross_reference(Vendor.ONESERVE, "29/C-1", contact_id="C-1", payload=first.payload)
    updated = await connector.upsert(second, previous)
    stored = simulator.state.records["29/C-1"]
    if removed_fields == "omit":
        assert (stored["notes"], stored["contact3"], len(stored["locations"])) == ("call first", "test@test.test", 1)
        assert updated.warnings == ()
    else:
        assert (stored["notes"], stored["contact3"], stored["locations"]) == ("", "", [])
        assert updated.warnings == (
            "contact3Type: removed, but it is not text and cannot be blanked; Oneserve may keep it",
        )
    # Without the last accepted payload nothing is known to be removed: the body is sent as prepared.
    await connector.upsert(second, link("29/C-1"))
    assert orjson.loads(simulator.state.calls[-1].body) == second.payload


async def test_changed_client_ref_creates_under_the_new_client_and_leaves_the_old_record(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    """clientRef is part of Oneserve's key and not updatable: moving a contact to another client writes a new
    record there; the answer says so instead of claiming the old record was updated."""
    simulator, mount = await serve(client_refs=("29", "31"))
    connector = connect(session, mount)
    created = await connector.upsert(connector.prepare(make_contact()), None)
    assert created.remote_id == "29/C-1"

    moved = await connector.upsert(
        connector.prepare(make_contact(vendorOptions={"oneserve": {"clientRef": "31"}})), link("29/C-1")
    )
    assert (moved.status, moved.remote_id) == (VendorStatus.CREATED, "31/C-1")
    assert moved.warnings == (
        "clientRef changed to 31: written under that client as 31/C-1; Oneserve cannot move a contact, "
        "so 29/C-1 was left in place",
    )
    assert sorted(simulator.state.records) == ["29/C-1", "31/C-1"]

    again = await connector.upsert(
        connector.prepare(make_contact(firstName="Jo", vendorOptions={"oneserve": {"clientRef": "31"}})),
        link("31/C-1"),
    )
    assert (again.status, again.remote_id, again.warnings) == (VendorStatus.UPDATED, "31/C-1", ())


async def test_the_seed_example_with_strings_is_accepted(serve: Serve, session: aiohttp.ClientSession) -> None:
    simulator, mount = await serve()
    async with session.post(
        f"{mount}acme/rest/contact/contact", json=SEED_PAYLOAD, headers={"OS-REST-AUTH-TOKEN": DEMO_TOKEN}
    ) as response:
        assert (response.status, await response.json()) == (200, {"result": "success", "result_msg": ""})
    assert simulator.state.records["29/ZARADILLO1"] == SEED_PAYLOAD


async def test_wrong_token_is_auth_failed(serve: Serve, session: aiohttp.ClientSession) -> None:
    simulator, mount = await serve()
    connector = connect(session, mount, **PLUGIN.bad_credentials)
    with pytest.raises(AuthFailed) as caught:
        await connector.upsert(connector.prepare(make_contact()), None)
    assert caught.value.http_status == 401
    assert simulator.state.records == {}


async def test_token_header_name_is_a_setting(serve: Serve, session: aiohttp.ClientSession) -> None:
    _, mount = await serve(token_header="OS_REST_AUTH_TOKEN")
    hyphenated = connect(session, mount)
    with pytest.raises(AuthFailed):
        await hyphenated.upsert(hyphenated.prepare(make_contact()), None)
    underscored = connect(session, mount, token_header="OS_REST_AUTH_TOKEN")
    delivered = await underscored.upsert(underscored.prepare(make_contact()), None)
    assert delivered.status is VendorStatus.CREATED


@pytest.mark.parametrize("failure_status", [200, 400, 403, 404, 500])
async def test_unknown_client_ref_from_options_is_a_not_found_field_error(
    serve: Serve, session: aiohttp.ClientSession, failure_status: int
) -> None:
    simulator, mount = await serve(failure_http_status=failure_status)
    connector = connect(session, mount)
    prepared = connector.prepare(make_contact(vendorOptions={"oneserve": PLUGIN.rejecting_options}))
    assert prepared.valid, prepared.errors

    with pytest.raises(VendorRejected) as caught:
        await connector.upsert(prepared, None)
    error = caught.value
    assert error.http_status == failure_status
    assert "Unable to locate client ref supplied" in error.message
    # Oneserve has no codes: its documented message is the vendorCode a caller matches on.
    assert [(e.field, e.code, e.vendor_field, e.vendor_code) for e in error.to_field_errors()] == [
        ("vendorOptions.oneserve.clientRef", ErrorCode.NOT_FOUND, "clientRef", "Unable to locate client ref supplied")
    ]
    assert simulator.state.records == {}


async def test_unknown_configured_client_ref_points_at_no_input_field(
    serve: Serve, session: aiohttp.ClientSession
) -> None:
    _, mount = await serve()
    connector = connect(session, mount, client_ref="30")
    with pytest.raises(VendorRejected) as caught:
        await connector.upsert(connector.prepare(make_contact()), None)
    [error] = caught.value.to_field_errors()
    assert (error.field, error.code, error.vendor_field) == ("", ErrorCode.NOT_FOUND, "clientRef")
    assert "client_ref" in error.message


@pytest.mark.parametrize("failure_status", [200, 404, 500])
async def test_overlong_contact2_sent_anyway_is_a_statement_failure(
    serve: Serve, session: aiohttp.ClientSession, failure_status: int
) -> None:
    # The simulator keeps its own column table: it must refuse what pre-flight would have caught.
    simulator, mount = await serve(failure_http_status=failure_status)
    connector = connect(session, mount)
    payload = {**connector.prepare(make_contact()).payload, "contact2": "9" * 51}
    with pytest.raises(VendorRejected) as caught:
        await connector.upsert(raw(payload), None)
    assert type(caught.value) is VendorRejected
    assert caught.value.message.startswith(STATEMENT_FAILED)
    assert caught.value.to_field_errors()[0].code is ErrorCode.VENDOR_REJECTED
    assert simulator.state.records == {}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"contact1Type": 999}, "Transaction rolled back because it has been marked as rollback-only"),
        ({"preferredContact": 5}, "could not execute statement"),
        ({"contact1Type": "phone"}, "could not execute statement"),
        ({"address2": None}, "could not execute statement"),
    ],
)
async def test_simulator_refuses_ids_ranges_and_gaps_pre_flight_would_catch(
    serve: Serve, session: aiohttp.ClientSession, change: dict[str, Any], message: str
) -> None:
    _, mount = await serve()
    connector = connect(session, mount)
    payload = {**connector.prepare(make_contact()).payload, **change}
    payload = {key: value for key, value in payload.items() if value is not None}
    with pytest.raises(VendorRejected, match=message):
        await connector.upsert(raw(payload), None)


async def test_json_array_answers_rest0002(serve: Serve, session: aiohttp.ClientSession) -> None:
    _, mount = await serve()
    async with session.post(
        f"{mount}acme/rest/contact/contact", json=[SEED_PAYLOAD], headers={"OS-REST-AUTH-TOKEN": DEMO_TOKEN}
    ) as response:
        body = await response.read()
        status = response.status
    assert orjson.loads(body) == {
        "result": "fail",
        "result_msg": "REST0002",
        "result_error_msg": "A JSONObject text must begin with '{' at character 1",
    }
    error = offline().reply_error(VendorResponse(status, {}, body), SEED_PAYLOAD)
    assert isinstance(error, VendorRejected)
    assert error.vendor_code == "REST0002"
    assert "A JSONObject text must begin with '{'" in error.message


@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_other_methods_answer_405(serve: Serve, session: aiohttp.ClientSession, method: str) -> None:
    _, mount = await serve()
    async with session.request(
        method, f"{mount}acme/rest/contact/contact", headers={"OS-REST-AUTH-TOKEN": DEMO_TOKEN}
    ) as response:
        assert response.status == 405
        assert response.headers["Allow"] == "POST"
        error = offline().reply_error(VendorResponse(405, {}, await response.read()), {})
    assert type(error) is VendorRejected


async def test_text_plain_answers_415(serve: Serve, session: aiohttp.ClientSession) -> None:
    simulator, mount = await serve()
    async with session.post(
        f"{mount}acme/rest/contact/contact",
        data='{"clientRef": "29"}',
        headers={"OS-REST-AUTH-TOKEN": DEMO_TOKEN, "Content-Type": "text/plain"},
    ) as response:
        assert response.status == 415
        error = offline().reply_error(VendorResponse(415, {}, await response.read()), {})
    assert type(error) is VendorRejected
    assert simulator.state.records == {}


async def test_unknown_site_is_not_found(serve: Serve, session: aiohttp.ClientSession) -> None:
    _, mount = await serve()
    settings = OneserveSettings.model_validate(demo_config(f"{mount}other/"))
    connector = OneserveConnector(settings, Transport(session))
    with pytest.raises(VendorNotFound):
        await connector.upsert(connector.prepare(make_contact()), None)


async def inject(session: aiohttp.ClientSession, mount: str, faults: dict[str, Any]) -> None:
    async with session.post(f"{mount}_admin/faults", json=faults) as response:
        assert response.status == 200


@pytest.mark.parametrize("fail_status", [503, 500])
async def test_injected_server_failure_is_unavailable_then_recovers(
    serve: Serve, session: aiohttp.ClientSession, fail_status: int
) -> None:
    simulator, mount = await serve()
    await inject(session, mount, {"fail_next": 1, "fail_status": fail_status})
    connector = connect(session, mount)
    prepared = connector.prepare(make_contact())

    with pytest.raises(VendorUnavailable) as caught:
        await connector.upsert(prepared, None)
    assert type(caught.value) is VendorUnavailable
    assert caught.value.transient
    assert caught.value.http_status == fail_status
    assert simulator.state.records == {}

    assert (await connector.upsert(prepared, None)).status is VendorStatus.CREATED


async def test_throttling_is_rate_limited_with_retry_after(serve: Serve, session: aiohttp.ClientSession) -> None:
    _, mount = await serve()
    await inject(session, mount, {"throttle_next": 1, "retry_after": 7})
    connector = connect(session, mount)
    with pytest.raises(RateLimited) as caught:
        await connector.upsert(connector.prepare(make_contact()), None)
    assert caught.value.retry_after == 7.0


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, b"<html>ok</html>", VendorProtocolError),
        (200, b'{"status": "ok"}', VendorProtocolError),
        (400, b'{"result": "success", "result_msg": ""}', VendorProtocolError),
        (502, b"<html>Bad Gateway</html>", VendorUnavailable),
        (500, b"", VendorUnavailable),
        (400, b'{"result": "fail", "result_msg": "Something new"}', VendorRejected),
        (500, b'{"result": "fail", "result_msg": "Something new"}', VendorUnavailable),
    ],
)
def test_answers_without_a_known_result(status: int, body: bytes, expected: type[VendorError]) -> None:
    error = offline().reply_error(VendorResponse(status, {}, body), SEED_PAYLOAD)
    assert type(error) is expected


def test_success_result_is_no_error() -> None:
    body = b'{"result" : "success", "result_msg" : ""}'
    assert offline().reply_error(VendorResponse(200, {}, body), SEED_PAYLOAD) is None


async def test_delete_is_not_supported() -> None:
    assert OneserveConnector.capabilities.native_upsert
    assert not OneserveConnector.capabilities.delete
    with pytest.raises(NotImplementedError):
        await offline().delete("C-1", link("29/C-1"))


def test_plugin_declares_oneserve() -> None:
    assert PLUGIN.vendor is Vendor.ONESERVE
    assert PLUGIN.connector is OneserveConnector
    assert isinstance(PLUGIN.simulator(), OneserveSimulator)
