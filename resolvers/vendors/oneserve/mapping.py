"""Canonical contact <-> Oneserve contact: pure functions, one field per line, no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from resolvers.model import Address, Contact, ContactDetail, Location, error_code, error_message, render_path
from resolvers.results import ErrorCode, FieldError
from resolvers.vendors.base import Mapped, utf16_units
from resolvers.vendors.oneserve.wire import (
    DATE_FORMAT,
    OneserveContact,
    OneserveLocation,
    max_lengths,
)

#: The wire models' text limits (`length_unit = "utf16"` counts them again in UTF-16 code units).
CONTACT_LIMITS = max_lengths(OneserveContact)
LOCATION_LIMITS = max_lengths(OneserveLocation)

if TYPE_CHECKING:
    from resolvers.vendors.oneserve.connector import OneserveSettings

#: Detail kind -> Oneserve contact type id, as in Oneserve's own example (1 phone, 10 mobile, 6 e-mail); fax,
#: web and other are placeholders. Each tenant configures its own ids: this is only a setting's default.
DEFAULT_DETAIL_TYPES: Mapping[str, int] = {
    "phone": 1,
    "mobile": 10,
    "email": 6,
    "fax": 7,
    "web": 8,
    "other": 9,
}
#: Contact detail slots Oneserve has (`contact1` .. `contact4`).
CONTACT_SLOTS = 4
#: Address lines Oneserve has (`address1` .. `address4`).
ADDRESS_LINES = 4
#: Where a caller overrides the configured client ref; errors about the client ref point here.
CLIENT_REF_PATH = "vendorOptions.oneserve.clientRef"
_OPTIONS_PATH = "vendorOptions.oneserve"


class OneserveOptions(BaseModel):
    """The `vendorOptions.oneserve` entry a caller may send: overrides of configured defaults."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    clientRef: str | None = None


def to_wire(contact: Contact, settings: OneserveSettings, options: Mapping[str, Any]) -> Mapped:
    """The Oneserve payload for a contact, each wire field remembering the canonical path it came from."""
    mapped = Mapped()
    chosen = _options(options, mapped)
    client_ref = chosen.clientRef if chosen.clientRef is not None else settings.client_ref
    mapped.put("clientRef", client_ref, CLIENT_REF_PATH)
    mapped.put("contactRef", contact.id, "id")
    # Oneserve's salutation is the short form of address ("Mr", 50 characters): the canonical title, not the
    # canonical salutation (a letter opening such as "Dear Dr Probe"), which is reported as not sent.
    mapped.put("salutation", contact.title, "title")
    mapped.put("forename", contact.first_name, "firstName")
    mapped.put("surname", contact.last_name, "lastName")
    _details(contact.details, settings.detail_types, mapped)
    _address(contact.address, mapped)
    mapped.put("notes", contact.notes, "notes")
    mapped.put("considerations", contact.considerations, "considerations")
    _locations(contact.locations, mapped)
    if settings.length_unit == "utf16":
        _utf16_lengths(mapped)
    if settings.usage_type_ids is not None:
        _usage_types(contact.locations, settings.usage_type_ids, mapped)
    return mapped


def _utf16_lengths(mapped: Mapped) -> None:
    """With `length_unit = "utf16"`: each text field's limit counted in UTF-16 code units. A value too long in
    characters is the wire model's to report; one that fits in characters but not in units is reported here."""
    fields = [(name, mapped.payload.get(name), limit) for name, limit in CONTACT_LIMITS.items()]
    for index, item in enumerate(mapped.payload.get("locations") or []):
        fields += [(f"locations[{index}].{n}", item.get(n), limit) for n, limit in LOCATION_LIMITS.items()]
    for path, value, limit in fields:
        if isinstance(value, str) and len(value) <= limit < utf16_units(value):
            mapped.errors.append(
                FieldError(
                    field=mapped.source(path),
                    code=ErrorCode.TOO_LONG,
                    message=f"at most {limit} characters (an emoji counts as 2)",
                    vendor_field=path,
                )
            )


def _usage_types(locations: Sequence[Location], known: Sequence[int], mapped: Mapped) -> None:
    for index, location in enumerate(locations):
        if location.usage_type_id is not None and location.usage_type_id not in known:
            mapped.errors.append(
                FieldError(
                    field=f"locations[{index}].usageTypeId",
                    code=ErrorCode.UNKNOWN_TYPE,
                    message=f"not a usage type of this Oneserve tenant ({', '.join(map(str, known)) or 'none'})",
                    vendor_field=f"locations[{index}].usageTypeId",
                )
            )


def _options(options: Mapping[str, Any], mapped: Mapped) -> OneserveOptions:
    try:
        return OneserveOptions.model_validate(options)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            path = render_path(err["loc"])
            mapped.errors.append(
                FieldError(
                    field=f"{_OPTIONS_PATH}.{path}",
                    code=error_code(err["type"]),
                    message=error_message(err),
                    vendor_field=path or None,
                )
            )
        return OneserveOptions()


def _details(details: Sequence[ContactDetail], detail_types: Mapping[str, int], mapped: Mapped) -> None:
    if len(details) > CONTACT_SLOTS:
        mapped.errors.append(
            FieldError(
                field="details",
                code=ErrorCode.TOO_MANY,
                message=f"at most {CONTACT_SLOTS} contact details, got {len(details)}",
                vendor_field=f"contact1..{CONTACT_SLOTS}",
            )
        )
    if not details:
        # Nothing to point at but the list itself: the wire model then reports contact1 as required.
        mapped.put("contact1", None, "details")
        mapped.put("contact1Type", None, "details")
    preferred_slot, preferred_source = 1, "details[0].preferred"
    for index, detail in enumerate(details[:CONTACT_SLOTS]):
        slot = index + 1
        kind = detail.kind.value.lower()
        type_id = detail_types.get(kind)
        if type_id is None:
            mapped.errors.append(
                FieldError(
                    field=f"details[{index}].kind",
                    code=ErrorCode.UNKNOWN_TYPE,
                    message=f"no Oneserve contact type is configured for {kind} details",
                    vendor_field=f"contact{slot}Type",
                )
            )
        mapped.put(f"contact{slot}", detail.value, f"details[{index}].value")
        mapped.put(f"contact{slot}Type", type_id, f"details[{index}].kind")
        if detail.preferred:
            preferred_slot, preferred_source = slot, f"details[{index}].preferred"
    mapped.put("preferredContact", preferred_slot, preferred_source)
    if details and not any(d.preferred for d in details):
        mapped.warnings.append(
            "details: none is marked preferred, and Oneserve needs one (preferredContact): details[0] is sent as the "
            "preferred contact"
        )


def _address(address: Address | None, mapped: Mapped) -> None:
    lines = address.lines if address is not None else []
    if len(lines) > ADDRESS_LINES:
        mapped.errors.append(
            FieldError(
                field="address.lines",
                code=ErrorCode.TOO_MANY,
                message=f"at most {ADDRESS_LINES} address lines, got {len(lines)}",
                vendor_field=f"address1..{ADDRESS_LINES}",
            )
        )
    mapped.put("address1", _line(lines, 0), "address.lines[0]")
    mapped.put("address2", _line(lines, 1), "address.lines[1]")
    mapped.put("address3", _line(lines, 2), "address.lines[2]")
    mapped.put("address4", _line(lines, 3), "address.lines[3]")
    mapped.put("postCode", address.post_code if address is not None else None, "address.postCode")


def _line(lines: Sequence[str], index: int) -> str | None:
    return lines[index] if index < len(lines) else None


def _locations(locations: Sequence[Location], mapped: Mapped) -> None:
    items: list[dict[str, Any]] = []
    for index, location in enumerate(locations):
        item = Mapped()
        item.put("locationRef", location.ref, f"locations[{index}].ref")
        item.put("isPreferred", location.preferred, f"locations[{index}].preferred")
        item.put("startDate", format_date(location.start_date), f"locations[{index}].startDate")
        item.put("endDate", format_date(location.end_date), f"locations[{index}].endDate")
        item.put("usageTypeId", location.usage_type_id, f"locations[{index}].usageTypeId")
        items.append(item.payload)
        mapped.sources.update({f"locations[{index}].{wire}": src for wire, src in item.sources.items()})
    mapped.put("locations", items or None, "locations")


def format_date(value: date | None) -> str | None:
    """A date as Oneserve's `dd/MM/yyyy` (zero-padded year too, unlike strftime for years before 1000)."""
    if value is None:
        return None
    return f"{value.day:02d}/{value.month:02d}/{value.year:04d}"


def from_wire(payload: Mapping[str, Any], detail_types: Mapping[str, int] = DEFAULT_DETAIL_TYPES) -> dict[str, Any]:
    """Canonical camelCase data for what Oneserve holds of a contact (numbers, booleans as JSON or strings).

    Shaped like a canonical dump without defaults (`preferred` only when true). Empty contact slots are skipped,
    as in Oneserve's own example; a type id no detail kind maps to is OTHER. Oneserve always has a preferred slot,
    so a contact sent with none preferred comes back with its first detail preferred. The clientRef is where the
    contact lives, not part of it, and is not returned.
    """
    kinds = {type_id: kind for kind, type_id in detail_types.items()}
    preferred = _int(payload.get("preferredContact"))
    details: list[dict[str, Any]] = []
    for slot in range(1, CONTACT_SLOTS + 1):
        value = payload.get(f"contact{slot}")
        if not value:
            continue
        kind = kinds.get(_int(payload.get(f"contact{slot}Type")) or 0, "other")
        detail = {"kind": kind.upper(), "value": value, "preferred": slot == preferred or None}
        details.append({key: item for key, item in detail.items() if item is not None})
    lines = [payload[f"address{n}"] for n in range(1, ADDRESS_LINES + 1) if payload.get(f"address{n}")]
    data: dict[str, Any] = {
        "id": payload.get("contactRef"),
        "title": payload.get("salutation"),
        "firstName": payload.get("forename"),
        "lastName": payload.get("surname"),
        "notes": payload.get("notes"),
        "considerations": payload.get("considerations"),
        "details": details,
        "address": {"lines": lines, "postCode": payload.get("postCode")},
        "locations": [_location_from_wire(item) for item in payload.get("locations") or []],
    }
    return {key: value for key, value in data.items() if value is not None and value != []}


def _location_from_wire(item: Mapping[str, Any]) -> dict[str, Any]:
    data = {
        "ref": item.get("locationRef"),
        "preferred": _bool(item.get("isPreferred")) or None,
        "startDate": _iso_date(item.get("startDate")),
        "endDate": _iso_date(item.get("endDate")),
        "usageTypeId": _int(item.get("usageTypeId")),
    }
    return {key: value for key, value in data.items() if value is not None}


def _int(value: Any) -> int | None:
    # Oneserve's example sends integers as strings ("10").
    if isinstance(value, bool) or value is None or value == "":
        return None
    return int(value)


def _bool(value: Any) -> bool:
    # Oneserve's example sends booleans as strings ("True").
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


def _iso_date(value: Any) -> str | None:
    if not value:
        return None
    return datetime.strptime(str(value), DATE_FORMAT).date().isoformat()
