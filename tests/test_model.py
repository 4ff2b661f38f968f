"""The canonical model's universal rules, and the paths its errors name."""

from __future__ import annotations

from typing import Any

import pytest

from resolvers.model import Contact, parse_contact, render_path
from resolvers.results import ErrorCode, FieldError, UpsertStatus, Vendor, VendorResult, VendorStatus, overall_status


def errors(data: dict[str, Any]) -> set[tuple[str, ErrorCode]]:
    parsed = parse_contact(data)
    assert isinstance(parsed, list), "expected field errors"
    return {(e.field, e.code) for e in parsed}


def test_minimal_contact_is_valid() -> None:
    parsed = parse_contact({"id": "C-1"})
    assert isinstance(parsed, Contact)
    assert parsed.details == []


@pytest.mark.parametrize(
    ("contact_id", "code"),
    [
        ("", ErrorCode.REQUIRED),
        ("x" * 51, ErrorCode.TOO_LONG),
        ("tab\there", ErrorCode.INVALID_FORMAT),
        ("new\nline", ErrorCode.INVALID_FORMAT),
        ("nul\x00", ErrorCode.INVALID_FORMAT),
        (" padded", ErrorCode.INVALID_FORMAT),
        ("c1\x85", ErrorCode.INVALID_FORMAT),
    ],
)
def test_id_must_be_1_to_50_printable_characters(contact_id: str, code: ErrorCode) -> None:
    assert errors({"id": contact_id}) == {("id", code)}


def test_id_of_50_characters_and_unicode_is_fine() -> None:
    assert isinstance(parse_contact({"id": "é" * 50}), Contact)


def test_country_must_be_iso_alpha2() -> None:
    assert isinstance(parse_contact({"id": "c", "address": {"country": "AU"}}), Contact)
    for bad in ("UK", "gb", "GBR", "XX"):
        assert errors({"id": "c", "address": {"country": bad}}) == {("address.country", ErrorCode.INVALID_FORMAT)}


def test_dates_in_order_and_valid() -> None:
    location = {"ref": "L", "startDate": "2024-02-01", "endDate": "2024-01-31"}
    assert errors({"id": "c", "locations": [{"ref": "K"}, location]}) == {
        ("locations[1].endDate", ErrorCode.OUT_OF_RANGE)
    }
    assert errors({"id": "c", "birthDate": "2023-02-29"}) == {("birthDate", ErrorCode.INVALID_FORMAT)}
    same_day = {"ref": "L", "startDate": "2024-02-01", "endDate": "2024-02-01"}
    assert isinstance(parse_contact({"id": "c", "locations": [same_day]}), Contact)


def test_at_most_one_preferred_detail() -> None:
    details = [
        {"kind": "PHONE", "value": "1", "preferred": True},
        {"kind": "MOBILE", "value": "2", "preferred": True},
    ]
    assert errors({"id": "c", "details": details}) == {("details", ErrorCode.TOO_MANY)}


@pytest.mark.parametrize("value", ["plain", "a@b", "a b@c.de", "@c.de", "a@@c.de", "nl@b.co\n", "\na@b.co"])
def test_emails_must_look_like_emails(value: str) -> None:
    assert errors({"id": "c", "details": [{"kind": "EMAIL", "value": value}]}) == {
        ("details[0].value", ErrorCode.INVALID_FORMAT)
    }


def test_a_phone_is_not_checked_as_an_email() -> None:
    assert isinstance(parse_contact({"id": "c", "details": [{"kind": "PHONE", "value": "plain"}]}), Contact)


def test_coordinates_in_range() -> None:
    assert errors({"id": "c", "address": {"latitude": 91, "longitude": -181}}) == {
        ("address.latitude", ErrorCode.OUT_OF_RANGE),
        ("address.longitude", ErrorCode.OUT_OF_RANGE),
    }


def test_all_violations_at_once_with_input_paths() -> None:
    found = errors(
        {
            "id": "",
            "address": {"country": "ZZ"},
            "details": [{"kind": "EMAIL", "value": "x"}, {"kind": "PHONE", "value": ""}],
        }
    )
    assert found == {
        ("id", ErrorCode.REQUIRED),
        ("address.country", ErrorCode.INVALID_FORMAT),
        ("details[0].value", ErrorCode.INVALID_FORMAT),
        ("details[1].value", ErrorCode.REQUIRED),
    }


def test_messages_speak_the_gateways_words_not_pydantics() -> None:
    """A front end shows `message` next to the field: every limit reads like the vendors' own ("at most 80
    characters", "required"), with the limit in it, not pydantic's "String should have at most 50 characters"."""
    found = parse_contact(
        {
            "id": "C" * 51,
            "firstName": "Ada",
            "address": {"lines": ["x"] * 11, "latitude": -90.5, "longitude": 180.25},
            "details": [{"kind": "PHONE", "value": ""}],
        }
    )
    assert isinstance(found, list)
    assert {(e.field, e.code, e.message) for e in found} == {
        ("id", ErrorCode.TOO_LONG, "at most 50 characters"),
        ("address.lines", ErrorCode.TOO_MANY, "at most 10 items (11 given)"),
        ("address.latitude", ErrorCode.OUT_OF_RANGE, "must be at least -90"),
        ("address.longitude", ErrorCode.OUT_OF_RANGE, "must be at most 180"),
        ("details[0].value", ErrorCode.REQUIRED, "required"),
    }


def test_type_errors_are_worded_too() -> None:
    """A wrong type reads as the rest do, not as pydantic's "Input should be ..."."""
    found = parse_contact({"id": "c", "firstName": 7, "address": {"latitude": "north"}, "details": "none"})
    assert isinstance(found, list)
    assert {(e.field, e.message) for e in found} == {
        ("firstName", "must be text"),
        ("address.latitude", "must be a number"),
        ("details", "must be a list"),
    }


def test_text_of_only_spaces_or_with_control_characters_is_refused() -> None:
    """A vendor would store "   " as a name, or a NUL or BEL inside one (a probe saw Jim2's simulator keep both):
    refused for every vendor, naming the field. "" stays "none", as before; notes may span lines."""
    found = parse_contact(
        {
            "id": "c",
            "firstName": "   ",
            "lastName": "A\u0000B",
            "title": "\u0085Dr",
            "notes": "line one\r\nline two\tend",
            "considerations": "bell\u0007",
            "details": [{"kind": "PHONE", "value": " \t "}, {"kind": "OTHER", "value": "x", "label": "  "}],
            "address": {"lines": ["1 Way", "  "], "city": "Lon\ndon"},
            "locations": [{"ref": "   "}],
        }
    )
    assert isinstance(found, list)
    spaces = "must not be only spaces: leave the field out instead"
    control = "must not hold control characters (U+0000-U+001F, U+007F-U+009F)"
    assert {(e.field, e.code, e.message) for e in found} == {
        ("firstName", ErrorCode.INVALID_FORMAT, spaces),
        ("lastName", ErrorCode.INVALID_FORMAT, control),
        ("title", ErrorCode.INVALID_FORMAT, control),
        ("considerations", ErrorCode.INVALID_FORMAT, "must not hold control characters other than tab, CR and LF"),
        ("details[0].value", ErrorCode.INVALID_FORMAT, spaces),
        ("details[1].label", ErrorCode.INVALID_FORMAT, spaces),
        ("address.lines[1]", ErrorCode.INVALID_FORMAT, spaces),
        ("address.city", ErrorCode.INVALID_FORMAT, control),
        ("locations[0].ref", ErrorCode.INVALID_FORMAT, spaces),
    }
    assert isinstance(parse_contact({"id": "c", "firstName": "", "notes": "a\nb"}), Contact)


def test_a_birth_date_in_the_future_and_an_overlong_email_are_refused() -> None:
    found = parse_contact(
        {
            "id": "c",
            "birthDate": "2999-01-01",
            "details": [
                {"kind": "EMAIL", "value": "a" * 65 + "@example.com"},
                {"kind": "EMAIL", "value": "a@" + "b" * 250 + ".com"},
                {"kind": "EMAIL", "value": "a" * 64 + "@example.com"},
            ],
        }
    )
    assert isinstance(found, list)
    long_email = "must be an e-mail address of at most 254 bytes, 64 before the @"
    assert {(e.field, e.code, e.message) for e in found} == {
        ("birthDate", ErrorCode.OUT_OF_RANGE, "must not be in the future"),
        ("details[0].value", ErrorCode.INVALID_FORMAT, long_email),
        ("details[1].value", ErrorCode.INVALID_FORMAT, long_email),
    }


def test_content_hash_is_stable_and_sensitive() -> None:
    a = Contact.model_validate({"id": "c", "firstName": "A"})
    assert a.content_hash() == Contact.model_validate({"firstName": "A", "id": "c"}).content_hash()
    assert a.content_hash() != Contact.model_validate({"id": "c", "firstName": "B"}).content_hash()


def test_render_path() -> None:
    assert render_path(("details", 1, "value")) == "details[1].value"
    assert render_path(()) == ""
    assert render_path(("vendorOptions", "oneserve", "a\udfffb")) == "vendorOptions.oneserve.a\\udfffb"


def test_text_with_an_unpaired_surrogate_is_refused_naming_the_field() -> None:
    """JSON's `"\\ud800"` escape decodes (with json.loads) to a lone surrogate, which no vendor's JSON, nor the
    store, can take: refused wherever it is, as INVALID_FORMAT naming the field, a vendor option's key included (its
    surrogate written as an escape, so the answer can carry the path)."""
    assert errors({"id": "c", "middleName": "\ud800" * 48}) == {("middleName", ErrorCode.INVALID_FORMAT)}
    assert errors({"id": "\udc00x"}) == {("id", ErrorCode.INVALID_FORMAT)}
    assert errors(
        {
            "id": "c",
            "details": [{"kind": "EMAIL", "value": "a\udbff@example.com"}],
            "address": {"lines": ["ok", "x\ud800"]},
            "vendorOptions": {"oneserve": {"ref\udfff": "x", "notes": ["y", "\ud900"]}},
            "lastName": "Łukasz 😀",  # a pair is a character: fine
        }
    ) == {
        ("details[0].value", ErrorCode.INVALID_FORMAT),
        ("address.lines[1]", ErrorCode.INVALID_FORMAT),
        ("vendorOptions.oneserve.ref\\udfff", ErrorCode.INVALID_FORMAT),
        ("vendorOptions.oneserve.notes[1]", ErrorCode.INVALID_FORMAT),
    }
    # Other violations are still reported beside it; pydantic's own note on the same field is not repeated.
    both = parse_contact({"id": "", "firstName": "\ud800", "details": [{"kind": "TELEX", "value": "x"}]})
    assert isinstance(both, list)
    assert sorted((e.field, e.code) for e in both) == [
        ("details[0].kind", ErrorCode.UNKNOWN_TYPE),
        ("firstName", ErrorCode.INVALID_FORMAT),
        ("id", ErrorCode.REQUIRED),
    ]
    assert isinstance(parse_contact({"id": "c", "firstName": "😀\u00e9"}), Contact)


def _result(status: VendorStatus) -> VendorResult:
    return VendorResult(vendor=Vendor.EROS, status=status)


@pytest.mark.parametrize(
    ("statuses", "overall"),
    [
        ([VendorStatus.CREATED, VendorStatus.UNCHANGED], UpsertStatus.SUCCEEDED),
        ([VendorStatus.CREATED, VendorStatus.SKIPPED], UpsertStatus.SUCCEEDED),
        ([VendorStatus.CREATED, VendorStatus.INVALID], UpsertStatus.PARTIAL),
        ([VendorStatus.UPDATED, VendorStatus.UNAVAILABLE], UpsertStatus.PARTIAL),
        ([VendorStatus.REJECTED, VendorStatus.UNAVAILABLE], UpsertStatus.FAILED),
        ([VendorStatus.SKIPPED], UpsertStatus.FAILED),
    ],
)
def test_overall_status(statuses: list[VendorStatus], overall: UpsertStatus) -> None:
    assert overall_status([_result(s) for s in statuses]) is overall


def test_field_error_is_plain_data() -> None:
    error = FieldError(field="a", code=ErrorCode.REQUIRED, message="required")
    assert error.vendor_field is None
