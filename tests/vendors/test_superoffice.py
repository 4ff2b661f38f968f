"""SuperOffice quirks: a company card with a person, details split by kind, DbiKey reconciliation, read-modify-write
PUT with If-Unmodified-Since and 412, three auth schemes, SuperOffice's `{"Error", "ErrorType", ...}` bodies.

The generic contract (round trips, 5xx, 429, timeouts for every vendor) lives in the contract suite.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

import aiohttp
import orjson
import pytest
from multidict import CIMultiDict
from pydantic import ValidationError

from resolvers.errors import (
    AuthFailed,
    ConnectionDropped,
    RateLimited,
    VendorConflict,
    VendorError,
    VendorNotFound,
    VendorProtocolError,
    VendorRejected,
    VendorUnavailable,
)
from resolvers.model import Contact
from resolvers.results import ErrorCode, FieldError, Vendor, VendorStatus
from resolvers.simulation import Call
from resolvers.transport import Transport, VendorResponse
from resolvers.vendors.base import CURRENT_ATTEMPT, AttemptState, CrossReference, Delivered, Prepared
from resolvers.vendors.superoffice import (
    PLUGIN,
    SuperOfficeConnector,
    SuperOfficeSettings,
    SuperOfficeSimulator,
    demo_config,
)
from resolvers.vendors.superoffice.connector import auth_headers, canonical_path, if_unmodified_since
from resolvers.vendors.superoffice.mapping import from_wire, put_body, to_wire
from resolvers.vendors.superoffice.simulator import DEMO_PASSWORD, DEMO_TOKEN, DEMO_USERNAME
from resolvers.vendors.superoffice.wire import ContactEntity
from tests.vendors.kit import Served, cross_reference, simulator_server

BASE = "http://127.0.0.1:9/superoffice/"


def make_contact(**overrides: Any) -> Contact:
    """A person with an e-mail, a mobile, an office phone and a postal address; overrides replace top-level fields."""
    data: dict[str, Any] = {
        "id": "c-1",
        "title": "Ms",
        "firstName": "Ada",
        "middleName": "King",
        "lastName": "Lovelace",
        "jobTitle": "Analyst",
        "department": "Engines",
        "notes": "Prefers mornings",
        "details": [
            {"kind": "EMAIL", "value": "ada@example.com", "preferred": True},
            {"kind": "MOBILE", "value": "+44 7700 900123"},
            {"kind": "PHONE", "value": "020 7946 0000", "label": "office"},
        ],
        "address": {
            "lines": ["12 St James's Square", "St James's"],
            "city": "London",
            "region": "LDN",
            "postCode": "SW1Y 4JH",
            "country": "GB",
            "latitude": 51.5074,
            "longitude": -0.1347,
        },
    }
    data.update(overrides)
    return Contact.model_validate(data)


def settings(base_url: str = BASE, **overrides: Any) -> SuperOfficeSettings:
    return SuperOfficeSettings.model_validate({**demo_config(base_url), **overrides})


def offline(**overrides: Any) -> SuperOfficeConnector:
    """A connector for pre-flight only: `prepare` never touches the transport."""
    return SuperOfficeConnector(settings(**overrides), Transport.__new__(Transport))


def link(remote_id: str | None, contact_id: str = "c-1", payload: dict[str, Any] | None = None) -> CrossReference:
    return cross_reference(Vendor.SUPEROFFICE, remote_id, contact_id=contact_id, payload=payload)


def errors_by_field(errors: list[FieldError]) -> dict[str, FieldError]:
    return {e.field: e for e in errors}


# --- mapping -------------------------------------------------------------------------------------------------


def test_person_contact_becomes_a_company_card_with_one_person() -> None:
    mapped = to_wire(make_contact(), settings(), {})
    assert mapped.payload == {
        "Name": "Ada Lovelace",
        "Department": "Engines",
        "Description": "Prefers mornings",
        "DbiKey": "c-1",
        "Persons": [
            {
                "Firstname": "Ada",
                "MiddleName": "King",
                "Lastname": "Lovelace",
                "Mrmrs": "Ms",
                "Position": "Analyst",
                "MobilePhone": "+44 7700 900123",
            }
        ],
        "Emails": [{"Value": "ada@example.com", "StrippedValue": "ada@example.com"}],
        "Phones": [{"Value": "020 7946 0000", "StrippedValue": "02079460000", "Description": "office"}],
        "Address": {
            "Postal": {
                "AtypeIdx": "ContactPostalAddress",
                "Address1": "12 St James's Square",
                "Address2": "St James's",
                "City": "London",
                "State": "LDN",
                "Zipcode": "SW1Y 4JH",
            },
            "Wgs84Latitude": 51.5074,
            "Wgs84Longitude": -0.1347,
        },
        "Country": {"CountryId": 826, "TwoLetterISOCountry": "GB"},
    }
    assert mapped.sources["Persons[0].MobilePhone"] == "details[1].value"
    assert mapped.sources["Phones[0].Description"] == "details[2].label"
    assert mapped.errors == []
    assert mapped.warnings == []


@pytest.mark.parametrize(
    ("overrides", "name", "source"),
    [
        ({"organisation": "Analytical Engines Ltd", "displayName": "Ada L."}, "Analytical Engines Ltd", "organisation"),
        ({"displayName": "Ada L."}, "Ada L.", "displayName"),
        ({}, "Ada Lovelace", "lastName"),
        ({"lastName": None}, "Ada", "firstName"),
    ],
)
def test_name_is_organisation_else_display_name_else_first_last(
    overrides: dict[str, Any], name: str, source: str
) -> None:
    mapped = to_wire(make_contact(**overrides), settings(), {})
    assert (mapped.payload["Name"], mapped.sources["Name"]) == (name, source)


def test_a_contact_without_any_name_is_one_required_error_at_organisation() -> None:
    prepared = offline().prepare(make_contact(firstName=None, middleName=None, lastName=None, title=None))
    assert not prepared.valid
    assert [(e.field, e.code, e.vendor_field) for e in prepared.errors] == [
        ("organisation", ErrorCode.REQUIRED, "Name")
    ]


def test_every_known_limit_points_at_the_canonical_input() -> None:
    contact = make_contact(
        organisation="O" * 220,
        department="D" * 220,
        firstName="F" * 100,
        middleName="M" * 100,
        lastName="L" * 100,
        details=[
            {"kind": "PHONE", "value": "1"},
            {"kind": "EMAIL", "value": "a" * 60 + "@" + ("b" * 60 + ".") * 3 + "com"},  # 247: RFC 5321 allows 254
        ],
    )
    prepared = offline().prepare(contact)
    found = {(e.field, e.code, e.vendor_field, e.message) for e in prepared.errors}
    assert found == {
        ("organisation", ErrorCode.TOO_LONG, "Name", "at most 219 characters"),
        ("department", ErrorCode.TOO_LONG, "Department", "at most 219 characters"),
        ("firstName", ErrorCode.TOO_LONG, "Persons[0].Firstname", "at most 99 characters"),
        ("middleName", ErrorCode.TOO_LONG, "Persons[0].MiddleName", "at most 99 characters"),
        ("lastName", ErrorCode.TOO_LONG, "Persons[0].Lastname", "at most 99 characters"),
        ("details[1].value", ErrorCode.TOO_LONG, "Emails[0].Value", "at most 239 characters"),
    }
    # At the limits exactly, everything is valid.
    at_limit = make_contact(organisation="O" * 219, firstName="F" * 99, department="D" * 219)
    assert offline().prepare(at_limit).valid


@pytest.mark.parametrize(
    ("first", "last", "longer"), [("F" * 215, "Lovelace", "firstName"), ("Ada", "L" * 90 + "é" * 130, "lastName")]
)
def test_a_contact_name_too_long_names_the_longer_of_first_and_last(first: str, last: str, longer: str) -> None:
    """Without organisation or displayName the contact name is "first last": when that is over the column, the
    error names the part that made it so, not always lastName (which once answered 'lastName: at most 219
    characters' for an 8-character last name)."""
    prepared = offline().prepare(make_contact(organisation=None, firstName=first, lastName=last))
    assert ("Name", longer) in {(e.vendor_field, e.field) for e in prepared.errors}, prepared.errors
    assert all(e.field == longer for e in prepared.errors if e.vendor_field == "Name"), prepared.errors


def test_column_limits_count_as_sql_server_does() -> None:
    """nvarchar lengths are UTF-16 code units: an emoji fills two. 110 emoji are 110 characters but 220 units, over
    the Name column's 219; the message says why a value shorter than the limit is too long."""
    emoji = "\U0001f600"
    too_long = offline().prepare(make_contact(organisation=emoji * 110, firstName="é" * 99))
    assert {(e.field, e.code, e.message) for e in too_long.errors} == {
        ("organisation", ErrorCode.TOO_LONG, "at most 219 characters (an emoji counts as 2)")
    }
    assert offline().prepare(make_contact(organisation=emoji * 109 + "x", firstName="é" * 99)).valid


async def test_the_simulator_counts_column_lengths_as_sql_server_does(so: SuperOffice) -> None:
    headers = auth_headers(settings())
    body = {"Name": "\U0001f600" * 110, "DbiKey": "u-1"}
    async with so.session.post(f"{so.base_url}api/v1/Contact", json=body, headers=headers) as response:
        refused = await response.json()
    assert (response.status, refused["ErrorType"]) == (400, "ArgumentException"), refused
    assert refused["ErrorMessage"] == "Value of 'Name' is too long: 220 characters, at most 219"


async def test_length_unit_characters_counts_an_emoji_as_one(serve: Serve) -> None:
    """How SuperOffice counts a column's length is assumed (UTF-16 units, SQL Server's nvarchar): a setting.
    Counting characters, 110 emoji fit the Name column's 219, at pre-flight and at a simulator counting the same."""
    so = await serve(length_unit="characters")
    emoji = "\U0001f600"
    connector = so.connector(length_unit="characters")
    prepared = connector.prepare(make_contact(organisation=emoji * 110, firstName="é" * 99))
    assert prepared.valid, prepared.errors
    created = await connector.upsert(prepared, None)
    assert created.status is VendorStatus.CREATED
    over = connector.prepare(make_contact(organisation=emoji * 220, firstName="é" * 99))
    assert {(e.field, e.code, e.message) for e in over.errors} == {
        ("organisation", ErrorCode.TOO_LONG, "at most 219 characters")
    }
    with pytest.raises(ValidationError, match="length_unit"):
        settings(length_unit="bytes")


def test_wire_model_holds_the_column_limits_no_canonical_field_reaches() -> None:
    base = {"Name": "N", "DbiKey": "k"}
    ContactEntity.model_validate({**base, "OrgNr": "9" * 49, "Number1": "1" * 49, "Number2": "2" * 49})
    for field, value in (("OrgNr", "9" * 50), ("Number1", "1" * 50), ("Number2", "2" * 50), ("DbiKey", "k" * 256)):
        with pytest.raises(ValidationError, match=field):
            ContactEntity.model_validate({**base, field: value})
    with pytest.raises(ValidationError, match="DbiKey"):
        ContactEntity.model_validate({"Name": "N"})


def test_details_go_to_lists_by_kind_preferred_first() -> None:
    contact = make_contact(
        details=[
            {"kind": "PHONE", "value": "+47 22 00 00 01", "label": "switchboard"},
            {"kind": "MOBILE", "value": "+47 900 00 001"},
            {"kind": "PHONE", "value": "+47 22 00 00 02", "preferred": True},
            {"kind": "FAX", "value": "+47 22 00 00 09"},
            {"kind": "WEB", "value": "https://example.com", "label": "home"},
            {"kind": "MOBILE", "value": "+47 900 00 002"},
            {"kind": "OTHER", "value": "skype:ada"},
        ]
    )
    mapped = to_wire(contact, settings(), {})
    payload = mapped.payload
    assert payload["Persons"][0]["MobilePhone"] == "+47 900 00 001"
    assert [p["Value"] for p in payload["Phones"]] == ["+47 22 00 00 02", "+47 22 00 00 01", "+47 900 00 002"]
    assert payload["Phones"][1] == {
        "Value": "+47 22 00 00 01",
        "StrippedValue": "4722000001",
        "Description": "switchboard",
    }
    assert payload["Faxes"] == [{"Value": "+47 22 00 00 09", "StrippedValue": "4722000009"}]
    assert payload["Urls"] == [
        {"Value": "https://example.com", "StrippedValue": "https://example.com", "Description": "home"}
    ]
    assert "Emails" not in payload
    assert mapped.sources["Phones[0].Value"] == "details[2].value"
    assert mapped.sources["Phones[0]"] == "details[2].kind"
    assert mapped.sources["Phones"] == "details[2].preferred"
    assert mapped.warnings == [
        "details[5]: sent as a company phone (SuperOffice's person holds one mobile)",
        "details[6]: SuperOffice has no list for OTHER details, not sent",
    ]


def company_only(organisation: str, mobile: str) -> Contact:
    """A contact with no person: an organisation and a mobile, no name, title or job title."""
    return make_contact(
        organisation=organisation,
        title=None,
        firstName=None,
        middleName=None,
        lastName=None,
        jobTitle=None,
        details=[{"kind": "MOBILE", "value": mobile}],
    )


def test_mobile_without_a_person_is_a_company_phone() -> None:
    contact = company_only("Analytical Engines Ltd", "+44 7700 900123")
    mapped = to_wire(contact, settings(), {})
    assert "Persons" not in mapped.payload
    assert mapped.payload["Phones"] == [{"Value": "+44 7700 900123", "StrippedValue": "447700900123"}]


def test_without_inline_persons_the_person_is_reported_as_not_sent() -> None:
    prepared = offline(persons_inline=False).prepare(make_contact())
    assert prepared.valid
    assert "Persons" not in prepared.payload
    assert [p["Value"] for p in prepared.payload["Phones"]] == ["+44 7700 900123", "020 7946 0000"]
    for field in ("title", "middleName", "jobTitle"):
        assert f"{field}: not supported by SUPEROFFICE, not sent" in prepared.warnings
    # firstName/lastName still name the company ("first last"), so they are sent.
    assert not any(w.startswith(("firstName", "lastName")) for w in prepared.warnings)


def test_job_title_goes_to_the_person_field_the_setting_names() -> None:
    person = offline().prepare(make_contact()).payload["Persons"][0]
    assert (person.get("Position"), person.get("Title")) == ("Analyst", None)
    titled = offline(job_title_field="Title").prepare(make_contact())
    assert (titled.payload["Persons"][0].get("Position"), titled.payload["Persons"][0].get("Title")) == (
        None,
        "Analyst",
    )
    assert from_wire(titled.payload, "Title")["jobTitle"] == "Analyst"
    assert "jobTitle" not in from_wire(titled.payload)
    nowhere = offline(job_title_field="").prepare(make_contact())
    assert not {"Position", "Title"} & set(nowhere.payload["Persons"][0])
    assert "jobTitle: not supported by SUPEROFFICE, not sent" in nowhere.warnings
    # A job title alone makes no person when it is sent nowhere.
    alone = make_contact(title=None, firstName=None, middleName=None, lastName=None, organisation="Acme")
    assert "Persons" not in offline(job_title_field="").prepare(alone).payload
    assert offline().prepare(alone).payload["Persons"] == [{"Position": "Analyst", "MobilePhone": "+44 7700 900123"}]
    with pytest.raises(ValidationError, match="job_title_field"):
        settings(job_title_field="Rank")


def test_address_lines_beyond_three_join_into_address3_and_country_is_by_iso_numeric() -> None:
    contact = make_contact(address={"lines": ["Flat 2", "12 Square", "St James's", "Westminster"], "country": "NO"})
    mapped = to_wire(contact, settings(), {})
    postal = mapped.payload["Address"]["Postal"]
    assert (postal["Address1"], postal["Address2"], postal["Address3"]) == (
        "Flat 2",
        "12 Square",
        "St James's, Westminster",
    )
    assert mapped.payload["Country"] == {"CountryId": 578, "TwoLetterISOCountry": "NO"}
    assert mapped.warnings == ["address.lines[2:]: SuperOffice has 3 address lines; lines[2:] joined into Address3"]
    overridden = to_wire(contact, settings(country_ids={"NO": 47}), {})
    assert overridden.payload["Country"]["CountryId"] == 47


def test_category_and_business_from_vendor_options_over_settings() -> None:
    options = {"categoryId": 3, "businessId": 2}
    chosen = to_wire(make_contact(), settings(category_id=1, business_id=1), options)
    assert (chosen.payload["Category"], chosen.payload["Business"]) == ({"Id": 3}, {"Id": 2})
    assert chosen.sources["Category.Id"] == "vendorOptions.superoffice.categoryId"
    assert chosen.sources["Business.Id"] == "vendorOptions.superoffice.businessId"
    configured = to_wire(make_contact(), settings(category_id=1), {})
    assert configured.payload["Category"] == {"Id": 1}
    assert configured.sources["Category.Id"] == ""
    assert "Business" not in configured.payload
    assert "Category" not in to_wire(make_contact(), settings(), {}).payload


def test_bad_vendor_options_are_reported_at_their_keys() -> None:
    contact = make_contact(vendorOptions={"superoffice": {"categoryId": "three", "businessId": 0, "colour": "blue"}})
    prepared = offline().prepare(contact)
    found = {(e.field, e.code, e.vendor_field) for e in prepared.errors}
    assert found == {
        ("vendorOptions.superoffice.categoryId", ErrorCode.INVALID_FORMAT, "Category"),
        ("vendorOptions.superoffice.businessId", ErrorCode.OUT_OF_RANGE, "Business"),
        ("vendorOptions.superoffice.colour", ErrorCode.NOT_SUPPORTED, None),
    }


def test_list_item_ids_are_int32_as_superoffice_keys_are() -> None:
    # Seed 003 types SuperOffice's keys int32: a larger id cannot name a list item, and would be refused by the
    # vendor's deserialiser rather than by its rules, so pre-flight says so at the caller's key.
    top = 2**31 - 1
    contact = make_contact(vendorOptions={"superoffice": {"categoryId": top + 1, "businessId": top}})
    prepared = offline().prepare(contact)
    found = {(e.field, e.code, e.vendor_field) for e in prepared.errors}
    assert found == {("vendorOptions.superoffice.categoryId", ErrorCode.OUT_OF_RANGE, "Category")}
    with pytest.raises(ValidationError, match="category_id"):
        settings(category_id=top + 1)
    with pytest.raises(ValidationError, match="country_ids"):
        settings(country_ids={"NO": top + 1})


def test_fields_superoffice_has_no_place_for_are_warned() -> None:
    contact = make_contact(salutation="Dear Ada", birthDate="1815-12-10", locations=[{"ref": "L1"}])
    warnings = offline().prepare(contact).warnings
    assert warnings == [
        "salutation: not supported by SUPEROFFICE, not sent",
        "birthDate: not supported by SUPEROFFICE, not sent",
        "locations: not supported by SUPEROFFICE, not sent",
    ]


def test_round_trip_through_the_wire() -> None:
    contact = make_contact(
        organisation="Analytical Engines Ltd",
        details=[
            {"kind": "EMAIL", "value": "ada@example.com", "label": "work"},
            {"kind": "MOBILE", "value": "+44 7700 900123"},
            {"kind": "PHONE", "value": "020 7946 0000", "label": "office"},
            {"kind": "FAX", "value": "020 7946 0001"},
            {"kind": "WEB", "value": "https://example.com"},
        ],
    )
    back = from_wire(to_wire(contact, settings(), {}).payload)
    assert back == contact.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    # A name made from the person comes back as nothing more than the person.
    assert "organisation" not in from_wire(to_wire(make_contact(), settings(), {}).payload)


def test_put_body_replaces_what_the_gateway_owns_and_keeps_the_rest() -> None:
    persons: list[dict[str, Any]] = [
        {"PersonId": 11, "Firstname": "Charles", "Lastname": "Babbage", "Email": "cb@example.com"},
        {"PersonId": 12, "Firstname": "Ada", "Lastname": "Byron", "Email": "ab@example.com", "Rank": 2},
    ]
    current: dict[str, Any] = {
        "ContactId": 7,
        "Name": "Old name",
        "Department": "Old department",
        "Emails": [{"Value": "old@example.com"}],
        "Associate": {"AssociateId": 5},
        "Category": {"Id": 2},
        "Country": {"CountryId": 578},
        "Persons": persons,
        "TableRight": {"Mask": "Delete"},
        "_Links": {"Self": "x"},
    }
    payload = to_wire(make_contact(department=None), settings(), {}).payload
    previous = {"Persons": [{"Firstname": "Ada", "Lastname": "Byron"}]}
    body, index = put_body(current, payload, previous)
    assert index == 1
    assert body["Name"] == "Ada Lovelace"
    assert body["Department"] == ""  # owned, and cleared
    assert body["Emails"] == payload["Emails"]
    assert body["Associate"] == {"AssociateId": 5}
    assert body["Category"] == {"Id": 2}  # nobody chose one: SuperOffice's stays
    assert body["Country"] == payload["Country"]
    assert body["Persons"][0] == persons[0]
    assert body["Persons"][1] == {
        "PersonId": 12,
        "Firstname": "Ada",
        "MiddleName": "King",
        "Lastname": "Lovelace",
        "Mrmrs": "Ms",
        "Position": "Analyst",
        "MobilePhone": "+44 7700 900123",
        "Email": "ab@example.com",
        "Rank": 2,
    }
    assert "TableRight" not in body and "_Links" not in body

    unknown, appended = put_body(current, payload, None)
    assert appended == 2, "among several persons only a name match is the gateway's"
    assert "PersonId" not in unknown["Persons"][2]

    alone = {**current, "Persons": [persons[0]]}
    renamed, only = put_body(alone, payload, None)
    assert only == 0, "a lone person on the card is the gateway's, whatever its name was"
    assert (renamed["Persons"][0]["PersonId"], renamed["Persons"][0]["Lastname"]) == (11, "Lovelace")
    assert len(renamed["Persons"]) == 1


def test_canonical_path_translates_the_gateways_person_index() -> None:
    sources = to_wire(make_contact(vendorOptions={}), settings(), {"categoryId": 2}).sources
    assert canonical_path("Persons[1].Firstname", sources, person_index=1) == "firstName"
    assert canonical_path("Persons[0].Firstname", sources, person_index=1) == ""
    assert canonical_path("Category", sources) == "vendorOptions.superoffice.categoryId"
    assert canonical_path("Country", sources) == "address.country"
    assert canonical_path("Emails[0].Value", sources) == "details[0].value"
    assert canonical_path("Associate", sources) == ""


def test_settings_require_the_secrets_of_the_chosen_scheme() -> None:
    with pytest.raises(ValidationError) as caught:
        SuperOfficeSettings.model_validate({"base_url": BASE, "ticket": "t"})
    assert [(e["loc"], e["msg"]) for e in caught.value.errors()] == [
        (("app_token",), "Value error, required when auth = 'soticket'")
    ]
    with pytest.raises(ValidationError) as caught:
        SuperOfficeSettings.model_validate({"base_url": BASE, "auth": "bearer", "token": ""})
    assert [e["loc"] for e in caught.value.errors()] == [("token",)]
    with pytest.raises(ValidationError) as caught:
        SuperOfficeSettings.model_validate({"base_url": BASE, "auth": "basic", "username": "u"})
    assert [e["loc"] for e in caught.value.errors()] == [("password",)]
    with pytest.raises(ValidationError, match="auth"):
        SuperOfficeSettings.model_validate({"base_url": BASE, "auth": "oauth"})
    with pytest.raises(ValidationError, match="alpha-2"):
        settings(country_ids={"NOR": 578})
    assert settings(lookup_path="/api/v1/Contact/").lookup_path == "api/v1/Contact"


def test_auth_headers_per_scheme() -> None:
    assert auth_headers(settings()) == {
        "Accept": "application/json",
        "SO-AppToken": demo_config(BASE)["app_token"],
        "Authorization": f"SOTicket {demo_config(BASE)['ticket']}",
    }
    bearer = SuperOfficeSettings.model_validate({"base_url": BASE, "auth": "bearer", "token": "tok"})
    assert auth_headers(bearer) == {"Accept": "application/json", "Authorization": "Bearer tok"}
    basic = SuperOfficeSettings.model_validate({"base_url": BASE, "auth": "basic", "username": "u", "password": "p"})
    assert auth_headers(basic)["Authorization"] == "Basic " + base64.b64encode(b"u:p").decode()


def test_if_unmodified_since_is_an_http_date_in_whole_seconds() -> None:
    assert if_unmodified_since("2024-10-29T14:28:26.8364487+01:00") == "Tue, 29 Oct 2024 13:28:26 GMT"
    assert if_unmodified_since("2024-10-29T14:28:26") == "Tue, 29 Oct 2024 14:28:26 GMT"
    assert if_unmodified_since("yesterday") is None
    assert if_unmodified_since(None) is None


def so_response(status: int, body: Any, headers: Mapping[str, str] | None = None) -> VendorResponse:
    return VendorResponse(status=status, headers=CIMultiDict(headers or {}), body=orjson.dumps(body))


@pytest.mark.parametrize(
    ("status", "error_type", "expected", "code"),
    [
        (401, "UnauthorizedAccessException", AuthFailed, ErrorCode.AUTH_FAILED),
        (400, "SoSecurityException", AuthFailed, ErrorCode.AUTH_FAILED),
        (404, "SoNotFoundException", VendorNotFound, ErrorCode.NOT_FOUND),
        (400, "SoNotFoundException", VendorRejected, ErrorCode.VENDOR_REJECTED),
        (400, "ArgumentException", VendorRejected, ErrorCode.VENDOR_REJECTED),
        (409, "SoConflictException", VendorConflict, ErrorCode.CONFLICT),
        (429, "TooManyRequests", RateLimited, ErrorCode.RATE_LIMITED),
        (500, "SoServerException", VendorUnavailable, ErrorCode.VENDOR_ERROR),
    ],
)
def test_error_bodies_map_to_the_taxonomy(
    status: int, error_type: str, expected: type[VendorError], code: ErrorCode
) -> None:
    body = {"Error": True, "ErrorType": error_type, "ErrorMessage": "it went wrong", "ErrorSource": "NetServer"}
    error = offline()._error(so_response(status, body, {"Retry-After": "3"}))
    assert type(error) is expected
    assert (error.code, error.http_status, error.vendor_code, error.message) == (
        code,
        status,
        error_type,
        "it went wrong",
    )
    if expected is RateLimited:
        assert error.retry_after == 3


def test_a_field_named_in_the_message_becomes_a_field_error() -> None:
    prepared = offline().prepare(make_contact(vendorOptions={"superoffice": {"categoryId": 3}}))
    assert prepared.sources
    sources = prepared.sources
    body = {"Error": True, "ErrorType": "SoNotFoundException", "ErrorMessage": "No list item 3 for 'Category'"}
    error = offline()._error(so_response(400, body), sources)
    assert error.field_errors == [
        FieldError(
            field="vendorOptions.superoffice.categoryId",
            code=ErrorCode.NOT_FOUND,
            message="No list item 3 for 'Category'",
            vendor_field="Category",
            vendor_code="SoNotFoundException",
        )
    ]
    plain = offline()._error(so_response(400, "<html>Bad Request</html>"))
    assert type(plain) is VendorRejected
    assert plain.field_errors == []
    assert plain.message == 'SuperOffice answered HTTP 400: "<html>Bad Request</html>"'


# --- connector against the simulator, over a real socket -----------------------------------------------------


@dataclass
class SuperOffice(Served):
    """One running simulator and a way to build connectors pointed at it."""

    simulator: SuperOfficeSimulator

    def connector(self, transport: Transport | None = None, **overrides: Any) -> SuperOfficeConnector:
        return SuperOfficeConnector(settings(self.base_url, **overrides), transport or Transport(self.session))

    def calls(self) -> list[tuple[str, str, int]]:
        return [(c.method, c.path.split("?")[0].removeprefix("/superoffice/"), c.outcome) for c in self.state_calls]

    @property
    def state_calls(self) -> list[Call]:
        return self.simulator.state.calls

    async def admin(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        async with self.session.post(f"{self.base_url}_admin/{path}", json=body) as response:
            assert response.status == 200, await response.text()
            answer: dict[str, Any] = await response.json()
            return answer


Serve = Callable[..., Awaitable[SuperOffice]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    async with aiohttp.ClientSession() as session, simulator_server() as serve_one:

        async def start(**simulator_args: Any) -> SuperOffice:
            simulator = SuperOfficeSimulator(**simulator_args)
            return SuperOffice(simulator, await serve_one(simulator), session)

        yield start


@pytest.fixture
async def so(serve: Serve) -> SuperOffice:
    return await serve()


async def send(connector: SuperOfficeConnector, contact: Contact, previous: CrossReference | None = None) -> Delivered:
    prepared = connector.prepare(contact)
    assert prepared.valid, prepared.errors
    return await connector.upsert(prepared, previous)


def altered(prepared: Prepared, **changes: Any) -> Prepared:
    """The prepared contact with wire fields changed after pre-flight: to see what SuperOffice itself enforces."""
    return dataclasses.replace(prepared, payload={**prepared.payload, **changes})


async def test_create_then_update_keeps_one_record(so: SuperOffice) -> None:
    connector = so.connector()
    created = await send(connector, make_contact())
    assert created.status is VendorStatus.CREATED
    assert created.remote_id in so.records
    record = so.records[str(created.remote_id)]
    assert record["DbiKey"] == "c-1"
    assert record["Persons"][0]["MobilePhone"] == "+44 7700 900123"
    person_id = record["Persons"][0]["PersonId"]

    updated = await send(connector, make_contact(lastName="King-Noel"), link(created.remote_id))
    assert (updated.status, updated.remote_id, updated.matched_by) == (VendorStatus.UPDATED, created.remote_id, None)
    assert list(so.records) == [created.remote_id]
    record = so.records[str(created.remote_id)]
    assert record["Name"] == "Ada King-Noel"
    assert record["Persons"][0]["Lastname"] == "King-Noel"
    assert record["Persons"][0]["PersonId"] == person_id, "the same person is updated, not a second one added"
    assert so.simulator.state.counters == {"lookups": 1, "creates": 1, "updates": 1}
    assert so.calls() == [
        ("GET", "api/v1/Contact", 200),
        ("POST", "api/v1/Contact", 200),
        ("GET", f"api/v1/Contact/{created.remote_id}", 200),
        ("PUT", f"api/v1/Contact/{created.remote_id}", 200),
    ]
    lookup, put = so.state_calls[0], so.state_calls[3]
    assert lookup.query == {"$select": "contactId,dbiKey", "$filter": "dbiKey eq 'c-1'", "$top": "50"}
    assert "If-Unmodified-Since" in put.headers


async def test_update_keeps_what_superoffice_users_own(so: SuperOffice) -> None:
    connector = so.connector()
    created = await send(connector, make_contact())
    record = so.records[str(created.remote_id)]
    # Edited at SuperOffice: an owner, a category, interests and a second person.
    record["Associate"] = {"AssociateId": 5, "Name": "ANNE"}
    record["Category"] = {"Id": 2, "Value": "Category 2", "Tooltip": ""}
    record["Interests"] = [{"Id": 3, "Selected": True}]
    record["Persons"].insert(0, {"PersonId": 77, "ContactId": record["ContactId"], "Firstname": "Charles"})
    sent = connector.prepare(make_contact()).payload
    await send(connector, make_contact(jobTitle="Countess"), link(created.remote_id, payload=sent))
    record = so.records[str(created.remote_id)]
    assert record["Associate"] == {"AssociateId": 5, "Name": "ANNE"}
    assert record["Category"]["Id"] == 2
    assert record["Interests"] == [{"Id": 3, "Selected": True}]
    assert [(p["PersonId"], p["Position"]) for p in record["Persons"]] == [(77, ""), (1000, "Countess")]


async def test_an_update_replaces_the_job_title_field_and_leaves_the_other_to_superoffice(so: SuperOffice) -> None:
    connector = so.connector(job_title_field="Title")
    created = await send(connector, make_contact())
    record = so.records[str(created.remote_id)]
    assert (record["Persons"][0]["Title"], record["Persons"][0]["Position"]) == ("Analyst", "")
    record["Persons"][0]["Position"] = "Head of Engines"  # a list item chosen at SuperOffice
    sent = connector.prepare(make_contact()).payload
    await send(connector, make_contact(jobTitle="Countess"), link(created.remote_id, payload=sent))
    person = so.records[str(created.remote_id)]["Persons"][0]
    assert (person["Title"], person["Position"]) == ("Countess", "Head of Engines")


async def test_a_removed_country_stays_at_superoffice_with_a_warning(so: SuperOffice) -> None:
    """A SuperOffice contact always has a country: one removed from the contact cannot be cleared there. The old one
    stays, and the answer says so instead of reporting a plain UPDATED."""
    connector = so.connector()
    first = make_contact()
    created = await send(connector, first)
    sent = connector.prepare(first).payload
    assert sent["Country"]["TwoLetterISOCountry"] == "GB"
    updated = await send(connector, make_contact(address=None), link(created.remote_id, payload=sent))
    assert updated.status is VendorStatus.UPDATED
    assert updated.warnings == (
        "address.country: removed, but a SuperOffice contact always has a country; the one sent before stays",
    )
    assert so.records[str(created.remote_id)]["Country"]["CountryId"] == 826
    again = await send(connector, make_contact(address=None), link(created.remote_id, payload=dict(sent, Country=None)))
    assert again.warnings == ()


async def test_a_contact_left_without_a_person_has_the_gateways_person_removed(so: SuperOffice) -> None:
    """PUT replaces the whole entity and the gateway's person is the gateway's to clear: a contact whose name, title,
    job title and mobile are all removed must not leave Ada (with the old mobile) on the card. Another person on
    the card stays."""
    connector = so.connector()
    first = make_contact(organisation="Acme Ltd")
    created = await send(connector, first)
    record = so.records[str(created.remote_id)]
    record["Persons"].append({"PersonId": 77, "ContactId": record["ContactId"], "Firstname": "Charles"})
    sent = connector.prepare(first).payload
    company = company_only("Acme Ltd", "+44 7700 900999")
    updated = await send(connector, company, link(created.remote_id, payload=sent))
    assert updated.status is VendorStatus.UPDATED
    record = so.records[str(created.remote_id)]
    assert [(p["PersonId"], p["Firstname"]) for p in record["Persons"]] == [(77, "Charles")]
    assert [p["Value"] for p in record["Phones"]] == ["+44 7700 900999"]

    # Without the last payload sent the gateway cannot tell its person from others: nothing is removed.
    record["Persons"].append({"PersonId": 78, "ContactId": record["ContactId"], "Firstname": "Ada"})
    await send(connector, company, link(created.remote_id))
    assert [p["PersonId"] for p in so.records[str(created.remote_id)]["Persons"]] == [77, 78]


async def test_a_person_added_at_superoffice_is_not_taken_for_the_gateways_first_person(so: SuperOffice) -> None:
    """The gateway wrote a company without a person; a SuperOffice user added Bob. When the contact gains a name,
    the gateway's person is added beside Bob: Bob is not renamed (the last payload shows the gateway had none)."""
    connector = so.connector()
    first = company_only("Acme Ltd", "+44 7700 900999")
    created = await send(connector, first)
    record = so.records[str(created.remote_id)]
    assert record["Persons"] == []
    record["Persons"].append({"PersonId": 77, "ContactId": record["ContactId"], "Firstname": "Bob", "Email": "b@x.co"})
    sent = connector.prepare(first).payload
    await send(connector, make_contact(organisation="Acme Ltd"), link(created.remote_id, payload=sent))
    persons = so.records[str(created.remote_id)]["Persons"]
    assert (persons[0]["PersonId"], persons[0]["Firstname"], persons[0].get("Email")) == (77, "Bob", "b@x.co")
    assert [p["Firstname"] for p in persons] == ["Bob", "Ada"]

    # When the gateway had a person, a lone person under another name is still its own (renamed at SuperOffice).
    renamed = await send(connector, make_contact(id="c-2", organisation="Other Ltd"))
    record = so.records[str(renamed.remote_id)]
    record["Persons"][0]["Firstname"] = "Adele"
    sent = connector.prepare(make_contact(id="c-2", organisation="Other Ltd")).payload
    await send(
        connector,
        make_contact(id="c-2", organisation="Other Ltd", firstName="Augusta"),
        link(renamed.remote_id, payload=sent),
    )
    assert [p["Firstname"] for p in so.records[str(renamed.remote_id)]["Persons"]] == ["Augusta"]


async def test_an_update_keeps_the_street_address_superoffice_users_own(so: SuperOffice) -> None:
    """The gateway writes the postal address and the coordinates; the street address is the vendor's, and a PUT
    (which replaces the whole entity) sends it back as read, also when the contact's address is removed."""
    connector = so.connector()
    created = await send(connector, make_contact())
    record = so.records[str(created.remote_id)]
    street = {"AtypeIdx": "Street", "Address1": "Storgata 1", "City": "Oslo"}
    record["Address"]["Street"] = dict(street)
    sent = connector.prepare(make_contact()).payload
    moved = make_contact(address={"lines": ["PO Box 1"], "city": "Bath", "country": "GB"})
    await send(connector, moved, link(created.remote_id, payload=sent))
    address = so.records[str(created.remote_id)]["Address"]
    assert address["Street"] == street
    assert (address["Postal"]["Address1"], address["Postal"]["City"]) == ("PO Box 1", "Bath")
    assert address.get("Wgs84Latitude") in (None, 0, 0.0)
    await send(connector, make_contact(address=None), link(created.remote_id, payload=connector.prepare(moved).payload))
    address = so.records[str(created.remote_id)]["Address"]
    assert address["Street"] == street and not (address.get("Postal") or {}).get("Address1")


async def test_a_record_marked_deleted_is_never_written_to(so: SuperOffice) -> None:
    """Seed 003: a nonzero `Deleted` means the contact "should generally not be shown". An update through the link
    and a lookup by DbiKey both pass it by (with a warning) and write a new record; a repeat adopts that one."""
    connector = so.connector()
    created = await send(connector, make_contact())
    so.records[str(created.remote_id)]["Deleted"] = 1
    before = copy.deepcopy(so.records[str(created.remote_id)])
    again = await send(connector, make_contact(notes="after"), link(created.remote_id))
    assert (again.status, again.remote_id != created.remote_id) == (VendorStatus.CREATED, True)
    assert again.warnings[0] == (
        f"SuperOffice contact {created.remote_id} was gone (marked Deleted at SuperOffice); "
        "looked it up by DbiKey, else created a new one"
    )
    assert f"SuperOffice contact {created.remote_id} has DbiKey 'c-1' but was marked Deleted" in again.warnings[1]
    assert so.records[str(created.remote_id)] == before
    # A lost answer's repeat looks the DbiKey up: the deleted record comes first and is passed by again.
    repeat = await send(connector, make_contact(notes="after"))
    assert (repeat.status, repeat.remote_id, repeat.matched_by) == (VendorStatus.UPDATED, again.remote_id, "DbiKey")
    assert so.records[str(created.remote_id)] == before
    assert len(so.records) == 2


@pytest.mark.parametrize(
    ("overrides", "authorization"),
    [
        ({}, "SOTicket "),
        ({"auth": "bearer", "token": DEMO_TOKEN}, f"Bearer {DEMO_TOKEN}"),
        (
            {"auth": "basic", "username": DEMO_USERNAME, "password": DEMO_PASSWORD},
            "Basic " + base64.b64encode(f"{DEMO_USERNAME}:{DEMO_PASSWORD}".encode()).decode(),
        ),
    ],
    ids=["soticket", "bearer", "basic"],
)
async def test_each_auth_scheme_is_accepted_without_any_login_call(
    so: SuperOffice, overrides: dict[str, Any], authorization: str
) -> None:
    connector = so.connector(**overrides)
    contacts = [make_contact(id=f"c-{i}") for i in range(4)]
    results = await asyncio.gather(*(send(connector, c) for c in contacts))
    assert [r.status for r in results] == [VendorStatus.CREATED] * 4
    assert len(so.records) == 4
    assert {c.headers["Authorization"][: len(authorization)] for c in so.state_calls} == {authorization}
    assert {c.path.split("?")[0] for c in so.state_calls} == {"/superoffice/api/v1/Contact"}


@pytest.mark.parametrize(
    "overrides",
    [PLUGIN.bad_credentials, {"app_token": "someone-elses-app"}, {"auth": "bearer", "token": "expired-token"}],
    ids=["ticket", "app-token", "bearer"],
)
async def test_refused_credentials_are_auth_failed(so: SuperOffice, overrides: dict[str, Any]) -> None:
    with pytest.raises(AuthFailed) as caught:
        await send(so.connector(**overrides), make_contact())
    assert caught.value.http_status == 401
    assert caught.value.vendor_code == "UnauthorizedAccessException"
    assert caught.value.message
    assert so.records == {}
    assert len(so.state_calls) == 1, "static credentials: no second attempt with the same refused secret"


async def test_lost_create_answer_then_retry_without_link_adopts(so: SuperOffice) -> None:
    connector = so.connector()
    prepared = connector.prepare(make_contact())
    assert connector.reconciles(prepared)
    await so.admin("faults", {"drop_after_next_write": 1})
    with pytest.raises(ConnectionDropped):
        await connector.upsert(prepared, None)
    assert len(so.records) == 1, "SuperOffice made the record; only the answer was lost"

    again = await connector.upsert(prepared, None)
    assert (again.status, again.matched_by) == (VendorStatus.UPDATED, "DbiKey")
    assert again.remote_id in so.records
    assert len(so.records) == 1
    assert so.simulator.state.counters["creates"] == 1
    assert [c.outcome for c in so.state_calls if c.method == "POST"] == [-2]


@pytest.mark.parametrize("column", ["dbiKey", "x_gateway_key"])
async def test_missing_link_is_reconciled_by_dbi_key(serve: Serve, column: str) -> None:
    so = await serve(dbi_key_column=column)
    connector = so.connector(dbi_key_column=column)
    await send(connector, make_contact(id="other"))
    created = await send(connector, make_contact())
    adopted = await send(connector, make_contact(department="Difference Engines"))  # the store lost the link
    assert (adopted.status, adopted.remote_id, adopted.matched_by) == (
        VendorStatus.UPDATED,
        created.remote_id,
        "DbiKey",
    )
    assert so.records[str(created.remote_id)]["Department"] == "Difference Engines"
    assert len(so.records) == 2


async def marked_deleted(connector: SuperOfficeConnector, so: SuperOffice, count: int) -> list[str]:
    """`count` records with DbiKey c-1, each marked Deleted (a search lists them; nothing may write to them)."""
    ids = []
    for _ in range(count):
        made = await connector.upsert(connector.prepare(make_contact()), link(None))
        assert made.status is VendorStatus.CREATED  # the ones before are marked Deleted: passed by
        so.records[str(made.remote_id)]["Deleted"] = 1
        ids.append(str(made.remote_id))
    return ids


@pytest.mark.parametrize(("top", "findable"), [(2, False), (3, True)])
async def test_a_create_after_a_search_that_filled_lookup_top_is_not_repeated(
    so: SuperOffice, top: int, findable: bool
) -> None:
    """A search answering `lookup_top` rows may have left this contact's record out (records marked Deleted, or
    DbiKeys differing only in case, fill it): the create after it is one a repeat might not find, so the engine
    reports its lost answer as possibly written instead of repeating it into a second record."""
    connector = so.connector(lookup_top=top)
    await marked_deleted(connector, so, 2)
    state = AttemptState()
    token = CURRENT_ATTEMPT.set(state)
    try:
        created = await send(connector, make_contact())
    finally:
        CURRENT_ATTEMPT.reset(token)
    assert created.status is VendorStatus.CREATED
    assert state.unfindable_create is (not findable)


async def test_a_delete_by_dbi_key_deletes_every_record_with_it(so: SuperOffice) -> None:
    """Without a remote id a delete looks the DbiKey up: a record marked Deleted listed first must not be the only
    one deleted while the live one stays."""
    connector = so.connector()
    (dead,) = await marked_deleted(connector, so, 1)
    live = await send(connector, make_contact())
    assert live.status is VendorStatus.CREATED
    deleted = await connector.delete("c-1", None)
    assert (deleted.status, deleted.matched_by) == (VendorStatus.DELETED, "DbiKey")
    assert str(live.remote_id) not in so.records and dead not in so.records
    assert deleted.warnings == (
        f"several SuperOffice contacts had DbiKey 'c-1' ([{dead}, {live.remote_id}]); deleted ['{dead}', "
        f"'{live.remote_id}']",
    )


async def test_lookup_only_adopts_an_exact_dbi_key(so: SuperOffice) -> None:
    connector = so.connector()
    lower = await send(connector, make_contact(id="c-1"))
    upper = await send(connector, make_contact(id="C-1"))  # the search ignores case; the ids differ
    assert upper.status is VendorStatus.CREATED
    assert upper.remote_id != lower.remote_id
    assert sorted(r["DbiKey"] for r in so.records.values()) == ["C-1", "c-1"]


async def test_several_records_with_the_dbi_key_adopt_the_lowest_with_a_warning(so: SuperOffice) -> None:
    connector = so.connector()
    first = await send(connector, make_contact())
    second = await connector.upsert(connector.prepare(make_contact()), link(None))
    assert second.matched_by == "DbiKey"
    so.records["999"] = {**so.records[str(first.remote_id)], "ContactId": 999}
    adopted = await send(connector, make_contact())
    assert adopted.remote_id == first.remote_id
    assert adopted.warnings == (
        f"several SuperOffice contacts have DbiKey 'c-1' ([{first.remote_id}, 999]); adopted {first.remote_id}",
    )


async def test_search_rows_without_the_dbi_key_column_are_a_protocol_error_not_a_match() -> None:
    """The archive's `eq` ignores case; only the column tells 'abc-1' from 'ABC-1'. An answer without it (the
    column named otherwise, as by a wrong `dbi_key_column`) must not adopt the hit: it may be another contact's.
    The simulator always echoes the selected column, so the answer is given by a stand-in transport."""

    class Archive:
        async def request(self, method: str, url: str, **kwargs: Any) -> VendorResponse:
            return so_response(200, {"value": [{"PrimaryKey": 7, "contactId": 7, "DbiKey": "ABC-1"}]})

    connector = SuperOfficeConnector(settings(), cast(Transport, Archive()))
    with pytest.raises(VendorProtocolError, match="without the 'dbiKey' column"):
        await connector.upsert(connector.prepare(make_contact(id="abc-1")), None)


async def test_a_wrong_lookup_path_fails_instead_of_creating(so: SuperOffice) -> None:
    with pytest.raises(VendorNotFound):
        await send(so.connector(lookup_path="api/v1/NoSuchArchive"), make_contact())
    assert so.records == {}


async def test_update_of_a_record_deleted_at_superoffice_creates_it_anew(so: SuperOffice) -> None:
    connector = so.connector()
    created = await send(connector, make_contact())
    del so.records[str(created.remote_id)]
    again = await send(connector, make_contact(), link(created.remote_id))
    assert again.status is VendorStatus.CREATED
    assert again.remote_id != created.remote_id
    assert list(so.records) == [again.remote_id]
    assert again.warnings == (
        f"SuperOffice contact {created.remote_id} was gone (deleted at SuperOffice); "
        "looked it up by DbiKey, else created a new one",
    )


async def test_update_of_a_merged_away_record_adopts_the_one_with_the_dbi_key(so: SuperOffice) -> None:
    connector = so.connector()
    created = await send(connector, make_contact())
    again = await send(connector, make_contact(), link("4242"))
    assert (again.status, again.remote_id, again.matched_by) == (VendorStatus.UPDATED, created.remote_id, "DbiKey")
    assert "4242 was gone" in again.warnings[0]


async def test_412_rereads_and_retries_once(so: SuperOffice) -> None:
    connector = so.connector()
    created = await send(connector, make_contact())
    remote = str(created.remote_id)
    touched = await so.admin(f"touch/{remote}", {"races": 1})
    assert touched["ContactId"] == int(remote)
    updated = await send(connector, make_contact(department="Difference Engines"), link(remote))
    assert updated.status is VendorStatus.UPDATED
    assert so.records[remote]["Department"] == "Difference Engines"
    assert so.calls()[-4:] == [
        ("GET", f"api/v1/Contact/{remote}", 200),
        ("PUT", f"api/v1/Contact/{remote}", 412),
        ("GET", f"api/v1/Contact/{remote}", 200),
        ("PUT", f"api/v1/Contact/{remote}", 200),
    ]
    first_put, second_put = (c for c in so.state_calls if c.method == "PUT")
    assert first_put.headers["If-Unmodified-Since"] != second_put.headers["If-Unmodified-Since"]


async def test_412_twice_is_a_conflict_and_changes_nothing(so: SuperOffice) -> None:
    connector = so.connector()
    created = await send(connector, make_contact())
    remote = str(created.remote_id)
    so.simulator.touch(remote, races=2)
    with pytest.raises(VendorConflict) as caught:
        await send(connector, make_contact(department="Difference Engines"), link(remote))
    assert caught.value.http_status == 412
    assert caught.value.vendor_code == "PreconditionFailed"
    assert so.records[remote]["Department"] == "Engines"
    assert so.simulator.state.counters["conflicts"] == 2


async def test_put_with_an_older_if_unmodified_since_is_refused(so: SuperOffice) -> None:
    created = await send(so.connector(), make_contact())
    remote = str(created.remote_id)
    stale = if_unmodified_since(so.records[remote]["UpdatedDate"])
    so.simulator.touch(remote)
    headers = {**auth_headers(settings()), "If-Unmodified-Since": str(stale)}
    async with so.session.put(
        f"{so.base_url}api/v1/Contact/{remote}", json=so.records[remote], headers=headers
    ) as response:
        assert response.status == 412
        assert (await response.json())["ErrorType"] == "PreconditionFailed"


async def test_delete_by_link_then_nothing_left(so: SuperOffice) -> None:
    connector = so.connector()
    created = await send(connector, make_contact())
    deleted = await connector.delete("c-1", link(created.remote_id))
    assert (deleted.status, deleted.remote_id, deleted.http_status) == (VendorStatus.DELETED, created.remote_id, 204)
    assert so.records == {}
    assert so.simulator.state.counters["deletes"] == 1
    gone = await connector.delete("c-1", link(created.remote_id))
    assert (gone.status, gone.remote_id) == (VendorStatus.SKIPPED, None)
    assert "already gone" in gone.warnings[0]
    nothing = await connector.delete("c-1", None)
    assert nothing.status is VendorStatus.SKIPPED
    assert nothing.warnings == ("no SuperOffice contact has DbiKey 'c-1': nothing to delete",)


async def test_delete_without_link_finds_the_record_by_dbi_key(so: SuperOffice) -> None:
    connector = so.connector()
    created = await send(connector, make_contact())
    deleted = await connector.delete("c-1", None)
    assert (deleted.status, deleted.remote_id, deleted.matched_by) == (
        VendorStatus.DELETED,
        created.remote_id,
        "DbiKey",
    )
    assert so.records == {}


async def test_unknown_category_from_vendor_options_is_a_field_error(so: SuperOffice) -> None:
    connector = so.connector()
    prepared = connector.prepare(make_contact(vendorOptions={"superoffice": PLUGIN.rejecting_options}))
    assert prepared.valid  # well-formed: only SuperOffice knows the list item does not exist
    with pytest.raises(VendorRejected) as caught:
        await connector.upsert(prepared, None)
    assert caught.value.http_status == 400
    assert caught.value.field_errors == [
        FieldError(
            field="vendorOptions.superoffice.categoryId",
            code=ErrorCode.VENDOR_REJECTED,
            message="Unknown list item 999999 for 'Category'",
            vendor_field="Category",
            vendor_code="ArgumentException",
        )
    ]
    assert so.records == {}


async def test_superoffice_enforces_its_own_limits_and_lists(serve: Serve) -> None:
    so = await serve(countries={578: ("NO", "Norway")})
    connector = so.connector()
    prepared = connector.prepare(make_contact())
    assert prepared.sources
    with pytest.raises(VendorRejected) as caught:
        await connector.upsert(prepared, None)
    assert [(e.field, e.vendor_field) for e in caught.value.field_errors] == [("address.country", "Country")]
    assert caught.value.message == "Unknown country 826 for 'Country'"

    long_email = [{"Value": "a" * 240 + "@example.com"}]
    with pytest.raises(VendorRejected) as caught:
        await connector.upsert(altered(prepared, Country=None, Emails=long_email), None)
    assert [(e.field, e.vendor_field) for e in caught.value.field_errors] == [("details[0].value", "Emails[0].Value")]
    assert so.records == {}


async def test_a_put_error_on_the_gateways_person_maps_back_through_its_index(so: SuperOffice) -> None:
    connector = so.connector()
    created = await send(connector, make_contact())
    record = so.records[str(created.remote_id)]
    record["Persons"].insert(0, {"PersonId": 77, "ContactId": record["ContactId"], "Firstname": "Charles"})
    prepared = connector.prepare(make_contact())
    persons = [{**prepared.payload["Persons"][0], "Firstname": "A" * 100}]
    with pytest.raises(VendorRejected) as caught:
        await connector.upsert(altered(prepared, Persons=persons), link(created.remote_id, payload=prepared.payload))
    assert [(e.field, e.vendor_field) for e in caught.value.field_errors] == [("firstName", "Persons[1].Firstname")]


async def test_not_found_body_is_vendor_not_found(so: SuperOffice) -> None:
    async with so.session.get(f"{so.base_url}api/v1/Contact/5", headers=auth_headers(settings())) as response:
        assert response.status == 404
        assert (await response.json())["ErrorType"] == "SoNotFoundException"


async def test_injected_503_is_vendor_unavailable(so: SuperOffice) -> None:
    await so.admin("faults", {"fail_next": 1, "fail_status": 503})
    with pytest.raises(VendorUnavailable) as caught:
        await send(so.connector(), make_contact())
    assert type(caught.value) is VendorUnavailable
    assert (caught.value.http_status, caught.value.vendor_code) == (503, "ServiceUnavailable")
    assert so.records == {}


async def test_throttled_call_is_rate_limited_with_retry_after(so: SuperOffice) -> None:
    created = await send(so.connector(), make_contact())
    await so.admin("faults", {"throttle_next": 1, "retry_after": 7})
    with pytest.raises(RateLimited) as caught:
        await send(so.connector(), make_contact(), link(created.remote_id))
    assert (caught.value.retry_after, caught.value.http_status) == (7, 429)


async def test_simulator_refuses_other_methods_and_content_types(so: SuperOffice) -> None:
    headers = auth_headers(settings())
    async with so.session.post(f"{so.base_url}api/v1/Contact/1", json={}, headers=headers) as response:
        assert (response.status, response.headers["Allow"]) == (405, "GET, PUT, PATCH, DELETE")
    async with so.session.post(f"{so.base_url}api/v1/Contact", data="Name=x", headers=headers) as response:
        assert response.status == 415
    async with so.session.post(f"{so.base_url}api/v1/Contact", json=[], headers=headers) as response:
        assert (response.status, (await response.json())["ErrorType"]) == (400, "SerializationException")


async def test_simulator_patches_as_merge_patch_or_json_patch_and_trims_with_select(so: SuperOffice) -> None:
    """VENDORS.md: PATCH takes JSON Merge Patch or JSON Patch, and `$select` trims the answer (the connector uses
    neither, but the simulator should be as the vendor is)."""
    created = await send(so.connector(), make_contact())
    url = f"{so.base_url}api/v1/Contact/{created.remote_id}"
    headers = auth_headers(settings())

    async def patch(body: Any, content_type: str, **extra: str) -> tuple[int, dict[str, Any]]:
        sent = {**headers, "Content-Type": content_type, **extra}
        async with so.session.patch(url, data=orjson.dumps(body), headers=sent) as response:
            return response.status, await response.json()

    status, answer = await patch({"Department": None, "Name": "Lovelace Ltd"}, "application/merge-patch+json")
    assert status == 200 and (answer["Name"], answer["Department"]) == ("Lovelace Ltd", "")
    record = so.records[str(created.remote_id)]
    assert (record["Name"], record["Department"], record["Persons"][0]["Firstname"]) == ("Lovelace Ltd", "", "Ada")
    operations = [
        {"op": "replace", "path": "/Persons/0/Firstname", "value": "Augusta"},
        {"op": "add", "path": "/Emails/-", "value": {"Value": "augusta@example.com"}},
        {"op": "remove", "path": "/Phones/0"},
    ]
    status, answer = await patch(operations, "application/json-patch+json")
    assert status == 200
    record = so.records[str(created.remote_id)]
    assert record["Persons"][0]["Firstname"] == "Augusta" and record["Persons"][0]["PersonId"] == 1000
    assert [e["Value"] for e in record["Emails"]] == ["ada@example.com", "augusta@example.com"]
    assert record["Phones"] == []
    # The same rules as a PUT, the same precondition, and unsupported operations refused.
    status, answer = await patch({"Name": "x" * 220}, "application/json")
    assert (status, answer["ErrorType"]) == (400, "ArgumentException") and "'Name'" in answer["ErrorMessage"]
    stale = {"If-Unmodified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}
    assert (await patch({"Name": "Later"}, "application/json", **stale))[0] == 412
    status, answer = await patch([{"op": "move", "from": "/Name", "path": "/OrgNr"}], "application/json-patch+json")
    assert (status, answer["ErrorType"]) == (400, "ArgumentException")
    assert (await patch({"Name": "y"}, "text/plain"))[0] == 415
    assert so.records[str(created.remote_id)]["Name"] == "Lovelace Ltd"
    async with so.session.get(url, params={"$select": "name,contactId"}, headers=headers) as response:
        assert await response.json() == {"ContactId": int(str(created.remote_id)), "Name": "Lovelace Ltd"}


def test_plugin_declares_superoffice() -> None:
    assert PLUGIN.vendor is Vendor.SUPEROFFICE
    assert PLUGIN.connector is SuperOfficeConnector
    assert isinstance(PLUGIN.simulator(), SuperOfficeSimulator)
    assert SuperOfficeConnector.capabilities.delete
    assert not SuperOfficeConnector.capabilities.native_upsert
    config = settings()
    assert config.auth == "soticket"
    assert PLUGIN.rejecting_options == {"categoryId": 999_999}
