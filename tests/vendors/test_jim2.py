"""Jim2 quirks: OAuth client credentials with licences and logoff, JSON:API documents, PATCH of what changed,
adoption by e-mail before creating, card numbers from config or vendorOptions, JSON:API error pointers.

The generic contract (round trips, 5xx, 429, timeouts for every vendor) lives in the contract suite.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from pydantic import ValidationError

from resolvers.errors import (
    AuthFailed,
    ConnectionDropped,
    RateLimited,
    VendorConflict,
    VendorNotFound,
    VendorRejected,
    VendorUnavailable,
)
from resolvers.model import Contact
from resolvers.results import ErrorCode, FieldError, Vendor, VendorStatus
from resolvers.simulation import Call
from resolvers.transport import Transport, VendorResponse
from resolvers.vendors.base import CURRENT_ATTEMPT, AttemptState, CrossReference, Delivered, Prepared
from resolvers.vendors.jim2 import PLUGIN, Jim2Connector, Jim2Settings, Jim2Simulator, demo_config
from resolvers.vendors.jim2.connector import _same_origin, changed_attributes, merge_clearing, pointer_path
from resolvers.vendors.jim2.mapping import from_wire, to_wire
from resolvers.vendors.jim2.simulator import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET
from resolvers.vendors.jim2.wire import ContactWrite
from tests.vendors.kit import Served, cross_reference, simulator_server, unchecked

MEDIA_TYPE = "application/vnd.api+json"


def make_contact(**overrides: Any) -> Contact:
    """A person with a phone (labelled), an e-mail and an address Jim2 cannot hold."""
    data: dict[str, Any] = {
        "id": "c-1",
        "title": "Ms",
        "firstName": "Ada",
        "lastName": "Lovelace",
        "jobTitle": "Analyst",
        "birthDate": "1815-12-10",
        "details": [
            {"kind": "PHONE", "value": "0413 000 000", "label": "work"},
            {"kind": "EMAIL", "value": "ada@example.com", "preferred": True},
        ],
        "address": {"lines": ["1 Analytical Way"], "city": "Carlton", "country": "AU"},
    }
    data.update(overrides)
    return Contact.model_validate(data)


def settings(base_url: str = "http://127.0.0.1:9/jim2/", **overrides: Any) -> Jim2Settings:
    return Jim2Settings.model_validate({**demo_config(base_url), **overrides})


def offline(**overrides: Any) -> Jim2Connector:
    """A connector for pre-flight only: `prepare` never touches the transport."""
    return Jim2Connector(settings(**overrides), Transport.__new__(Transport))


def link(remote_id: str | None, payload: dict[str, Any] | None = None, contact_id: str = "c-1") -> CrossReference:
    return cross_reference(Vendor.JIM2, remote_id, contact_id=contact_id, payload=payload)


def raw(payload: dict[str, Any]) -> Prepared:
    return unchecked(Vendor.JIM2, payload)


def attributes(payload: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = payload["data"]["attributes"]
    return result


# --- mapping -------------------------------------------------------------------------------------------------


def test_contact_becomes_a_card_file_contact_document() -> None:
    mapped = to_wire(make_contact(middleName="King", displayName="Ada Lovelace", department="Engines"), settings(), {})
    assert mapped.payload["cardno"] == "10"
    assert mapped.payload["data"] == {
        "type": "CardFileContact",
        "attributes": {
            "title": "Ms",
            "firstName": "Ada",
            "middleName": "King",
            "lastName": "Lovelace",
            "displayName": "Ada Lovelace",
            "jobTitle": "Analyst",
            "department": "Engines",
            "dob": "1815-12-10",
            "details": [
                {"type": "Phone", "value": "0413 000 000", "comments": "work"},
                {"type": "EMail", "value": "ada@example.com"},
            ],
        },
    }
    assert "webAccount" not in attributes(mapped.payload)
    assert mapped.sources["data.attributes.details[0].comments"] == "details[0].label"
    assert mapped.sources["data.attributes.dob"] == "birthDate"
    assert mapped.payload["sources"] == mapped.sources
    assert mapped.errors == []


def test_detail_types_come_from_settings() -> None:
    contact = make_contact(
        details=[{"kind": kind, "value": f"{kind.lower()}@x.example"} for kind in ("MOBILE", "FAX", "WEB", "EMAIL")]
    )
    types = [d["type"] for d in attributes(to_wire(contact, settings(), {}).payload)["details"]]
    assert types == ["Mobile", "Fax", "Web", "EMail"]
    renamed = to_wire(contact, settings(detail_types={"mobile": "Cell", "email": "EMail"}), {}).payload
    assert [d["type"] for d in attributes(renamed)["details"]] == ["Cell", "EMail"]


def test_other_detail_is_left_out_with_a_warning_and_later_details_keep_their_sources() -> None:
    contact = make_contact(
        details=[
            {"kind": "PHONE", "value": "1"},
            {"kind": "OTHER", "value": "skype:ada"},
            {"kind": "EMAIL", "value": "ada@example.com"},
        ]
    )
    prepared = offline().prepare(contact)
    assert prepared.valid
    assert [d["value"] for d in attributes(prepared.payload)["details"]] == ["1", "ada@example.com"]
    assert prepared.payload["sources"]["data.attributes.details[1].value"] == "details[2].value"
    assert [w for w in prepared.warnings if w.startswith("details[1]")] == [
        "details[1]: Jim2 has no detail type for OTHER; not sent "
        "(name one in the [vendors.jim2] detail_types setting to send it)"
    ]

    mapped_other = offline(detail_types={"phone": "Phone", "other": "Skype"}).prepare(contact)
    assert [d["type"] for d in attributes(mapped_other.payload)["details"]] == ["Phone", "Skype"]
    assert any(w.startswith("details[2]: Jim2 has no detail type for EMAIL") for w in mapped_other.warnings)


def test_fields_jim2_cannot_hold_are_warnings_not_errors() -> None:
    contact = make_contact(
        notes="n", organisation="Analytical Engines", locations=[{"ref": "L1"}], salutation="Dear Ada"
    )
    prepared = offline().prepare(contact)
    assert prepared.valid
    for field in ("address", "locations", "notes", "organisation", "salutation"):
        assert f"{field}: not supported by JIM2, not sent" in prepared.warnings
    assert "details[1].preferred: Jim2 has no preferred flag on a detail; not sent" in prepared.warnings


def test_card_number_from_vendor_options_wins_over_configuration() -> None:
    chosen = to_wire(make_contact(), settings(), {"cardNo": "20"})
    assert (chosen.payload["cardno"], chosen.sources["cardno"]) == ("20", "vendorOptions.jim2.cardNo")
    as_int = to_wire(make_contact(), settings(), {"cardNo": 21})
    assert as_int.payload["cardno"] == "21"
    configured = to_wire(make_contact(), settings(), {})
    assert (configured.payload["cardno"], configured.sources["cardno"]) == ("10", "")


async def test_a_card_number_with_leading_zeros_is_the_same_card(jim2: Jim2) -> None:
    """ "010" is card 10, as Jim2's ids (`10-1`) spell it: sent so, and an update of a record on card 10 is a PATCH,
    not a move to another card (which would create a record each time)."""
    connector = jim2.connector(card_no="010")
    created = await send(connector, make_contact(details=[]))
    assert (created.status, created.remote_id) == (VendorStatus.CREATED, "10-1")
    prepared = connector.prepare(make_contact(details=[], firstName="Augusta"))
    assert prepared.payload["cardno"] == "10"
    updated = await connector.upsert(prepared, link(created.remote_id, None))
    assert (updated.status, updated.remote_id, updated.warnings) == (VendorStatus.UPDATED, "10-1", ())
    assert list(jim2.records) == ["10-1"]
    options = offline().prepare(make_contact(vendorOptions={"jim2": {"cardNo": "0020"}}))
    assert options.payload["cardno"] == "20"


def test_card_number_errors_point_at_vendor_options() -> None:
    bad = offline().prepare(make_contact(vendorOptions={"jim2": {"cardNo": "10-2"}}))
    assert [(e.field, e.code, e.vendor_field) for e in bad.errors] == [
        ("vendorOptions.jim2.cardNo", ErrorCode.INVALID_FORMAT, "cardno")
    ]
    assert bad.errors[0].message == "must be digits only"
    missing = offline(card_no=None).prepare(make_contact())
    assert [(e.field, e.code, e.vendor_field) for e in missing.errors] == [
        ("vendorOptions.jim2.cardNo", ErrorCode.REQUIRED, "cardno")
    ]
    unknown = offline().prepare(make_contact(vendorOptions={"jim2": {"cardNumber": "10"}}))
    assert [(e.field, e.code) for e in unknown.errors] == [("vendorOptions.jim2.cardNumber", ErrorCode.NOT_SUPPORTED)]


def test_a_name_is_required_unless_the_setting_says_otherwise() -> None:
    nameless = make_contact(lastName=None, firstName="Ada")
    assert offline().prepare(nameless).errors == [
        FieldError(
            field="lastName",
            code=ErrorCode.REQUIRED,
            message="Jim2 needs a lastName or a displayName",
            vendor_field="data.attributes.lastName",
        )
    ]
    assert offline().prepare(make_contact(lastName=None, displayName="Ada")).valid
    assert offline(name_required=False).prepare(nameless).valid


def test_every_violated_rule_is_reported_at_once() -> None:
    contact = make_contact(lastName=None, vendorOptions={"jim2": {"cardNo": "x", "colour": "blue"}})
    found = {(e.field, e.code, e.vendor_field) for e in offline().prepare(contact).errors}
    assert found == {
        ("vendorOptions.jim2.colour", ErrorCode.NOT_SUPPORTED, None),
        ("lastName", ErrorCode.REQUIRED, "data.attributes.lastName"),
        ("vendorOptions.jim2.cardNo", ErrorCode.INVALID_FORMAT, "cardno"),
    }


def test_dob_format_is_a_setting() -> None:
    mapped = to_wire(make_contact(), settings(dob_format="%d/%m/%Y"), {})
    assert attributes(mapped.payload)["dob"] == "10/12/1815"
    assert from_wire(mapped.payload, dob_format="%d/%m/%Y")["birthDate"] == "1815-12-10"


def test_round_trip_through_the_wire() -> None:
    contact = make_contact(middleName="King", displayName="Ada Lovelace", department="Engines", address=None)
    payload = to_wire(contact, settings(), {}).payload
    back = from_wire(payload)
    expected = contact.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    del expected["id"]
    expected["details"][1].pop("preferred")  # Jim2 has no per-detail preferred flag
    assert back == expected
    assert from_wire({"data": payload["data"]}) == back


def test_from_wire_reads_the_seed_example() -> None:
    seed = {
        "id": "10-1",
        "type": "CardFileContact",
        "attributes": {
            "contNo": 1,
            "title": "Mr",
            "firstName": "Contact",
            "middleName": "",
            "lastName": "One",
            "displayName": "Contact One",
            "jobTitle": "",
            "department": "",
            "dob": None,
            "isPrimary": True,
            "details": [{"type": "Phone", "value": "0413 000 000", "comments": ""}],
            "webAccount": None,
        },
    }
    assert from_wire(seed) == {
        "title": "Mr",
        "firstName": "Contact",
        "lastName": "One",
        "displayName": "Contact One",
        "details": [{"kind": "PHONE", "value": "0413 000 000"}],
    }


def test_changed_attributes_sends_what_differs_and_clears_what_is_gone() -> None:
    before = {"firstName": "Ada", "lastName": "Lovelace", "dob": "1815-12-10", "details": [{"type": "Phone"}]}
    after = {"firstName": "Ada", "lastName": "King", "details": [{"type": "Phone"}]}
    assert changed_attributes(before, after) == {"lastName": "King", "dob": None}
    assert changed_attributes(after, after) == {}
    # Nothing to compare against: every writable attribute, null where the contact has none.
    assert changed_attributes(None, after) == {
        "title": None,
        "firstName": "Ada",
        "middleName": None,
        "lastName": "King",
        "displayName": None,
        "jobTitle": None,
        "department": None,
        "dob": None,
        "details": [{"type": "Phone"}],
    }


def test_merge_clearing_sends_an_empty_entry_for_each_one_left_unmatched() -> None:
    held = [
        {"type": "Phone", "value": "1", "comments": "work"},
        {"type": "EMail", "value": "a@b.co", "comments": None},
        {"type": "Phone", "value": "2", "comments": None},
        {"type": "Fax", "value": "", "comments": ""},
    ]
    sent = [{"type": "Phone", "value": "3"}, {"type": "Mobile", "value": "4"}]
    # The first Phone sent takes the first held one; the second held Phone and the EMail are cleared; the Fax is
    # empty already and is not sent again.
    assert merge_clearing(held, sent) == [
        {"type": "Phone", "value": "3"},
        {"type": "Mobile", "value": "4"},
        {"type": "EMail", "value": "", "comments": ""},
        {"type": "Phone", "value": "", "comments": ""},
    ]
    assert merge_clearing([], sent) == sent
    assert merge_clearing(held[:1], []) == [{"type": "Phone", "value": "", "comments": ""}]


def test_pointer_path() -> None:
    assert pointer_path("/data/attributes/details/1/value") == "data.attributes.details[1].value"
    assert pointer_path("/data/attributes/a~1b~0c") == "data.attributes.a/b~c"
    assert pointer_path("") == ""


def test_reconciles_only_with_an_email_detail() -> None:
    connector = offline()
    assert connector.reconciles(connector.prepare(make_contact()))
    assert not connector.reconciles(connector.prepare(make_contact(details=[{"kind": "PHONE", "value": "1"}])))


def test_settings_are_checked() -> None:
    with pytest.raises(ValidationError, match="pager"):
        settings(detail_types={"pager": "Pager"})
    with pytest.raises(ValidationError, match="card_no"):
        settings(card_no="ten")
    with pytest.raises(ValidationError, match="details_patch"):
        settings(details_patch="append")
    connector = offline(token_path="/oauth/token", logoff_path="/api/logoff")
    assert connector.token_url == "http://127.0.0.1:9/jim2/oauth/token"
    assert connector.logoff_url == "http://127.0.0.1:9/jim2/api/logoff"
    assert connector.contact_url("10-3") == "http://127.0.0.1:9/jim2/api/v1/cardfiles/10/contacts/10-3"


def test_coverage_names_jim2_fields() -> None:
    coverage = {c.canonical: c.vendor_field for c in offline().coverage()}
    assert coverage["birthDate"] == "data.attributes.dob"
    assert coverage["details[].label"] == "data.attributes.details[].comments"
    assert coverage["address.city"] is None
    assert coverage["details[].preferred"] is None


def test_plugin_declares_jim2() -> None:
    assert PLUGIN.vendor is Vendor.JIM2
    assert PLUGIN.connector is Jim2Connector
    assert PLUGIN.connector.capabilities.delete and not PLUGIN.connector.capabilities.native_upsert
    assert offline().prepare(make_contact(vendorOptions={"jim2": PLUGIN.rejecting_options})).valid
    assert ContactWrite.model_validate(to_wire(make_contact(), settings(), {}).payload)


# --- connector against the simulator, over a real socket -----------------------------------------------------


@dataclass
class Jim2(Served):
    """One running simulator and a way to build connectors pointed at it."""

    simulator: Jim2Simulator

    def connector(self, transport: Transport | None = None, **overrides: Any) -> Jim2Connector:
        return Jim2Connector(settings(self.base_url, **overrides), transport or Transport(self.session))

    def calls(self, method: str | None = None, contains: str = "") -> list[Call]:
        return [
            c
            for c in self.simulator.state.calls
            if (method is None or c.method == method) and contains in c.path and "/_admin/" not in c.path
        ]

    @property
    def token_calls(self) -> list[Call]:
        return self.calls("POST", "/jim2/token")

    async def raw(self, method: str, path: str, body: Any = None, content_type: str = MEDIA_TYPE) -> VendorResponse:
        """A call straight to the simulator with a valid token: to see what it enforces."""
        token = await self.connector()._bearer()
        data = body if isinstance(body, bytes) else orjson.dumps(body) if body is not None else None
        headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
        return await Transport(self.session).request(method, f"{self.base_url}{path}", data=data, headers=headers)


Serve = Callable[..., Awaitable[Jim2]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    async with aiohttp.ClientSession() as session, simulator_server() as serve_one:

        async def start(**simulator_args: Any) -> Jim2:
            simulator = Jim2Simulator(**simulator_args)
            return Jim2(simulator, await serve_one(simulator), session)

        yield start


@pytest.fixture
async def jim2(serve: Serve) -> Jim2:
    return await serve()


async def send(connector: Jim2Connector, contact: Contact, previous: CrossReference | None = None) -> Delivered:
    prepared = connector.prepare(contact)
    assert prepared.valid, prepared.errors
    return await connector.upsert(prepared, previous)


def body(call: Call) -> Any:
    return orjson.loads(call.body)


# auth


async def test_concurrent_calls_share_one_token_request(jim2: Jim2) -> None:
    connector = jim2.connector()
    contacts = [make_contact(id=f"c-{i}", details=[{"kind": "EMAIL", "value": f"p{i}@example.com"}]) for i in range(6)]
    results = await asyncio.gather(*(send(connector, c) for c in contacts))
    assert [r.status for r in results] == [VendorStatus.CREATED] * 6
    assert len(jim2.token_calls) == 1
    (token,) = jim2.simulator.tokens
    api_calls = jim2.calls(contains="/api/v1/")
    assert {c.headers["Authorization"] for c in api_calls} == {f"Bearer {token}"}
    assert sorted(jim2.records) == [f"10-{n}" for n in range(1, 7)]


async def test_token_request_uses_basic_by_default_and_form_fields_when_set(jim2: Jim2) -> None:
    await jim2.connector()._bearer()
    await jim2.connector(client_auth="form", scope="all")._bearer()
    basic, form = jim2.token_calls
    assert basic.headers["Authorization"].startswith("Basic ")
    assert basic.body == "grant_type=client_credentials"
    assert "Authorization" not in form.headers
    assert form.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert form.body == (
        f"grant_type=client_credentials&client_id={DEMO_CLIENT_ID}&client_secret={DEMO_CLIENT_SECRET}&scope=all"
    )


async def test_token_is_renewed_before_it_expires(serve: Serve) -> None:
    jim2 = await serve(token_lifetime_s=1)
    connector = jim2.connector()
    created = await send(connector, make_contact())
    await asyncio.sleep(0.6)  # past the renewal point (half of a 1 s lifetime), before the expiry
    await send(connector, make_contact(firstName="Augusta"), link(created.remote_id))
    assert len(jim2.token_calls) == 2
    assert all(c.outcome != 401 for c in jim2.calls())


async def test_token_refused_by_the_api_is_renewed_once(jim2: Jim2) -> None:
    connector = jim2.connector()
    created = await send(connector, make_contact())
    assert jim2.simulator.expire_tokens() == 1
    updated = await send(connector, make_contact(firstName="Augusta"), link(created.remote_id))
    assert updated.status is VendorStatus.UPDATED
    assert [c.outcome for c in jim2.calls("PATCH")] == [401, 200]
    assert len(jim2.token_calls) == 2


async def test_token_refused_right_after_issue_is_auth_failed(serve: Serve) -> None:
    jim2 = await serve(token_lifetime_s=0)
    with pytest.raises(AuthFailed) as caught:
        await send(jim2.connector(), make_contact())
    assert caught.value.http_status == 401
    assert caught.value.vendor_code == "Unauthorized"
    assert len(jim2.token_calls) == 2  # one renewal, then give up
    assert jim2.records == {}


async def test_the_token_type_jim2_answers_is_read(serve: Serve) -> None:
    """VENDORS.md assumes standard OAuth fields, then `Authorization: Bearer`. RFC 6749 (7.1) has a client
    understand the `token_type` it is given: "Bearer" in any case (or none given) is sent as a bearer token; any
    other type cannot be, and is AUTH_FAILED naming it, before any contact call."""
    capitalised = await serve(token_type="Bearer")
    assert (await send(capitalised.connector(), make_contact())).status is VendorStatus.CREATED
    assert capitalised.calls("POST")[-1].headers["Authorization"].startswith("Bearer ")
    mac = await serve(token_type="mac")
    refused = "Jim2 issued a token of type 'mac'; the gateway can only send a token of type bearer"
    with pytest.raises(AuthFailed, match=refused):
        await send(mac.connector(), make_contact())
    assert mac.calls(contains="/api/v1/") == []


@pytest.mark.parametrize(("client_auth", "status"), [("basic", 401), ("form", 400)])
async def test_wrong_secret_is_auth_failed(jim2: Jim2, client_auth: str, status: int) -> None:
    connector = jim2.connector(client_auth=client_auth, **PLUGIN.bad_credentials)
    with pytest.raises(AuthFailed) as caught:
        await send(connector, make_contact())
    assert (caught.value.http_status, caught.value.vendor_code) == (status, "invalid_client")
    assert "invalid_client" in caught.value.message
    assert jim2.calls(contains="/api/v1/") == []


def test_the_read_only_scope_is_refused_in_the_config() -> None:
    # VENDORS.md: scope `view` is read-only, and the gateway only writes: every call would fail AUTH_FAILED.
    with pytest.raises(ValidationError, match="read-only"):
        settings(scope="view")
    with pytest.raises(ValidationError, match="read-only"):
        settings(scope=" view  view ")
    assert settings(scope="view all").scope == "view all"


async def test_view_scope_cannot_write_and_takes_no_licence(jim2: Jim2) -> None:
    # A token limited to `view` however it came about (the config refuses the scope itself; see above).
    connector = Jim2Connector(settings(jim2.base_url).model_copy(update={"scope": "view"}), Transport(jim2.session))
    with pytest.raises(AuthFailed) as caught:
        await send(connector, make_contact(details=[{"kind": "PHONE", "value": "1"}]))
    assert caught.value.http_status == 403
    assert caught.value.message == "Jim2 answered HTTP 403: Scope view is read-only"
    assert jim2.simulator.licences_in_use() == 0
    assert len(jim2.token_calls) == 1  # a 403 is not a reason to ask for another token


async def test_logoff_at_close_releases_the_licence(jim2: Jim2) -> None:
    connector = jim2.connector()
    await send(connector, make_contact())
    assert jim2.simulator.licences_in_use() == 1
    await connector.aclose()
    assert jim2.simulator.licences_in_use() == 0
    (logoff,) = jim2.calls("POST", "/jim2/logoff")
    assert logoff.outcome == 204
    assert jim2.simulator.tokens == {}
    await connector.aclose()  # nothing held any more: no second logoff
    assert jim2.simulator.state.counters["logoffs"] == 1


async def test_a_second_user_gets_a_licence_only_after_logoff(serve: Serve) -> None:
    jim2 = await serve(licences=1, clients={DEMO_CLIENT_ID: DEMO_CLIENT_SECRET, "other": "other-secret"})
    first = jim2.connector()
    second = jim2.connector(client_id="other", client_secret="other-secret")
    await send(first, make_contact())
    with pytest.raises(VendorUnavailable) as caught:
        await send(second, make_contact(id="c-2", details=[{"kind": "EMAIL", "value": "b@example.com"}]))
    assert caught.value.transient
    assert caught.value.vendor_code == "temporarily_unavailable"
    await first.aclose()
    delivered = await send(second, make_contact(id="c-2", details=[{"kind": "EMAIL", "value": "b@example.com"}]))
    assert delivered.status is VendorStatus.CREATED


async def test_logoff_path_and_method_are_settings(serve: Serve) -> None:
    jim2 = await serve(logoff_path="api/v1/logoff", logoff_method="DELETE")
    connector = jim2.connector(logoff_path="api/v1/logoff", logoff_method="DELETE")
    await connector._bearer()
    await connector.aclose()
    assert [(c.method, c.outcome) for c in jim2.calls(contains="logoff")] == [("DELETE", 204)]
    assert jim2.simulator.licences_in_use() == 0

    silent = jim2.connector(logoff_path="")
    await silent._bearer()
    await silent.aclose()
    assert jim2.simulator.licences_in_use() == 1


async def test_failed_logoff_does_not_raise(jim2: Jim2) -> None:
    connector = jim2.connector()
    await connector._bearer()
    await jim2.faults(fail_next=1, fail_status=503)
    await connector.aclose()
    assert [c.outcome for c in jim2.calls("POST", "/jim2/logoff")] == [503]


# create, update, adopt


async def test_create_then_update_patches_only_what_changed(jim2: Jim2) -> None:
    connector = jim2.connector()
    prepared = connector.prepare(make_contact())
    created = await connector.upsert(prepared, None)
    assert (created.status, created.remote_id, created.http_status) == (VendorStatus.CREATED, "10-1", 201)
    (post,) = jim2.calls("POST", "/contacts")
    assert post.headers["Content-Type"] == MEDIA_TYPE and post.headers["Accept"] == MEDIA_TYPE
    assert body(post) == {"data": prepared.payload["data"]}

    updated = await send(connector, make_contact(lastName="King", birthDate=None), link("10-1", prepared.payload))
    assert (updated.status, updated.remote_id) == (VendorStatus.UPDATED, "10-1")
    assert body(jim2.calls("PATCH")[-1]) == {
        "data": {"type": "CardFileContact", "id": "10-1", "attributes": {"lastName": "King", "dob": None}}
    }
    assert list(jim2.records) == ["10-1"]
    stored = jim2.records["10-1"]["attributes"]
    assert (stored["lastName"], stored["dob"], stored["firstName"]) == ("King", None, "Ada")
    assert jim2.simulator.state.counters == {"tokens": 1, "creates": 1, "updates": 1}


def _stored_details(jim2: Jim2, remote_id: str) -> list[tuple[str, str]]:
    return [(d["type"], d["value"]) for d in jim2.records[remote_id]["attributes"]["details"]]


@pytest.mark.parametrize("details_patch", ["replace", "merge"])
async def test_a_removed_detail_is_gone_from_a_jim2_that_merges_details_only_under_merge(
    serve: Serve, details_patch: str
) -> None:
    """Against a Jim2 whose PATCH merges `details` by type, "replace" leaves a removed phone in place (why the
    setting exists); "merge" sends it with an empty value, clearing it."""
    jim2 = await serve(details_patch="merge")
    connector = jim2.connector(details_patch=details_patch)
    prepared = connector.prepare(make_contact())
    created = await connector.upsert(prepared, None)
    assert created.remote_id is not None
    email_only = make_contact(details=[{"kind": "EMAIL", "value": "ada@example.com"}])
    await send(connector, email_only, link(created.remote_id, prepared.payload))
    sent = body(jim2.calls("PATCH")[-1])["data"]["attributes"]["details"]
    if details_patch == "replace":
        assert sent == [{"type": "EMail", "value": "ada@example.com"}]
        assert _stored_details(jim2, created.remote_id) == [("Phone", "0413 000 000"), ("EMail", "ada@example.com")]
    else:
        assert sent == [{"type": "EMail", "value": "ada@example.com"}, {"type": "Phone", "value": "", "comments": ""}]
        assert _stored_details(jim2, created.remote_id) == [("Phone", ""), ("EMail", "ada@example.com")]
    # The GET is the e-mail lookup before the create: no read before the PATCH, the last payload is known.
    assert [c.method for c in jim2.calls(contains="/contacts")] == ["GET", "POST", "PATCH"]


async def test_merge_reads_the_record_when_the_last_accepted_payload_is_unknown(serve: Serve) -> None:
    jim2 = await serve(details_patch="merge")
    connector = jim2.connector(details_patch="merge")
    created = await send(connector, make_contact())
    assert created.remote_id is not None
    phone_only = make_contact(details=[{"kind": "PHONE", "value": "0413 111 111"}])
    updated = await send(connector, phone_only, link(created.remote_id, None))
    assert updated.status is VendorStatus.UPDATED
    # The e-mail lookup before the create, then the read of the record before the PATCH.
    assert [c.method for c in jim2.calls(contains="/contacts")] == ["GET", "POST", "GET", "PATCH"]
    assert jim2.calls("GET")[-1].path.endswith(f"/contacts/{created.remote_id}")
    assert _stored_details(jim2, created.remote_id) == [("Phone", "0413 111 111"), ("EMail", "")]
    # A record Jim2 no longer has is written again, as under "replace".
    del jim2.simulator.state.records[created.remote_id]
    again = await send(connector, phone_only, link(created.remote_id, None))
    assert again.status is VendorStatus.CREATED and again.remote_id != created.remote_id


async def test_update_without_a_known_payload_sends_every_attribute(jim2: Jim2) -> None:
    connector = jim2.connector()
    created = await send(connector, make_contact())
    prepared = connector.prepare(make_contact(firstName="Augusta"))
    await connector.upsert(prepared, link(created.remote_id, None))
    sent = body(jim2.calls("PATCH")[-1])["data"]["attributes"]
    absent = {"middleName": None, "displayName": None, "department": None}  # cleared: the contact has none
    assert sent == {**attributes(prepared.payload), **absent}


async def test_nothing_changed_is_still_a_valid_patch(jim2: Jim2) -> None:
    connector = jim2.connector()
    prepared = connector.prepare(make_contact())
    created = await connector.upsert(prepared, None)
    again = await connector.upsert(prepared, link(created.remote_id, prepared.payload))
    assert again.status is VendorStatus.UPDATED
    assert body(jim2.calls("PATCH")[-1])["data"]["attributes"] == {}
    assert jim2.calls("PATCH")[-1].outcome == 200


async def test_lost_create_answer_then_retry_without_link_adopts(jim2: Jim2) -> None:
    class DropCreateAnswer(Transport):
        """Injects `drop_after_next` just before the create, so the token and the lookup are answered."""

        async def request(self, method: str, url: str, **kwargs: Any) -> VendorResponse:
            if method == "POST" and url.endswith("/contacts"):
                await jim2.faults(drop_after_next=1)
            return await super().request(method, url, **kwargs)

    connector = jim2.connector(DropCreateAnswer(jim2.session))
    prepared = connector.prepare(make_contact())
    assert connector.reconciles(prepared)  # so the engine may repeat the create
    with pytest.raises(ConnectionDropped):
        await connector.upsert(prepared, None)
    assert list(jim2.records) == ["10-1"]  # Jim2 acted; the gateway never heard

    retried = await jim2.connector().upsert(prepared, None)
    assert (retried.status, retried.remote_id, retried.matched_by) == (VendorStatus.UPDATED, "10-1", "email")
    assert list(jim2.records) == ["10-1"]
    assert jim2.simulator.state.counters["creates"] == 1


async def test_the_email_filter_gets_the_address_as_the_payload_spells_it(serve: Serve) -> None:
    """The listing's `filter[email]` is assumed: on a Jim2 whose filter minds case, a lowercased address would find
    nothing, and a lost create's repeat would make a second record. Sent as spelt, it finds what that create
    stored; the match itself ignores case."""
    jim2 = await serve(filter_case_sensitive=True)
    connector = jim2.connector()
    mixed = [{"kind": "EMAIL", "value": "Ada@Example.com"}]
    created = await send(connector, make_contact(details=mixed))
    repeated = await send(connector, make_contact(details=mixed))
    assert (repeated.status, repeated.remote_id, repeated.matched_by) == (
        VendorStatus.UPDATED,
        created.remote_id,
        "email",
    )
    assert list(jim2.records) == [created.remote_id]


async def test_a_paged_listing_is_followed_and_one_cut_off_proves_nothing(serve: Serve) -> None:
    """VENDORS.md assumes Jim2 does not page a card's listing. Should it (JSON:API `links.next`), the lookup read
    the first page only: Ada on page 3 was not found, and a lost create's repeat would have made a second record.
    Pages are followed now, `lookup_max_pages` at most; a listing cut off there leaves the create unfindable (a
    lost answer is then not repeated) and says so."""
    jim2 = await serve(page_size=2)
    writer = jim2.connector(lookup_filter=None)  # the whole card is listed: Ada is its fifth contact
    for i in range(4):
        await send(writer, make_contact(details=[{"kind": "EMAIL", "value": f"other{i}@example.com"}]))
    ada = await send(writer, make_contact())
    assert ada.remote_id == "10-5"

    again = await send(jim2.connector(lookup_filter=None), make_contact(firstName="Ada"))
    assert (again.status, again.remote_id, again.matched_by) == (VendorStatus.UPDATED, "10-5", "email")
    pages = [c.path for c in jim2.calls("GET", "/contacts")]
    assert len(pages) >= 3, pages

    state = AttemptState()
    token = CURRENT_ATTEMPT.set(state)
    try:
        short = jim2.connector(lookup_filter=None, lookup_max_pages=2)
        created = await send(short, make_contact(details=[{"kind": "EMAIL", "value": "new@example.com"}]))
    finally:
        CURRENT_ATTEMPT.reset(token)
    assert created.status is VendorStatus.CREATED
    assert state.unfindable_create, "a listing cut off by lookup_max_pages proves nothing"
    assert any("were not all listed" in w for w in created.warnings), created.warnings


def test_a_next_page_is_followed_only_on_jims_own_origin() -> None:
    """The bearer token goes to Jim2 only: a `links.next` naming another origin ends the listing (cut off)."""
    base = "https://jim2.example/api/"
    assert _same_origin("https://jim2.example/api/v1/cardfiles/10/contacts?page%5Bnumber%5D=2", base)
    assert _same_origin("https://jim2.example:443/other", base), "the default port, written"
    for elsewhere in ("https://evil.example/api/", "http://jim2.example/api/", "https://jim2.example:8443/api/"):
        assert not _same_origin(elsewhere, base), elsewhere


async def test_missing_link_adopts_the_contact_with_the_same_email(jim2: Jim2) -> None:
    connector = jim2.connector()
    await send(connector, make_contact(details=[{"kind": "EMAIL", "value": "someone@else.example"}], lastName="X"))
    await send(connector, make_contact(details=[{"kind": "EMAIL", "value": "ADA@Example.com"}], firstName="Old"))
    adopted = await send(connector, make_contact(firstName="Ada"))
    assert (adopted.status, adopted.remote_id, adopted.matched_by) == (VendorStatus.UPDATED, "10-2", "email")
    patch = jim2.calls("PATCH")[-1]
    assert body(patch)["data"]["attributes"]["firstName"] == "Ada"
    assert body(patch)["data"]["id"] == "10-2"
    assert len(jim2.records) == 2
    assert jim2.records["10-2"]["attributes"]["firstName"] == "Ada"


async def test_an_adopted_record_loses_what_the_contact_no_longer_has(jim2: Jim2) -> None:
    """A PATCH with no accepted payload to compare against (the record is adopted: a lost create's repeat after the
    contact was edited) sends every writable attribute, null for those the contact lacks: left out, Jim2 would keep
    them, and the link's payload would then say they are gone."""
    connector = jim2.connector()
    await send(connector, make_contact(middleName="K", jobTitle="CEO"))
    assert jim2.records["10-1"]["attributes"]["jobTitle"] == "CEO"
    adopted = await send(connector, make_contact(jobTitle=None))
    assert (adopted.status, adopted.remote_id, adopted.matched_by) == (VendorStatus.UPDATED, "10-1", "email")
    attributes = jim2.records["10-1"]["attributes"]
    assert (attributes["middleName"], attributes["jobTitle"], attributes["firstName"]) == (None, None, "Ada")


async def test_several_contacts_with_the_email_adopts_the_first_with_a_warning(jim2: Jim2) -> None:
    connector = jim2.connector()
    for name in ("One", "Two"):
        await jim2.raw(
            "POST",
            "api/v1/cardfiles/10/contacts",
            {
                "data": {
                    "type": "CardFileContact",
                    "attributes": {"lastName": name, "details": [{"type": "EMail", "value": "ada@example.com"}]},
                }
            },
        )
    adopted = await send(connector, make_contact())
    assert (adopted.remote_id, adopted.matched_by) == ("10-1", "email")
    assert adopted.warnings == (
        "2 contacts on card 10 have the e-mail address ada@example.com; adopted 10-1 (also 10-2)",
    )


async def test_contact_without_email_is_created_without_a_lookup(jim2: Jim2) -> None:
    connector = jim2.connector()
    contact = make_contact(details=[{"kind": "PHONE", "value": "1"}])
    first = await send(connector, contact)
    second = await send(connector, contact)
    assert (first.remote_id, second.remote_id) == ("10-1", "10-2")
    assert jim2.calls("GET") == []


async def test_update_of_a_record_deleted_at_jim2_creates_it_again(jim2: Jim2) -> None:
    connector = jim2.connector()
    prepared = connector.prepare(make_contact())
    created = await connector.upsert(prepared, None)
    assert created.remote_id == "10-1"
    del jim2.records["10-1"]  # deleted at Jim2 by someone else
    again = await connector.upsert(prepared, link(created.remote_id, prepared.payload))
    assert (again.status, again.remote_id) == (VendorStatus.CREATED, "10-2")
    assert again.warnings == ("Jim2 no longer has contact 10-1; it was written again",)
    assert [c.outcome for c in jim2.calls("PATCH")] == [404]
    assert body(jim2.calls("POST", "/contacts")[-1])["data"]["attributes"] == attributes(prepared.payload)
    assert list(jim2.records) == ["10-2"]


async def test_changed_card_creates_on_the_new_card_and_leaves_the_old_one(serve: Serve) -> None:
    jim2 = await serve(cards=("10", "20"))
    connector = jim2.connector()
    created = await send(connector, make_contact())
    moved = await send(connector, make_contact(vendorOptions={"jim2": {"cardNo": "20"}}), link(created.remote_id))
    assert (moved.status, moved.remote_id) == (VendorStatus.CREATED, "20-1")
    assert moved.warnings == ("cardNo changed to 20: written to that card; contact 10-1 on card 10 was left in place",)
    assert sorted(jim2.records) == ["10-1", "20-1"]
    assert jim2.calls("PATCH") == []


# delete


async def test_delete_removes_the_record(jim2: Jim2) -> None:
    connector = jim2.connector()
    created = await send(connector, make_contact())
    deleted = await connector.delete("c-1", link(created.remote_id))
    assert (deleted.status, deleted.remote_id, deleted.http_status) == (VendorStatus.DELETED, "10-1", 204)
    assert jim2.records == {}
    assert jim2.simulator.state.counters["deletes"] == 1

    again = await connector.delete("c-1", link(created.remote_id))
    assert (again.status, again.http_status) == (VendorStatus.DELETED, 404)
    assert again.warnings == ("Jim2 no longer had contact 10-1; nothing left to delete",)


async def test_delete_without_remote_id_finds_the_record_by_email_or_skips(jim2: Jim2) -> None:
    connector = jim2.connector()
    prepared = connector.prepare(make_contact())
    await connector.upsert(prepared, None)
    found = await connector.delete("c-1", link(None, prepared.payload))
    assert (found.status, found.remote_id) == (VendorStatus.DELETED, "10-1")
    assert jim2.records == {}

    skipped = await connector.delete("c-1", None)
    assert (skipped.status, skipped.remote_id) == (VendorStatus.SKIPPED, None)
    assert skipped.warnings == ("no Jim2 contact is known for 'c-1'; nothing deleted",)


# errors


async def test_unknown_card_from_options_is_not_found_at_vendor_options(jim2: Jim2) -> None:
    connector = jim2.connector()
    prepared = connector.prepare(make_contact(vendorOptions={"jim2": PLUGIN.rejecting_options}))
    with pytest.raises(VendorNotFound) as caught:
        await connector.upsert(prepared, None)
    assert caught.value.field_errors == [
        FieldError(
            field="vendorOptions.jim2.cardNo",
            code=ErrorCode.NOT_FOUND,
            message=f"Card file {PLUGIN.rejecting_options['cardNo']} was not found",
            vendor_field="cardno",
            vendor_code="CardFileNotFound",
        )
    ]
    assert caught.value.status is VendorStatus.REJECTED


async def test_unknown_configured_card_points_at_no_input_field(jim2: Jim2) -> None:
    connector = jim2.connector(card_no="77")
    with pytest.raises(VendorNotFound) as caught:
        await send(connector, make_contact(details=[{"kind": "PHONE", "value": "1"}]))
    assert [(e.field, e.vendor_field) for e in caught.value.field_errors] == [("", "cardno")]
    assert "no card file 77" in caught.value.message


async def test_card_numbers_of_another_shape_are_a_setting(serve: Serve) -> None:
    """VENDORS.md only shows card `10`: digits are assumed, so `card_no_pattern` can admit a tenant's other card
    numbers. Such a card is written to, updated and looked up like any; a card number outside the pattern is refused
    before sending, in the setting's words, wherever it came from."""
    jim2 = await serve(cards=("C-10",))
    connector = jim2.connector(card_no="C-10", card_no_pattern=r"^C-[0-9]+$")
    created = await send(connector, make_contact())
    assert (created.status, created.remote_id) == (VendorStatus.CREATED, "C-10-1")
    updated = await send(connector, make_contact(firstName="Augusta"), link(created.remote_id, None))
    assert (updated.status, updated.remote_id, updated.warnings) == (VendorStatus.UPDATED, "C-10-1", ())
    assert jim2.records["C-10-1"]["attributes"]["firstName"] == "Augusta"
    refused = connector.prepare(make_contact(vendorOptions={"jim2": {"cardNo": "10"}}))
    assert [(e.field, e.code, e.message) for e in refused.errors] == [
        ("vendorOptions.jim2.cardNo", ErrorCode.INVALID_FORMAT, "must match ^C-[0-9]+$")
    ]
    # The default still refuses that card, in words.
    assert [e.message for e in offline().prepare(make_contact(vendorOptions={"jim2": {"cardNo": "C-10"}})).errors] == [
        "must be digits only"
    ]


def test_the_card_pattern_is_checked_on_the_card_number_as_sent() -> None:
    """A configured "0010" goes to Jim2 as card 10 (`card_number`): the pattern judges that, in the config and before
    sending alike, so a config that loads never makes every contact INVALID."""
    with pytest.raises(ValidationError, match="card_no '0010' does not match card_no_pattern"):
        settings(card_no="0010", card_no_pattern=r"^[0-9]{4}$")
    connector = offline(card_no="0010", card_no_pattern=r"^[0-9]{2}$")
    prepared = connector.prepare(make_contact())
    assert prepared.valid, prepared.errors
    assert prepared.payload["cardno"] == "10"


def test_the_card_pattern_is_checked_in_the_config() -> None:
    with pytest.raises(ValidationError, match="card_no '10' does not match card_no_pattern"):
        settings(card_no_pattern=r"^C-[0-9]+$")
    with pytest.raises(ValidationError, match="not a regular expression"):
        settings(card_no_pattern="[0-9")
    with pytest.raises(ValidationError, match="card_no"):
        settings(card_no="")


async def test_a_card_number_past_what_jim2_holds_is_its_not_found(jim2: Jim2) -> None:
    """Digits of any length pass the default pattern (how large Jim2's card numbers run is not known): a card no
    Jim2 has, 12 digits long say, is Jim2's own 404, reported at the card's field, never sent as something else."""
    with pytest.raises(VendorNotFound) as caught:
        await send(jim2.connector(), make_contact(vendorOptions={"jim2": {"cardNo": "999999999999"}}))
    assert [(e.field, e.code) for e in caught.value.field_errors] == [
        ("vendorOptions.jim2.cardNo", ErrorCode.NOT_FOUND)
    ]
    assert jim2.records == {}


async def test_json_api_error_pointers_map_back_to_canonical_fields(jim2: Jim2) -> None:
    # The tenant's setting names a type Jim2 does not have: only Jim2 can tell.
    connector = jim2.connector(detail_types={"phone": "Phone", "email": "EMail", "other": "Pager"})
    contact = make_contact(
        details=[
            {"kind": "WEB", "value": "https://ada.example"},
            {"kind": "PHONE", "value": "1"},
            {"kind": "OTHER", "value": "555"},
        ]
    )
    with pytest.raises(VendorRejected) as caught:
        await send(connector, contact)
    assert caught.value.http_status == 422
    assert caught.value.field_errors == [
        FieldError(
            field="details[2].kind",
            code=ErrorCode.VENDOR_REJECTED,
            message="'Pager' is not a detail type",
            vendor_field="data.attributes.details[1].type",
            vendor_code="UnknownDetailType",
        )
    ]
    assert jim2.records == {}


async def test_every_rule_the_simulator_enforces_is_reported_at_once(jim2: Jim2) -> None:
    connector = jim2.connector()
    payload = copy.deepcopy(connector.prepare(make_contact()).payload)
    attrs = attributes(payload)
    attrs["dob"] = "10/12/1815"
    del attrs["lastName"]
    attrs["details"][1]["type"] = "Email"
    attrs["contNo"] = 7
    with pytest.raises(VendorRejected) as caught:
        await connector.upsert(raw(payload), None)
    found = {(e.field, e.vendor_field, e.vendor_code) for e in caught.value.field_errors}
    assert found == {
        ("", "data.attributes.contNo", "ReadOnly"),
        ("birthDate", "data.attributes.dob", "InvalidDate"),
        ("details[1].kind", "data.attributes.details[1].type", "UnknownDetailType"),
        ("lastName", "data.attributes.lastName", "Required"),
    }


async def test_simulator_refuses_malformed_documents(jim2: Jim2) -> None:
    contact = {"data": {"type": "CardFileContact", "attributes": {"lastName": "X"}}}
    wrong_type = await jim2.raw("POST", "api/v1/cardfiles/10/contacts", {"data": {"type": "Person", "attributes": {}}})
    no_data = await jim2.raw("POST", "api/v1/cardfiles/10/contacts", {"meta": {}})
    not_json = await jim2.raw("POST", "api/v1/cardfiles/10/contacts", b"{")
    plain = await jim2.raw("POST", "api/v1/cardfiles/10/contacts", contact, content_type="text/plain")
    as_json = await jim2.raw("POST", "api/v1/cardfiles/10/contacts", contact, content_type="application/json")
    with_id = await jim2.raw("POST", "api/v1/cardfiles/10/contacts", {"data": {**contact["data"], "id": "10-9"}})
    assert [r.status for r in (wrong_type, no_data, not_json, plain, as_json, with_id)] == [
        409,
        400,
        400,
        415,
        201,
        403,
    ]
    assert wrong_type.json()["errors"][0]["source"] == {"pointer": "/data/type"}
    assert wrong_type.headers["Content-Type"].startswith(MEDIA_TYPE)

    mismatch = await jim2.raw(
        "PATCH", "api/v1/cardfiles/10/contacts/10-1", {"data": {"type": "CardFileContact", "id": "10-2"}}
    )
    missing_id = await jim2.raw("PATCH", "api/v1/cardfiles/10/contacts/10-1", {"data": {"type": "CardFileContact"}})
    assert [(r.status, r.json()["errors"][0]["code"]) for r in (mismatch, missing_id)] == [
        (409, "IdMismatch"),
        (400, "Required"),
    ]


async def test_type_mismatch_is_a_conflict_mapped_to_data_type(jim2: Jim2) -> None:
    connector = jim2.connector()
    payload = copy.deepcopy(connector.prepare(make_contact()).payload)
    payload["data"]["type"] = "Contact"
    with pytest.raises(VendorConflict) as caught:
        await connector.upsert(raw(payload), None)
    assert [(e.field, e.vendor_field, e.vendor_code) for e in caught.value.field_errors] == [
        ("", "data.type", "TypeMismatch")
    ]


async def test_media_type_is_a_setting(jim2: Jim2) -> None:
    connector = jim2.connector(media_type="application/json")
    await send(connector, make_contact())
    (post,) = jim2.calls("POST", "/contacts")
    assert (post.headers["Content-Type"], post.headers["Accept"]) == ("application/json", "application/json")


async def test_injected_503_is_vendor_unavailable(jim2: Jim2) -> None:
    connector = jim2.connector()
    await connector._bearer()  # the fault must hit the API call itself
    await jim2.faults(fail_next=1, fail_status=503)
    with pytest.raises(VendorUnavailable) as caught:
        await send(connector, make_contact())
    assert type(caught.value) is VendorUnavailable
    assert (caught.value.http_status, caught.value.vendor_code) == (503, "ServiceUnavailable")
    assert caught.value.message == "Jim2 answered HTTP 503: Simulated failure"


async def test_injected_503_at_the_token_endpoint_is_vendor_unavailable(jim2: Jim2) -> None:
    await jim2.faults(fail_next=1, fail_status=503)
    with pytest.raises(VendorUnavailable) as caught:
        await send(jim2.connector(), make_contact())
    assert caught.value.http_status == 503
    assert jim2.calls(contains="/api/v1/") == []


async def test_throttled_call_is_rate_limited_with_retry_after(jim2: Jim2) -> None:
    connector = jim2.connector()
    await connector._bearer()
    await jim2.faults(throttle_next=1, retry_after=7)
    with pytest.raises(RateLimited) as caught:
        await send(connector, make_contact())
    assert (caught.value.retry_after, caught.value.http_status) == (7, 429)
