"""Valomnia quirks: fixed detail slots, one address field, customerId from options or settings, photos as multipart,
form login for a bearer token, reconciliation by e-mail within the customer, updates by remote id, no delete.

The generic contract (round trips, 5xx, 429, timeouts for every vendor) lives in the contract suite.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import aiohttp
import pytest
from pydantic import ValidationError

from resolvers.errors import (
    AuthFailed,
    ConnectionDropped,
    RateLimited,
    VendorNotFound,
    VendorRejected,
    VendorUnavailable,
)
from resolvers.fanout import FanOut
from resolvers.model import Contact
from resolvers.results import ErrorCode, FieldError, Vendor, VendorStatus
from resolvers.simulation import Call
from resolvers.store import Store
from resolvers.transport import Transport
from resolvers.vendors.base import CrossReference, Delivered, Prepared
from resolvers.vendors.valomnia import PLUGIN, ValomniaConnector, ValomniaSettings, ValomniaSimulator, demo_config
from resolvers.vendors.valomnia.connector import Lookup
from resolvers.vendors.valomnia.mapping import from_wire, to_wire
from resolvers.vendors.valomnia.simulator import DEMO_API_TOKEN, DEMO_CUSTOMER_ID, Customer, parse_multipart
from resolvers.vendors.valomnia.wire import MAX_IMAGE_BYTES
from tests.vendors.kit import Served, cross_reference, simulator_server, unchecked

# Magic bytes first, then every byte value: not UTF-8, with CR/LF inside, like a real image.
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
JPEG = b"\xff\xd8\xff\xe0" + bytes(range(255, -1, -1)) * 4
PNG_B64 = base64.b64encode(PNG).decode()


def make_contact(**overrides: Any) -> Contact:
    """A person with an e-mail, a mobile, a phone and a two-line address; overrides replace top-level fields."""
    data: dict[str, Any] = {
        "id": "c-1",
        "firstName": "Marie",
        "lastName": "Schrader",
        "jobTitle": "Commercial",
        "details": [
            {"kind": "EMAIL", "value": "marie@example.com", "preferred": True},
            {"kind": "MOBILE", "value": "+33 6 00 00 00 01"},
            {"kind": "PHONE", "value": "+33 1 00 00 00 02"},
        ],
        "address": {"lines": ["Main street", "Building B"], "city": "Any town", "postCode": "75001", "country": "FR"},
    }
    data.update(overrides)
    return Contact.model_validate(data)


def settings(base_url: str = "http://127.0.0.1:9/valomnia/", **overrides: Any) -> ValomniaSettings:
    return ValomniaSettings.model_validate({**demo_config(base_url), **overrides})


def offline(**overrides: Any) -> ValomniaConnector:
    """A connector for pre-flight only: `prepare` never touches the transport."""
    return ValomniaConnector(settings(**overrides), Transport.__new__(Transport))


def link(remote_id: str | None, payload: dict[str, Any] | None = None, contact_id: str = "c-1") -> CrossReference:
    return cross_reference(Vendor.VALOMNIA, remote_id, contact_id=contact_id, payload=payload)


def raw(payload: dict[str, Any]) -> Prepared:
    return unchecked(Vendor.VALOMNIA, payload)


def errors_by_field(errors: list[FieldError]) -> dict[str, FieldError]:
    return {e.field: e for e in errors}


# --- mapping -------------------------------------------------------------------------------------------------


def test_fields_map_one_to_one_and_address_lines_are_joined() -> None:
    mapped = to_wire(make_contact(), settings(), {})
    assert mapped.payload == {
        "firstName": "Marie",
        "lastName": "Schrader",
        "customerId": DEMO_CUSTOMER_ID,
        "fonction": "Commercial",
        "country": "FR",
        "city": "Any town",
        "postalCode": "75001",
        "address": "Main street, Building B",
        "email": "marie@example.com",
        "mobile": "+33 6 00 00 00 01",
        "phone": "+33 1 00 00 00 02",
    }
    assert mapped.sources["email"] == "details[0].value"
    assert mapped.sources["phone"] == "details[2].value"
    assert mapped.sources["address"] == "address.lines"
    assert mapped.sources["customerId"] == "vendorOptions.valomnia.customerId"
    assert mapped.errors == []
    assert mapped.warnings == []


def test_address_separator_is_a_setting() -> None:
    mapped = to_wire(make_contact(), settings(address_separator=" / "), {})
    assert mapped.payload["address"] == "Main street / Building B"


def test_details_fill_the_slots_in_order_and_the_rest_are_named_in_warnings() -> None:
    contact = make_contact(
        details=[
            {"kind": "PHONE", "value": "01"},
            {"kind": "EMAIL", "value": "first@example.com"},
            {"kind": "PHONE", "value": "02"},
            {"kind": "EMAIL", "value": "second@example.com"},
            {"kind": "PHONE", "value": "03"},
            {"kind": "WEB", "value": "https://example.com"},
            {"kind": "OTHER", "value": "pager 7"},
            {"kind": "FAX", "value": "04"},
            {"kind": "MOBILE", "value": "05"},
            {"kind": "MOBILE", "value": "06"},
            {"kind": "FAX", "value": "07"},
        ]
    )
    mapped = to_wire(contact, settings(), {})
    assert {k: mapped.payload[k] for k in ("email", "phone", "phone2", "mobile", "fax")} == {
        "email": "first@example.com",
        "phone": "01",
        "phone2": "02",
        "mobile": "05",
        "fax": "04",
    }
    assert mapped.sources["phone2"] == "details[2].value"
    assert mapped.warnings == [
        "details[3]: Valomnia holds one e-mail; not sent",
        "details[4]: Valomnia holds two phone numbers (phone, phone2); not sent",
        "details[5]: Valomnia has no field for web addresses; not sent",
        "details[6]: Valomnia has no field for other details; not sent",
        "details[9]: Valomnia holds one mobile number; not sent",
        "details[10]: Valomnia holds one fax number; not sent",
    ]


def test_fields_valomnia_cannot_hold_are_warned_about_but_detail_kinds_are_not() -> None:
    contact = make_contact(
        title="Ms",
        notes="Prefers mornings",
        details=[{"kind": "EMAIL", "value": "marie@example.com", "label": "work"}],
        address={"lines": ["Main street"], "region": "IDF", "latitude": 48.8, "longitude": 2.3},
    )
    warnings = offline().prepare(contact).warnings
    assert "title: not supported by VALOMNIA, not sent" in warnings
    assert "notes: not supported by VALOMNIA, not sent" in warnings
    assert "address.region: not supported by VALOMNIA, not sent" in warnings
    assert "details[0].label: not supported by VALOMNIA, not sent" in warnings
    assert not [w for w in warnings if w.startswith(("details[0].kind", "details[0].value", "address.lines"))]


def test_first_and_last_name_are_required() -> None:
    prepared = offline().prepare(make_contact(firstName=None, lastName=""))
    assert not prepared.valid
    assert [(e.field, e.code, e.vendor_field) for e in prepared.errors] == [
        ("firstName", ErrorCode.REQUIRED, "firstName"),
        ("lastName", ErrorCode.REQUIRED, "lastName"),
    ]


def test_customer_id_from_vendor_options_over_settings() -> None:
    assert to_wire(make_contact(), settings(), {"customerId": 3230}).payload["customerId"] == "3230"
    assert to_wire(make_contact(), settings(customer_id=3230), {}).payload["customerId"] == "3230"

    prepared = offline(customer_id=None).prepare(make_contact())
    assert [(e.field, e.code, e.vendor_field) for e in prepared.errors] == [
        ("vendorOptions.valomnia.customerId", ErrorCode.REQUIRED, "customerId")
    ]


def test_customer_id_must_be_numeric_unless_external_ids_are_used() -> None:
    contact = make_contact(vendorOptions={"valomnia": {"customerId": "C0959"}})
    (error,) = offline().prepare(contact).errors
    assert (error.field, error.code, error.vendor_field) == (
        "vendorOptions.valomnia.customerId",
        ErrorCode.INVALID_FORMAT,
        "customerId",
    )
    prepared = offline(use_external_id=True).prepare(contact)
    assert prepared.valid, prepared.errors
    assert prepared.payload["useExternalId"] == "true"
    assert prepared.payload["customerId"] == "C0959"


async def test_a_customer_id_past_a_java_long_is_refused_by_both(valomnia: Valomnia) -> None:
    """Valomnia binds customerId to a Long: one past 9223372036854775807 is answered invalid_param_type, and
    pre-flight says so first, naming the field; the largest Long passes pre-flight (and is an unknown customer)."""
    too_big = make_contact(vendorOptions={"valomnia": {"customerId": "9223372036854775808"}})
    (error,) = offline().prepare(too_big).errors
    assert (error.field, error.code) == ("vendorOptions.valomnia.customerId", ErrorCode.INVALID_FORMAT)
    assert error.message == "must be a customer id of at most 9223372036854775807"
    assert offline().prepare(make_contact(vendorOptions={"valomnia": {"customerId": "9223372036854775807"}})).valid

    connector = valomnia.connector(reconcile_by_email=False)
    prepared = connector.prepare(make_contact())
    broken = replace(prepared, payload={**prepared.payload, "customerId": "9223372036854775808"})
    with pytest.raises(VendorRejected) as caught:
        await connector.upsert(broken, None)
    assert (caught.value.http_status, caught.value.vendor_code) == (400, "invalid_param_type")
    assert valomnia.records == {}


def test_unknown_or_mistyped_options_are_reported() -> None:
    contact = make_contact(vendorOptions={"valomnia": {"colour": "blue", "imageBase64": 7}})
    found = {(e.field, e.code) for e in offline().prepare(contact).errors}
    assert found == {
        ("vendorOptions.valomnia.colour", ErrorCode.NOT_SUPPORTED),
        ("vendorOptions.valomnia.imageBase64", ErrorCode.INVALID_FORMAT),
    }


def test_email_valomnia_would_refuse_is_invalid_before_sending() -> None:
    # The canonical model takes a one-letter TLD; Grails' e-mail check (assumed) does not.
    contact = make_contact(details=[{"kind": "PHONE", "value": "01"}, {"kind": "EMAIL", "value": "ada@example.c"}])
    (error,) = offline().prepare(contact).errors
    assert (error.field, error.code, error.vendor_field) == ("details[1].value", ErrorCode.INVALID_FORMAT, "email")


async def test_without_strict_email_valomnia_alone_judges_an_address(valomnia: Valomnia) -> None:
    """`strict_email = false` (the e-mail rule is assumed): pre-flight lets the canonical model's address through,
    and Valomnia's own email_validation_error comes back naming the caller's detail."""
    contact = make_contact(details=[{"kind": "PHONE", "value": "01"}, {"kind": "EMAIL", "value": "ada@example.c"}])
    connector = valomnia.connector(strict_email=False, reconcile_by_email=False)
    prepared = connector.prepare(contact)
    assert prepared.valid, prepared.errors
    with pytest.raises(VendorRejected) as caught:
        await connector.upsert(prepared, None)
    assert caught.value.vendor_code == "email_validation_error"
    (error,) = caught.value.field_errors
    assert (error.field, error.code, error.vendor_field) == ("details[1].value", ErrorCode.INVALID_FORMAT, "email")
    assert valomnia.records == {}


def test_text_longer_than_the_assumed_column_is_too_long() -> None:
    contact = make_contact(lastName="x" * 256, address={"lines": ["a" * 200, "b" * 60]})
    found = {(e.field, e.code, e.vendor_field, e.message) for e in offline().prepare(contact).errors}
    assert found == {
        ("lastName", ErrorCode.TOO_LONG, "lastName", "at most 255 characters"),
        ("address.lines", ErrorCode.TOO_LONG, "address", "at most 255 characters"),
    }
    assert offline(max_text_length=None).prepare(contact).valid
    assert offline(max_text_length=0).prepare(contact).valid  # TOML has no null
    assert offline().prepare(make_contact(lastName="x" * 255)).valid


def photo(name: str, data: str | bytes) -> Contact:
    encoded = data if isinstance(data, str) else base64.b64encode(data).decode()
    return make_contact(vendorOptions={"valomnia": {"imageFileName": name, "imageBase64": encoded}})


def test_photo_goes_into_the_payload_checked_and_normalised() -> None:
    wrapped = "data:image/png;base64," + "\n".join(PNG_B64[i : i + 76] for i in range(0, len(PNG_B64), 76))
    prepared = offline().prepare(photo("marie.PNG", wrapped))
    assert prepared.valid, prepared.errors
    assert prepared.payload["imageFile"] == {"filename": "marie.PNG", "contentType": "image/png", "content": PNG_B64}


@pytest.mark.parametrize(
    ("name", "data", "expected"),
    [
        ("marie.png", "not base64!", {("vendorOptions.valomnia.imageBase64", ErrorCode.INVALID_FORMAT, None)}),
        (
            "marie.tiff",
            PNG,
            {("vendorOptions.valomnia.imageFileName", ErrorCode.INVALID_FORMAT, "unsupported_file_type")},
        ),
        (
            "marie.png",
            b"%PDF-1.7 not an image",
            {("vendorOptions.valomnia.imageBase64", ErrorCode.INVALID_FORMAT, "unsupported_file_type")},
        ),
        (
            "marie.png",
            JPEG,
            {("vendorOptions.valomnia.imageFileName", ErrorCode.INVALID_FORMAT, "unsupported_file_type")},
        ),
        (
            "marie.png",
            PNG[:8] + bytes(MAX_IMAGE_BYTES),
            {("vendorOptions.valomnia.imageBase64", ErrorCode.TOO_LONG, "exceeded_file_size")},
        ),
        ("../marie.png", PNG, {("vendorOptions.valomnia.imageFileName", ErrorCode.INVALID_FORMAT, None)}),
    ],
    ids=["not-base64", "extension", "magic", "mismatch", "size", "path"],
)
def test_photo_rules_are_checked_before_sending(
    name: str, data: str | bytes, expected: set[tuple[str, ErrorCode, str | None]]
) -> None:
    prepared = offline().prepare(photo(name, data))
    assert not prepared.valid
    assert {(e.field, e.code, e.vendor_code) for e in prepared.errors} == expected
    assert all(e.vendor_field == "imageFile" for e in prepared.errors)
    assert "imageFile" not in prepared.payload


def test_photo_at_the_size_limit_is_valid() -> None:
    assert offline().prepare(photo("marie.png", PNG[:8] + bytes(MAX_IMAGE_BYTES - 8))).valid


def test_photo_needs_both_name_and_content() -> None:
    contact = make_contact(vendorOptions={"valomnia": {"imageBase64": PNG_B64}})
    (error,) = offline().prepare(contact).errors
    assert (error.field, error.code) == ("vendorOptions.valomnia.imageFileName", ErrorCode.REQUIRED)


def test_round_trip_through_the_form() -> None:
    contact = make_contact()
    form = {k: str(v) for k, v in to_wire(contact, settings(), {}).payload.items()}
    expected = contact.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    del expected["id"]
    del expected["details"][0]["preferred"]  # Valomnia has no preferred detail
    assert from_wire(form) == expected


def test_from_wire_reads_the_contact_valomnia_answers() -> None:
    seed_answer = {
        "id": 5,
        "customerReference": "C0959",
        "customer": {"id": 3229, "reference": "C0959", "name": "Marie's Jewelry", "href": "/api/v1.0/customers/3229"},
        "firstName": "Marie",
        "lastName": "Schrader",
        "mobile": "",
        "fax": "",
        "email": "",
        "fonction": "Commercial",
        "phone": "",
        "phone2": "",
        "comment": "",
        "country": "",
        "city": "Any town",
        "postalCode": "",
        "address": "Main street",
        "isDecisionMaker": True,
        "dateCreated": "2015-12-18T13:21:18Z",
    }
    assert from_wire(seed_answer) == {
        "firstName": "Marie",
        "lastName": "Schrader",
        "jobTitle": "Commercial",
        "address": {"lines": ["Main street"], "city": "Any town"},
    }


def test_coverage_names_every_detail_slot() -> None:
    rows = {row.canonical: row for row in offline().coverage()}
    assert rows["details[].value"].vendor_field == "email, phone, phone2, mobile, fax"
    assert rows["details[].kind"].vendor_field == "email, phone, phone2, mobile, fax"
    assert rows["jobTitle"].vendor_field == "fonction"
    assert rows["address.lines[]"].vendor_field == "address"
    assert rows["address.region"].vendor_field is None
    assert rows["details[].label"].vendor_field is None


def test_settings_need_a_login_or_a_token_and_build_urls() -> None:
    with pytest.raises(ValidationError, match="username and password"):
        ValomniaSettings.model_validate({"base_url": "http://x/", "username": "u"})
    assert ValomniaSettings.model_validate({"base_url": "http://x/", "token": "t"}).can_login is False
    with pytest.raises(ValidationError, match="api_version"):
        settings(api_version="1.0")
    connector = offline(api_version="v2.1", login_path="/j_spring_security_check")
    assert connector.contacts_url == "http://127.0.0.1:9/valomnia/api/v2.1/contacts"
    assert connector.contact_url("12") == "http://127.0.0.1:9/valomnia/api/v2.1/contacts/12"
    assert connector.login_url == "http://127.0.0.1:9/valomnia/j_spring_security_check"


def test_reconciles_only_contacts_with_an_email() -> None:
    connector = offline()
    assert connector.reconciles(connector.prepare(make_contact()))
    assert not connector.reconciles(connector.prepare(make_contact(details=[{"kind": "PHONE", "value": "01"}])))
    assert not offline(reconcile_by_email=False).reconciles(connector.prepare(make_contact()))


def test_no_delete() -> None:
    assert PLUGIN.connector.capabilities.delete is False
    assert PLUGIN.connector.capabilities.native_upsert is False


def test_multipart_parser_is_binary_safe() -> None:
    body = (
        b'--XyZ\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Disposition: form-data; name="firstName"'
        b"\r\n\r\nMar\xc3\xade\r\n--XyZ\r\nContent-Type: image/png\r\nContent-Disposition: form-data; "
        b'name="imageFile"; filename="m.png"\r\n\r\n' + PNG + b"\r\n--XyZ--\r\n"
    )
    fields, files = parse_multipart("multipart/form-data; boundary=XyZ", body)
    assert fields == {"firstName": "Marí" + "e"}
    assert files["imageFile"].content == PNG
    assert (files["imageFile"].filename, files["imageFile"].content_type) == ("m.png", "image/png")


# --- connector against the simulator, over a real socket -----------------------------------------------------


@dataclass
class Valomnia(Served):
    """One running simulator and a way to build connectors pointed at it."""

    simulator: ValomniaSimulator

    def connector(self, **overrides: Any) -> ValomniaConnector:
        return ValomniaConnector(settings(self.base_url, **overrides), Transport(self.session))

    def calls(self, fragment: str, method: str | None = None) -> list[Call]:
        return [
            c
            for c in self.simulator.state.calls
            if fragment in c.path.split("?")[0] and (method is None or c.method == method)
        ]

    @property
    def logins(self) -> int:
        return len(self.calls("/j_spring_security_check"))


Serve = Callable[..., Awaitable[Valomnia]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    async with aiohttp.ClientSession() as session, simulator_server() as serve_one:

        async def start(**simulator_args: Any) -> Valomnia:
            simulator = ValomniaSimulator(**simulator_args)
            return Valomnia(simulator, await serve_one(simulator), session)

        yield start


@pytest.fixture
async def valomnia(serve: Serve) -> Valomnia:
    return await serve()


async def send(connector: ValomniaConnector, contact: Contact, previous: CrossReference | None = None) -> Delivered:
    prepared = connector.prepare(contact)
    assert prepared.valid, prepared.errors
    return await connector.upsert(prepared, previous)


def form_of(call: Call) -> dict[str, str]:
    return dict(parse_qsl(call.body, keep_blank_values=True))


async def test_concurrent_upserts_log_in_once(valomnia: Valomnia) -> None:
    connector = valomnia.connector()
    contacts = [make_contact(id=f"c-{i}", details=[{"kind": "EMAIL", "value": f"p{i}@example.com"}]) for i in range(6)]
    results = await asyncio.gather(*(send(connector, c) for c in contacts))
    assert [r.status for r in results] == [VendorStatus.CREATED] * 6
    assert valomnia.logins == 1
    (ajax,) = valomnia.calls("/login/ajaxSuccess")
    (session,) = valomnia.simulator.sessions
    assert ajax.headers["Cookie"] == f"JSESSIONID={session}"
    (token,) = valomnia.simulator.tokens
    api_calls = valomnia.calls("/api/")
    assert len(api_calls) == 12  # one lookup and one create each
    assert {c.headers["Authorization"] for c in api_calls} == {f"Bearer {token}"}
    assert sorted(r.remote_id or "" for r in results) == sorted(valomnia.records)
    login = form_of(valomnia.calls("/j_spring_security_check")[0])
    assert login == {"j_username": "gateway@acme.example", "j_password": "valomnia-demo-password", "ajax": "true"}


async def test_create_then_update_keeps_one_record(valomnia: Valomnia) -> None:
    connector = valomnia.connector()
    created = await send(connector, make_contact())
    assert (created.status, created.http_status, created.matched_by) == (VendorStatus.CREATED, 201, None)
    assert created.remote_id is not None
    record = valomnia.records[created.remote_id]
    assert record["customer"]["id"] == 3229 and record["customerReference"] == "C0959"
    assert record["address"] == "Main street, Building B"

    updated = await send(connector, make_contact(firstName="Augusta"), link(created.remote_id))
    assert (updated.status, updated.remote_id, updated.http_status) == (VendorStatus.UPDATED, created.remote_id, 200)
    assert list(valomnia.records) == [created.remote_id]
    assert valomnia.records[created.remote_id]["firstName"] == "Augusta"
    assert valomnia.simulator.state.counters == {"logins": 1, "lookups": 1, "creates": 1, "updates": 1}
    (update,) = valomnia.calls(f"/contacts/{created.remote_id}", "POST")
    assert update.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form_of(update)["firstName"] == "Augusta"


async def test_update_clears_the_fields_the_contact_no_longer_has(valomnia: Valomnia) -> None:
    connector = valomnia.connector()
    created = await send(connector, make_contact())
    assert valomnia.records[created.remote_id or ""]["phone"] == "+33 1 00 00 00 02"
    fewer = make_contact(details=[{"kind": "EMAIL", "value": "marie@example.com"}], address=None)
    await send(connector, fewer, link(created.remote_id))
    record = valomnia.records[created.remote_id or ""]
    assert (record["phone"], record["mobile"], record["address"], record["country"]) == ("", "", "", "")
    assert record["email"] == "marie@example.com"

    # Without clearing, Valomnia (partial updates, assumed) keeps what it is not sent.
    kept = await send(valomnia.connector(clear_absent_on_update=False), make_contact(), link(created.remote_id))
    await send(valomnia.connector(clear_absent_on_update=False), fewer, link(kept.remote_id))
    assert valomnia.records[created.remote_id or ""]["phone"] == "+33 1 00 00 00 02"


async def test_expired_token_logs_in_again_once(valomnia: Valomnia) -> None:
    connector = valomnia.connector()
    created = await send(connector, make_contact())
    assert valomnia.simulator.expire_tokens() == 1
    updated = await send(connector, make_contact(firstName="Augusta"), link(created.remote_id))
    assert updated.status is VendorStatus.UPDATED
    assert valomnia.logins == 2
    assert [c.outcome for c in valomnia.calls("/api/")] == [200, 201, 401, 200]


async def test_token_refused_right_after_login_is_auth_failed(serve: Serve) -> None:
    valomnia = await serve(token_lifetime_s=0)
    with pytest.raises(AuthFailed) as caught:
        await send(valomnia.connector(), make_contact())
    assert caught.value.http_status == 401
    assert caught.value.vendor_code == "no_credentials"
    assert valomnia.logins == 2  # one fresh login, one repeat, then give up
    assert valomnia.records == {}


async def test_wrong_password_is_auth_failed(valomnia: Valomnia) -> None:
    with pytest.raises(AuthFailed) as caught:
        await send(valomnia.connector(**PLUGIN.bad_credentials), make_contact())
    assert caught.value.message == "Valomnia refused the configured username or password"
    assert caught.value.sent is False
    assert valomnia.calls("/api/") == []
    assert valomnia.calls("/login/ajaxSuccess") == []


async def test_configured_token_needs_no_login(valomnia: Valomnia) -> None:
    base = {"base_url": valomnia.base_url, "customer_id": DEMO_CUSTOMER_ID}
    connector = ValomniaConnector(
        ValomniaSettings.model_validate({**base, "token": DEMO_API_TOKEN}), Transport(valomnia.session)
    )
    assert (await send(connector, make_contact())).status is VendorStatus.CREATED
    assert valomnia.logins == 0

    wrong = ValomniaConnector(ValomniaSettings.model_validate({**base, "token": "nope"}), Transport(valomnia.session))
    with pytest.raises(AuthFailed, match="configured token"):
        await send(wrong, make_contact(id="c-2"))
    assert valomnia.logins == 0

    # A refused configured token is renewed by a login when credentials are configured too.
    both = valomnia.connector(token="nope")
    assert (await send(both, make_contact(id="c-3"))).status is VendorStatus.UPDATED  # adopts c-1's record by e-mail
    assert valomnia.logins == 1


class LosesTheNextCreateAnswer(ValomniaConnector):
    """Arms `drop_after_next` right after the lookup, so the fault hits the create that follows it."""

    valomnia: Valomnia
    armed = True

    async def find(self, email: str, customer: str, contact_id: str = "") -> Lookup:
        found = await super().find(email, customer, contact_id)
        if self.armed:
            self.armed = False
            await self.valomnia.faults(drop_after_next=1)
        return found


def losing(valomnia: Valomnia, **overrides: Any) -> LosesTheNextCreateAnswer:
    connector = LosesTheNextCreateAnswer(settings(valomnia.base_url, **overrides), Transport(valomnia.session))
    connector.valomnia = valomnia
    return connector


async def test_lost_create_answer_is_adopted_on_retry(valomnia: Valomnia) -> None:
    connector = losing(valomnia)
    prepared = connector.prepare(make_contact())
    assert connector.reconciles(prepared)
    with pytest.raises(ConnectionDropped):
        await connector.upsert(prepared, None)
    assert valomnia.calls("/contacts", "POST")[-1].outcome == -2  # Valomnia created it; the answer was lost
    (lost,) = valomnia.records

    retried = await connector.upsert(prepared, None)
    assert (retried.status, retried.remote_id, retried.matched_by) == (VendorStatus.UPDATED, lost, "email")
    assert list(valomnia.records) == [lost]
    assert valomnia.simulator.state.counters["creates"] == 1


async def test_engine_retries_a_lost_create_into_an_adoption(valomnia: Valomnia, tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    await store.open()
    try:
        engine = FanOut({Vendor.VALOMNIA: losing(valomnia)}, store)
        first = await engine.upsert(make_contact(), None)
        (result,) = first.results
        assert (result.status, result.matched_by, result.attempts) == (VendorStatus.UPDATED, "email", 2)
        assert list(valomnia.records) == [result.remote_id]

        # The cross-reference now holds the remote id: the next change is a plain update of that record.
        second = await engine.upsert(make_contact(firstName="Augusta"), None)
        assert (second.results[0].status, second.results[0].remote_id) == (VendorStatus.UPDATED, result.remote_id)
        assert valomnia.records[result.remote_id or ""]["firstName"] == "Augusta"

        deleted = await engine.delete("c-1", None)
        assert deleted.results[0].status is VendorStatus.SKIPPED
        assert [e.code for e in deleted.results[0].errors] == [ErrorCode.NOT_SUPPORTED]
        assert len(valomnia.records) == 1
    finally:
        await store.close()


async def test_existing_contact_of_the_customer_is_adopted_when_the_link_is_missing(valomnia: Valomnia) -> None:
    # Created by someone else (another gateway, a person in Valomnia's UI), with the e-mail in another case.
    other = valomnia.connector()
    existing = await send(
        other, make_contact(id="elsewhere", details=[{"kind": "EMAIL", "value": "MARIE@example.com"}])
    )
    connector = valomnia.connector()
    delivered = await send(connector, make_contact())
    assert (delivered.status, delivered.remote_id, delivered.matched_by) == (
        VendorStatus.UPDATED,
        existing.remote_id,
        "email",
    )
    assert len(valomnia.records) == 1
    lookup = valomnia.calls("/contacts", "GET")[-1]
    assert lookup.query == {"max": "100", "offset": "0", "email": "marie@example.com", "customerId": "3229"}


async def test_same_email_at_another_customer_is_not_adopted(valomnia: Valomnia) -> None:
    connector = valomnia.connector()
    theirs = await send(connector, make_contact(id="theirs", vendorOptions={"valomnia": {"customerId": "3230"}}))
    ours = await send(connector, make_contact())
    assert ours.status is VendorStatus.CREATED
    assert ours.remote_id != theirs.remote_id
    assert len(valomnia.records) == 2


async def test_an_external_reference_is_never_matched_against_customer_ids(serve: Serve) -> None:
    """With `use_external_id` the customerId sent is a reference: a numeric reference ("3230", customer 3229's) must
    not adopt the contact of the customer whose id is 3230."""
    customers = (Customer(3229, "3230", "Marie's Jewelry"), Customer(3230, "X-1", "Schrader & Sons"))
    valomnia = await serve(list_filters=False, customers=customers)
    theirs = await send(
        valomnia.connector(), make_contact(id="theirs", vendorOptions={"valomnia": {"customerId": "3230"}})
    )
    assert valomnia.records[theirs.remote_id or ""]["customer"]["id"] == 3230

    external = valomnia.connector(use_external_id=True, lookup_filters=False)
    ours = await send(external, make_contact(vendorOptions={"valomnia": {"customerId": "3230"}}))
    assert (ours.status, ours.matched_by) == (VendorStatus.CREATED, None)
    assert valomnia.records[ours.remote_id or ""]["customer"]["id"] == 3229
    assert len(valomnia.records) == 2

    # Its own contact is still found by the reference.
    again = await send(external, make_contact(id="again", vendorOptions={"valomnia": {"customerId": "3230"}}))
    assert (again.status, again.remote_id, again.matched_by) == (VendorStatus.UPDATED, ours.remote_id, "email")


async def test_reconciliation_pages_through_a_server_that_ignores_filters(serve: Serve) -> None:
    valomnia = await serve(list_filters=False, list_envelope=False)
    connector = valomnia.connector(lookup_filters=False, lookup_page_size=3)
    for i in range(7):
        await send(connector, make_contact(id=f"n-{i}", details=[{"kind": "EMAIL", "value": f"n{i}@example.com"}]))
    target = await send(connector, make_contact(id="n-6", details=[{"kind": "EMAIL", "value": "n6@example.com"}]))
    assert (target.status, target.matched_by) == (VendorStatus.UPDATED, "email")
    pages = [c.query for c in valomnia.calls("/contacts", "GET")][-3:]
    assert pages == [{"max": "3", "offset": "0"}, {"max": "3", "offset": "3"}, {"max": "3", "offset": "6"}]
    assert len(valomnia.records) == 7

    # Past lookup_max_pages the gateway gives up looking and creates.
    capped = valomnia.connector(lookup_filters=False, lookup_page_size=3, lookup_max_pages=2)
    assert (
        await send(capped, make_contact(id="n-6", details=[{"kind": "EMAIL", "value": "n6@example.com"}]))
    ).status is (VendorStatus.CREATED)


async def test_a_lost_create_after_a_listing_cut_off_is_reported_not_repeated(serve: Serve, tmp_path: Path) -> None:
    """When `lookup_max_pages` runs out before the listing's end, "not found" is not known: the create that follows
    is one a repeat might not find again, so its lost answer is reported as possibly written instead of being
    repeated into a second record (the repeat's lookup would stop at the same page)."""
    valomnia = await serve(list_filters=False, list_envelope=False)
    seeding = valomnia.connector(lookup_filters=False)
    for i in range(7):
        await send(seeding, make_contact(id=f"n-{i}", details=[{"kind": "EMAIL", "value": f"n{i}@example.com"}]))
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    await store.open()
    try:
        capped = losing(valomnia, lookup_filters=False, lookup_page_size=3, lookup_max_pages=2)
        engine = FanOut({Vendor.VALOMNIA: capped}, store)
        outcome = await engine.upsert(make_contact(details=[{"kind": "EMAIL", "value": "new@example.com"}]), None)
        (result,) = outcome.results
        assert (result.status, result.ambiguous, result.attempts) == (VendorStatus.UNAVAILABLE, True, 1)
        assert valomnia.calls("/contacts", "POST")[-1].outcome == -2  # Valomnia created it; the answer was lost
        assert len(valomnia.records) == 8  # one create, not two
    finally:
        await store.close()


async def test_reconciliation_reads_past_a_page_the_server_cut_short(serve: Serve) -> None:
    """A server that caps `max` below the size asked for answers short pages that are not the last: the listing
    goes on (from what came, not from page * size) until an empty page, so a record past the cap is still found
    and a lost create's repeat adopts it instead of making a second."""
    valomnia = await serve(list_filters=False, list_envelope=False, max_page_size=2)
    connector = valomnia.connector(lookup_filters=False, lookup_page_size=3)
    for i in range(5):
        await send(connector, make_contact(id=f"n-{i}", details=[{"kind": "EMAIL", "value": f"n{i}@example.com"}]))
    target = await send(connector, make_contact(id="n-4", details=[{"kind": "EMAIL", "value": "n4@example.com"}]))
    assert (target.status, target.matched_by) == (VendorStatus.UPDATED, "email")
    pages = [c.query["offset"] for c in valomnia.calls("/contacts", "GET")][-3:]
    assert pages == ["0", "2", "4"]
    assert len(valomnia.records) == 5


async def test_a_customer_id_with_leading_zeros_is_the_same_customer(valomnia: Valomnia) -> None:
    """customerId is a Long: "03229" is customer 3229, as Valomnia lists it; the match compares numbers, or the
    repeat of a lost create would not find the record it made and would make a second."""
    connector = valomnia.connector()
    zeros = {"valomnia": {"customerId": "03229"}}
    first = await send(connector, make_contact(vendorOptions=zeros))
    again = await send(valomnia.connector(), make_contact(vendorOptions=zeros))
    assert (again.status, again.remote_id, again.matched_by) == (VendorStatus.UPDATED, first.remote_id, "email")
    assert len(valomnia.records) == 1


async def test_contact_without_email_is_created_without_a_lookup(valomnia: Valomnia) -> None:
    connector = valomnia.connector()
    delivered = await send(connector, make_contact(details=[{"kind": "PHONE", "value": "01"}]))
    assert delivered.status is VendorStatus.CREATED
    assert valomnia.calls("/contacts", "GET") == []


async def test_update_of_a_contact_deleted_at_valomnia_creates_it_anew(valomnia: Valomnia) -> None:
    connector = valomnia.connector()
    created = await send(connector, make_contact())
    old = created.remote_id or ""
    del valomnia.records[old]
    again = await send(connector, make_contact(firstName="Augusta"), link(old))
    assert again.status is VendorStatus.CREATED
    assert again.remote_id not in (None, old)
    assert again.warnings == (
        f"Valomnia no longer has contact {old} (deleted there); created it anew as {again.remote_id}",
    )
    assert list(valomnia.records) == [again.remote_id]


async def test_update_of_a_deleted_contact_adopts_another_with_the_same_email(valomnia: Valomnia) -> None:
    connector = valomnia.connector()
    first = await send(connector, make_contact())
    second = await send(connector, make_contact(id="c-2"), None)  # adopted: same e-mail, same customer
    assert second.remote_id == first.remote_id
    duplicate = await send(valomnia.connector(reconcile_by_email=False), make_contact(id="c-3"))
    del valomnia.records[first.remote_id or ""]
    again = await send(connector, make_contact(), link(first.remote_id))
    assert (again.status, again.remote_id, again.matched_by) == (
        VendorStatus.UPDATED,
        duplicate.remote_id,
        "email",
    )
    assert "adopted contact" in again.warnings[0]


async def test_photo_is_sent_as_multipart_and_recorded_as_a_form(valomnia: Valomnia) -> None:
    connector = valomnia.connector()
    delivered = await send(connector, photo("marie.png", PNG))
    assert valomnia.simulator.photos[delivered.remote_id or ""] == PNG
    record = valomnia.records[delivered.remote_id or ""]
    assert record["photo"].endswith(f"_{delivered.remote_id}_marie.png")
    (create,) = valomnia.calls("/contacts", "POST")
    assert create.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    assert form_of(create) == {k: str(v) for k, v in connector.prepare(make_contact()).payload.items()}
    assert from_wire(form_of(create))["firstName"] == "Marie"


async def test_photo_cannot_be_removed_and_a_warning_says_so(valomnia: Valomnia) -> None:
    connector = valomnia.connector()
    prepared = connector.prepare(photo("marie.png", PNG))
    created = await connector.upsert(prepared, None)
    updated = await send(connector, make_contact(), link(created.remote_id, prepared.payload))
    assert updated.warnings == (
        "vendorOptions.valomnia.imageBase64: Valomnia cannot remove a photo; the old one stays",
    )
    assert valomnia.simulator.photos[created.remote_id or ""] == PNG


async def test_api_version_is_a_setting(valomnia: Valomnia) -> None:
    delivered = await send(valomnia.connector(api_version="v2.1"), make_contact())
    assert delivered.status is VendorStatus.CREATED
    assert {c.path.split("?")[0] for c in valomnia.calls("/api/")} == {"/valomnia/api/v2.1/contacts"}


async def test_unknown_customer_in_vendor_options_is_rejected_at_the_option(valomnia: Valomnia) -> None:
    connector = valomnia.connector()
    prepared = connector.prepare(make_contact(vendorOptions={"valomnia": PLUGIN.rejecting_options}))
    assert prepared.valid  # numeric: only Valomnia knows the customer does not exist
    with pytest.raises(VendorNotFound) as caught:
        await connector.upsert(prepared, None)
    assert caught.value.status is VendorStatus.REJECTED
    (error,) = caught.value.field_errors
    assert error.field == "vendorOptions.valomnia.customerId"
    assert (error.code, error.vendor_field, error.vendor_code) == (ErrorCode.NOT_FOUND, "customerId", "not_found")
    assert error.message.startswith("The customer with the id 31888 doesn't exist.")
    assert valomnia.records == {}


async def test_unknown_customer_is_found_by_the_create_when_lookups_are_off(valomnia: Valomnia) -> None:
    connector = valomnia.connector(reconcile_by_email=False)
    with pytest.raises(VendorNotFound) as caught:
        await send(connector, make_contact(vendorOptions={"valomnia": {"customerId": 31888}}))
    assert caught.value.http_status == 404
    assert caught.value.field_errors[0].field == "vendorOptions.valomnia.customerId"
    assert valomnia.calls("/contacts", "POST")[0].outcome == 404


BIG_IMAGE = {
    "filename": "m.png",
    "contentType": "image/png",
    "content": base64.b64encode(PNG[:8] + bytes(2 * 1024 * 1024)).decode(),
}


def without(payload: dict[str, Any], *names: str, **changes: Any) -> dict[str, Any]:
    return {**{k: v for k, v in payload.items() if k not in names}, **changes}


@pytest.mark.parametrize(
    ("change", "field", "code", "vendor_field", "vendor_code"),
    [
        (lambda p: without(p, "lastName"), "lastName", ErrorCode.REQUIRED, "lastName", "missing_param"),
        (
            lambda p: without(p, customerId="C0959"),
            "vendorOptions.valomnia.customerId",
            ErrorCode.INVALID_FORMAT,
            "customerId",
            "invalid_param_type",
        ),
        (
            lambda p: without(p, email="marie@example"),
            "details[0].value",
            ErrorCode.INVALID_FORMAT,
            "email",
            "email_validation_error",
        ),
        (lambda p: without(p, country="XX"), "address.country", ErrorCode.INVALID_FORMAT, "country", "country_error"),
        (
            lambda p: without(p, imageFile={"filename": "m.png", "contentType": "image/png", "content": "JVBERi0="}),
            "vendorOptions.valomnia.imageFileName",
            ErrorCode.INVALID_FORMAT,
            "imageFile",
            "unsupported_file_type",
        ),
        pytest.param(
            lambda p: without(p, imageFile=BIG_IMAGE),
            "vendorOptions.valomnia.imageBase64",
            ErrorCode.TOO_LONG,
            "imageFile",
            "exceeded_file_size",
        ),
    ],
    ids=["missing_param", "invalid_param_type", "email", "country", "unsupported_file_type", "exceeded_file_size"],
)
async def test_valomnia_error_bodies_become_field_errors(
    valomnia: Valomnia,
    change: Callable[[dict[str, Any]], dict[str, Any]],
    field: str,
    code: ErrorCode,
    vendor_field: str,
    vendor_code: str,
) -> None:
    connector = valomnia.connector(reconcile_by_email=False)
    prepared = connector.prepare(make_contact())
    # Pre-flight would catch these: send the broken payload anyway, keeping the contact's own paths.
    broken = replace(prepared, payload=change(dict(prepared.payload)))
    with pytest.raises(VendorRejected) as caught:
        await connector.upsert(broken, None)
    assert caught.value.http_status == 400
    assert caught.value.vendor_code == vendor_code
    (error,) = caught.value.field_errors
    assert (error.field, error.code, error.vendor_field, error.vendor_code) == (field, code, vendor_field, vendor_code)
    assert valomnia.records == {}


async def test_error_of_a_payload_prepared_elsewhere_points_at_details(valomnia: Valomnia) -> None:
    payload = without(valomnia.connector().prepare(make_contact()).payload, email="marie@example")
    with pytest.raises(VendorRejected) as caught:
        await valomnia.connector().upsert(raw(payload), None)
    assert caught.value.field_errors[0].field == "details"


async def test_save_failed_names_no_field(valomnia: Valomnia) -> None:
    connector = valomnia.connector(max_text_length=None)
    with pytest.raises(VendorRejected) as caught:
        await send(connector, make_contact(jobTitle="x" * 300))
    assert caught.value.vendor_code == "save_failed"
    assert caught.value.to_field_errors() == [
        FieldError(
            field="",
            code=ErrorCode.VENDOR_REJECTED,
            message="Valomnia answered save_failed: Failed to save instance.",
            vendor_code="save_failed",
        )
    ]


async def test_server_error_is_vendor_unavailable(valomnia: Valomnia) -> None:
    connector = valomnia.connector()
    await send(connector, make_contact())  # logged in: the fault must hit the API itself
    await valomnia.faults(fail_next=1, fail_status=500)
    with pytest.raises(VendorUnavailable) as caught:
        await send(connector, make_contact(id="c-2"))
    assert type(caught.value) is VendorUnavailable
    assert (caught.value.http_status, caught.value.vendor_code) == (500, "server_error")
    # The lookup failed: nothing was created, so the engine may repeat even a create.
    assert caught.value.sent is False


async def test_injected_503_is_vendor_unavailable(valomnia: Valomnia) -> None:
    connector = valomnia.connector(reconcile_by_email=False)
    await send(connector, make_contact())
    await valomnia.faults(fail_next=1, fail_status=503)
    with pytest.raises(VendorUnavailable) as caught:
        await send(connector, make_contact(id="c-2"))
    assert caught.value.http_status == 503
    assert caught.value.sent is True  # the create itself failed: it may have arrived
    assert valomnia.calls("/contacts", "POST")[-1].outcome == 503


async def test_throttled_call_is_rate_limited_with_retry_after(valomnia: Valomnia) -> None:
    connector = valomnia.connector()
    await send(connector, make_contact())
    await valomnia.faults(throttle_next=1, retry_after=7)
    with pytest.raises(RateLimited) as caught:
        await send(connector, make_contact())
    assert caught.value.retry_after == 7


async def test_login_unavailable_is_transient_and_never_sent(valomnia: Valomnia) -> None:
    await valomnia.faults(fail_next=1, fail_status=503)
    with pytest.raises(VendorUnavailable) as caught:
        await send(valomnia.connector(), make_contact(details=[]))
    assert caught.value.sent is False
    assert valomnia.calls("/api/") == []


async def test_a_lenient_valomnia_takes_what_strict_email_would_refuse(serve: Serve) -> None:
    """The e-mail rule is assumed, so both sides are settings: against a Valomnia that takes any address with an
    `@`, `strict_email = false` writes `ada@example.c`; the default refuses it before sending, so nothing is sent."""
    valomnia = await serve(strict_email=False)
    contact = make_contact(details=[{"kind": "EMAIL", "value": "ada@example.c"}])
    lenient = valomnia.connector(strict_email=False, reconcile_by_email=False)
    delivered = await lenient.upsert(lenient.prepare(contact), None)
    assert delivered.status is VendorStatus.CREATED
    assert valomnia.records[delivered.remote_id]["email"] == "ada@example.c"
    strict = valomnia.connector(reconcile_by_email=False).prepare(contact)
    assert [(e.field, e.code) for e in strict.errors] == [("details[0].value", ErrorCode.INVALID_FORMAT)]


async def test_the_photo_name_limit_is_a_setting(serve: Serve) -> None:
    """How long a photo's file name may be is assumed (255): `max_image_name_length` moves the pre-flight check,
    and a name past what Valomnia keeps comes back as its save_failed."""
    long_name = "m" * 252 + ".png"  # 256 characters
    refused = offline().prepare(photo(long_name, PNG))
    assert [(e.field, e.code, e.message) for e in refused.errors] == [
        ("vendorOptions.valomnia.imageFileName", ErrorCode.TOO_LONG, "at most 255 characters")
    ]
    assert offline(max_image_name_length=None).prepare(photo(long_name, PNG)).valid
    assert offline(max_image_name_length=0).prepare(photo(long_name, PNG)).valid  # TOML's "no limit"
    assert not offline(max_image_name_length=10).prepare(photo("marie-2.png", PNG)).valid

    roomy = await serve(max_image_name_length=None)
    connector = roomy.connector(max_image_name_length=300, reconcile_by_email=False)
    delivered = await connector.upsert(connector.prepare(photo(long_name, PNG)), None)
    assert roomy.records[delivered.remote_id]["photo"].endswith(f"_{long_name}")

    strict = await serve()
    connector = strict.connector(max_image_name_length=None, reconcile_by_email=False)
    with pytest.raises(VendorRejected) as caught:
        await connector.upsert(connector.prepare(photo(long_name, PNG)), None)
    assert caught.value.vendor_code == "save_failed"
    assert strict.records == {}
