"""Canonical contact <-> Jim2 `CardFileContact`, one field per line (pure: no I/O).

Decisions (documented because Jim2's docs leave them open):
- Details map to `details[{type, value, comments}]` in order; the label becomes `comments`. Each kind's Jim2 type
  comes from the `detail_types` setting (Phone, Mobile, EMail, Fax, Web). OTHER has no Jim2 type: unless the
  setting names one for `other`, such a detail is left out with a warning naming it (not an error: the rest of the
  contact is still worth sending). Jim2 has no per-detail preferred flag, so `preferred` is not sent (a warning
  says so: the base cannot tell, since `details` as a whole has a source).
- `birthDate` goes to `dob` in the `dob_format` setting (ASSUMED ISO `YYYY-MM-DD`), the year always four digits.
- The card file is `vendorOptions.jim2.cardNo`, else the configured `card_no`; errors about a configured card point
  at no input field (""), errors about a caller's card at `vendorOptions.jim2.cardNo`. A card number is sent without
  leading zeros ("010" is card 10), as Jim2's ids spell it.
- Jim2 holds no address, locations, salutation, organisation, notes or considerations: the base warns about them.
- `webAccount` is not part of the canonical contact and is never sent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from resolvers.model import Contact, DetailKind
from resolvers.results import ErrorCode, FieldError
from resolvers.vendors.base import Mapped, nest
from resolvers.vendors.jim2.wire import RESOURCE_TYPE

if TYPE_CHECKING:
    from resolvers.vendors.jim2.connector import Jim2Settings

#: Jim2 detail type per detail kind (the issue names Phone, Mobile, EMail, Fax and Web; the seed shows Phone and
#: EMail). OTHER has none; `detail_types` in settings may give it one.
DEFAULT_DETAIL_TYPES: dict[str, str] = {
    "phone": "Phone",
    "mobile": "Mobile",
    "email": "EMail",
    "fax": "Fax",
    "web": "Web",
}
#: ASSUMED `dob` format (strftime notation): the seed only ever shows `"dob": null`.
DEFAULT_DOB_FORMAT = "%Y-%m-%d"

#: The keys `vendorOptions.jim2` accepts.
OPTION_KEYS = ("cardNo",)
CARD_NO_SOURCE = "vendorOptions.jim2.cardNo"
#: Wire paths of the card number and of the attributes.
CARD_NO = "cardno"
ATTRIBUTES = "data.attributes"


def card_number(value: Any) -> Any:
    """A card number in one spelling: "010" is card 10, as the remote ids Jim2 gives (`10-1`) spell it, so a link's
    card compares equal to the one configured (otherwise every update would look like a move to another card)."""
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return str(int(value))
    return value


def to_wire(contact: Contact, settings: Jim2Settings, options: Mapping[str, Any]) -> Mapped:
    """The `CardFileContact` document for `contact`, its card file, where each wire field came from, what is left."""
    m = Mapped()
    c = contact
    for key in options:
        if key not in OPTION_KEYS:
            m.errors.append(
                FieldError(
                    field=f"vendorOptions.jim2.{key}",
                    code=ErrorCode.NOT_SUPPORTED,
                    message=f"unknown Jim2 option; expected one of {', '.join(OPTION_KEYS)}",
                )
            )

    card_no = options.get("cardNo")
    if card_no is None and settings.card_no is not None:
        m.put(CARD_NO, card_number(settings.card_no), "")
    else:
        # An integer typed by the caller is a card number too; anything else is the wire model's to judge.
        m.put(
            CARD_NO,
            str(card_no) if isinstance(card_no, int) and not isinstance(card_no, bool) else card_number(card_no),
            CARD_NO_SOURCE,
        )

    a = ATTRIBUTES
    m.put("data.type", RESOURCE_TYPE, "")
    m.put(f"{a}.title", c.title, "title")
    m.put(f"{a}.firstName", c.first_name, "firstName")
    m.put(f"{a}.middleName", c.middle_name, "middleName")
    m.put(f"{a}.lastName", c.last_name, "lastName")
    m.put(f"{a}.displayName", c.display_name, "displayName")
    m.put(f"{a}.jobTitle", c.job_title, "jobTitle")
    m.put(f"{a}.department", c.department, "department")
    m.put(f"{a}.dob", format_dob(c.birth_date, settings.dob_format) if c.birth_date else None, "birthDate")

    m.put(f"{a}.details", [], "details")
    sent = 0
    for i, d in enumerate(c.details):
        detail_type = settings.detail_types.get(d.kind.value.lower())
        if detail_type is None:
            m.warnings.append(
                f"details[{i}]: Jim2 has no detail type for {d.kind.value}; not sent "
                f"(name one in the [vendors.jim2] detail_types setting to send it)"
            )
            continue
        at = f"{a}.details[{sent}]"
        m.put(f"{at}.type", detail_type, f"details[{i}].kind")
        m.put(f"{at}.value", d.value, f"details[{i}].value")
        m.put(f"{at}.comments", d.label, f"details[{i}].label")
        if d.preferred:
            # The base cannot see this one: `details` as a whole has a source.
            m.warnings.append(f"details[{i}].preferred: Jim2 has no preferred flag on a detail; not sent")
        sent += 1

    # Blank is no name: Jim2 trims before it checks (ASSUMED, as its simulator does).
    if settings.name_required and not ((c.last_name or "").strip() or (c.display_name or "").strip()):
        m.errors.append(
            FieldError(
                field="lastName",
                code=ErrorCode.REQUIRED,
                message="Jim2 needs a lastName or a displayName",
                vendor_field=f"{a}.lastName",
            )
        )

    m.payload = nest(m.payload)
    # Kept beside the document so that a JSON:API error pointer maps back to the caller's field (not sent).
    m.payload["sources"] = dict(m.sources)
    return m


def format_dob(value: date, fmt: str) -> str:
    """`value` in the strftime format `fmt`, `%Y` always four digits: C libraries write year 999 as `999`, which no
    `%Y` parser (Jim2's, `strptime`'s) reads back, so the birth date would be refused or, worse, misread."""
    return value.strftime(re.sub(r"%[%Y]", lambda m: m.group() if m.group() == "%%" else f"{value.year:04d}", fmt))


def from_wire(
    payload: Mapping[str, Any],
    detail_types: Mapping[str, str] | None = None,
    dob_format: str = DEFAULT_DOB_FORMAT,
) -> dict[str, Any]:
    """The canonical contact (camelCase, like the GraphQL input) that a Jim2 document, resource or payload holds.

    Takes a request or response document (`{"data": {...}}`), a resource object, or the prepared payload. Defaults
    are left out, like `model_dump(exclude_defaults=True)`; the card number is configuration, not contact data.
    """
    kinds = {name.casefold(): kind.upper() for kind, name in (detail_types or DEFAULT_DETAIL_TYPES).items()}
    resource: Mapping[str, Any] = payload.get("data", payload) or {}
    attributes: Mapping[str, Any] = resource.get("attributes") or {}
    details = [
        _present(
            {
                "kind": kinds.get(str(d.get("type") or "").casefold(), DetailKind.OTHER.value),
                "value": d.get("value"),
                "label": d.get("comments") or None,
            }
        )
        for d in attributes.get("details") or []
        if isinstance(d, Mapping)
    ]
    out = {
        "title": attributes.get("title"),
        "firstName": attributes.get("firstName"),
        "middleName": attributes.get("middleName"),
        "lastName": attributes.get("lastName"),
        "displayName": attributes.get("displayName"),
        "jobTitle": attributes.get("jobTitle"),
        "department": attributes.get("department"),
        "birthDate": _iso_date(attributes.get("dob"), dob_format),
        "details": details or None,
    }
    # Jim2 answers "" for a field never set (seed 002): that is no value, as null is.
    return {k: v for k, v in out.items() if v is not None and v != ""}


def _iso_date(value: Any, dob_format: str) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.strptime(value, dob_format).date().isoformat()
    except ValueError:
        return value


def _present(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}
