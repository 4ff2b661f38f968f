"""Canonical contact <-> SuperOffice ContactEntity, one field per line (pure: no I/O).

Decisions (SuperOffice's ContactEntity is a company card with persons under it):
- `Name` is the organisation, else the display name, else "first last" (a "first last" over the column is the
  error of the longer of the two names); the person goes into `Persons[0]`
  (Firstname, MiddleName, Lastname, Mrmrs = title, and jobTitle in the `job_title_field` setting's field: Position
  by default, or Title) when any of those is given. An update
  whose contact no longer has a person leaves the gateway's person (as last sent) out of the PUT (`put_body`).
- Details go to the lists of their kind: EMAIL -> Emails, PHONE -> Phones, FAX -> Faxes, WEB -> Urls, each
  `{Value, StrippedValue, Description = label}`, the preferred one first (SuperOffice treats the first as the main
  one). The first MOBILE goes to the person's `MobilePhone` (the Person carrier has exactly one); further mobiles,
  or any mobile when there is no person, become company Phones. OTHER details have no list: warned, not sent.
- The address is the postal address (`Address.Postal`: Address1..3, City, State = region, Zipcode) with
  `Wgs84Latitude`/`Wgs84Longitude`; a fourth and further line is joined into Address3 (with a warning).
- `Country` is chosen by `CountryId`: ASSUMED to be the ISO 3166-1 numeric code (SuperOffice's shipped country
  list uses them: Norway is 578), overridable per ISO code by the `country_ids` setting.
- `Description` is the notes; `DbiKey` is the contact's id, so the record can be found again (reconciliation).
- `Category` / `Business` list items come from `vendorOptions.superoffice.categoryId` / `businessId`, else from
  the `category_id` / `business_id` settings, else are not sent. A contact always has a country, category and
  business at SuperOffice: one the contact no longer has stays as it was, with a warning (`kept`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pycountry
from pydantic import BaseModel, ConfigDict, ValidationError

from resolvers.model import Address, Contact, ContactDetail, DetailKind, error_code, error_message, render_path
from resolvers.results import ErrorCode, FieldError
from resolvers.vendors.base import Mapped, nest, utf16_units
from resolvers.vendors.superoffice.wire import Id32

if TYPE_CHECKING:
    from resolvers.vendors.superoffice.connector import SuperOfficeSettings

OPTIONS_PATH = "vendorOptions.superoffice"
CATEGORY_SOURCE = f"{OPTIONS_PATH}.categoryId"
BUSINESS_SOURCE = f"{OPTIONS_PATH}.businessId"
#: The postal address' `AtypeIdx` (as SuperOffice's own samples show it).
POSTAL_ADDRESS_TYPE = "ContactPostalAddress"
#: Address lines a StructuredAddress has.
ADDRESS_LINES = 3
#: Detail kind -> the ContactEntity list it goes to (MOBILE only when it cannot go to the person).
DETAIL_LISTS: Mapping[DetailKind, str] = {
    DetailKind.EMAIL: "Emails",
    DetailKind.PHONE: "Phones",
    DetailKind.MOBILE: "Phones",
    DetailKind.FAX: "Faxes",
    DetailKind.WEB: "Urls",
}
#: Top-level ContactEntity fields the gateway owns outright, and their empty value for a PUT that clears them.
OWNED_FIELDS: Mapping[str, Any] = {
    "Name": "",
    "Department": "",
    "Description": "",
    "Emails": [],
    "Phones": [],
    "Faxes": [],
    "Urls": [],
    "DbiKey": "",
}
#: The parts of `Address` the gateway owns (the postal address and the coordinates); the rest of it (the street
#: address, formatted and localised forms) is the vendor's, and a PUT sends it back as read.
ADDRESS_OWNED = ("Postal", "Wgs84Latitude", "Wgs84Longitude")
#: Fields the gateway sets only when it has a value (a contact has no "no country"; list items stay as the vendor's).
SET_WHEN_GIVEN = ("Country", "Category", "Business")
#: Answer-only decorations of a carrier, never sent back.
ANSWER_ONLY = frozenset({"TableRight", "FieldProperties", "_Links"})
#: Person fields the gateway fills, with the `job_title_field` (if any); the rest of a person (PersonId, Email, ...)
#: is the vendor's.
PERSON_FIELDS = ("Firstname", "MiddleName", "Lastname", "Mrmrs", "MobilePhone")


class SuperOfficeOptions(BaseModel):
    """The `vendorOptions.superoffice` entry a caller may send: list items for this contact."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Category list item id (MDO list "category").
    categoryId: Id32 | None = None
    #: Business list item id (MDO list "business").
    businessId: Id32 | None = None


def country_id(iso: str, overrides: Mapping[str, int]) -> int | None:
    """SuperOffice CountryId for an ISO 3166-1 alpha-2 code: the override, else the ISO numeric code."""
    if iso in overrides:
        return overrides[iso]
    country = pycountry.countries.get(alpha_2=iso)
    return int(country.numeric) if country is not None else None


def stripped(kind: DetailKind, value: str) -> str:
    """`StrippedValue` as SuperOffice searches it: digits only for numbers, the trimmed value otherwise."""
    if kind in (DetailKind.PHONE, DetailKind.MOBILE, DetailKind.FAX):
        return "".join(ch for ch in value if ch.isdigit())
    return value.strip()


def to_wire(contact: Contact, settings: SuperOfficeSettings, options: Mapping[str, Any]) -> Mapped:
    """The ContactEntity for `contact`, where each wire field came from, and what does not fit."""
    m = Mapped()
    c = contact
    chosen = _options(options, m)

    name, name_source = _name(c)
    m.put("Name", name, name_source)
    if name_source == "lastName" and c.first_name:
        # "first last": both names are in the contact name (a wire path holds one source, so the other part gets a
        # path of its own). The longer one is the source: a name too long for the column is that field's error.
        if utf16_units(c.first_name) > utf16_units(c.last_name or ""):
            m.sources["Name"] = "firstName"
            m.sources["Name (last part)"] = "lastName"
        else:
            m.sources["Name (first part)"] = "firstName"
    if name is None:
        m.errors.append(
            FieldError(
                field="organisation",
                code=ErrorCode.REQUIRED,
                message="SuperOffice needs a contact name: give organisation, displayName, firstName or lastName",
                vendor_field="Name",
            )
        )
    m.put("Department", c.department, "department")
    m.put("Description", c.notes, "notes")
    m.put("DbiKey", c.id, "id")

    category = chosen.categoryId if chosen.categoryId is not None else settings.category_id
    business = chosen.businessId if chosen.businessId is not None else settings.business_id
    if category is not None:
        m.put("Category.Id", category, CATEGORY_SOURCE if chosen.categoryId is not None else "")
    if business is not None:
        m.put("Business.Id", business, BUSINESS_SOURCE if chosen.businessId is not None else "")

    job_title = c.job_title if settings.job_title_field else None
    has_person = settings.persons_inline and any(
        v is not None for v in (c.first_name, c.middle_name, c.last_name, c.title, job_title)
    )
    if has_person:
        m.put("Persons[0].Firstname", c.first_name, "firstName")
        m.put("Persons[0].MiddleName", c.middle_name, "middleName")
        m.put("Persons[0].Lastname", c.last_name, "lastName")
        m.put("Persons[0].Mrmrs", c.title, "title")
        if settings.job_title_field:
            m.put(f"Persons[0].{settings.job_title_field}", c.job_title, "jobTitle")

    _details(c.details, has_person, m)
    _address(c.address, settings, m)

    m.payload = nest(m.payload)
    return m


def _options(options: Mapping[str, Any], m: Mapped) -> SuperOfficeOptions:
    try:
        return SuperOfficeOptions.model_validate(options)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            path = render_path(err["loc"])
            m.errors.append(
                FieldError(
                    field=f"{OPTIONS_PATH}.{path}",
                    code=error_code(err["type"]),
                    message=error_message(err),
                    vendor_field={"categoryId": "Category", "businessId": "Business"}.get(path),
                )
            )
        return SuperOfficeOptions()


def _name(c: Contact) -> tuple[str | None, str]:
    """The contact name and the canonical field it came from."""
    if c.organisation:
        return c.organisation, "organisation"
    if c.display_name:
        return c.display_name, "displayName"
    person = person_name(c.first_name, c.last_name)
    if person:
        return person, "lastName" if c.last_name else "firstName"
    return None, "organisation"


def person_name(first: str | None, last: str | None) -> str:
    """The person's name as "first last", leaving out what is missing (a contact name without an organisation)."""
    return " ".join(part for part in (first, last) if part)


def _details(details: Sequence[ContactDetail], has_person: bool, m: Mapped) -> None:
    # The preferred detail leads its list (SuperOffice treats the first of a list as the main one).
    order = sorted(range(len(details)), key=lambda i: not details[i].preferred)
    mobile = next((i for i in order if details[i].kind is DetailKind.MOBILE), None) if has_person else None
    if mobile is not None:
        m.put("Persons[0].MobilePhone", details[mobile].value, f"details[{mobile}].value")
    counts: dict[str, int] = {}
    for i in order:
        d = details[i]
        if i == mobile:
            continue
        target = DETAIL_LISTS.get(d.kind)
        if target is None:
            m.warnings.append(f"details[{i}]: SuperOffice has no list for {d.kind.value} details, not sent")
            continue
        if d.kind is DetailKind.MOBILE:
            m.warnings.append(f"details[{i}]: sent as a company phone (SuperOffice's person holds one mobile)")
        n = counts.get(target, 0)
        counts[target] = n + 1
        at = f"{target}[{n}]"
        # The kind decides the list an entry is in; `preferred` decides which entry leads the list.
        m.sources[at] = f"details[{i}].kind"
        m.sources.setdefault(target, f"details[{i}].preferred")
        m.put(f"{at}.Value", d.value, f"details[{i}].value")
        m.put(f"{at}.StrippedValue", stripped(d.kind, d.value), f"details[{i}].value")
        m.put(f"{at}.Description", d.label, f"details[{i}].label")


def _address(address: Address | None, settings: SuperOfficeSettings, m: Mapped) -> None:
    if address is None:
        return
    a = address
    lines = list(a.lines)
    if len(lines) > ADDRESS_LINES:
        m.warnings.append(
            f"address.lines[{ADDRESS_LINES - 1}:]: SuperOffice has {ADDRESS_LINES} address lines; "
            f"lines[{ADDRESS_LINES - 1}:] joined into Address3"
        )
        lines = [*lines[: ADDRESS_LINES - 1], ", ".join(lines[ADDRESS_LINES - 1 :])]
    postal = "Address.Postal"
    m.put(f"{postal}.AtypeIdx", POSTAL_ADDRESS_TYPE, "address")
    for n, line in enumerate(lines, start=1):
        m.put(f"{postal}.Address{n}", line, f"address.lines[{n - 1}]")
    m.put(f"{postal}.City", a.city, "address.city")
    m.put(f"{postal}.State", a.region, "address.region")
    m.put(f"{postal}.Zipcode", a.post_code, "address.postCode")
    m.put("Address.Wgs84Latitude", a.latitude, "address.latitude")
    m.put("Address.Wgs84Longitude", a.longitude, "address.longitude")
    if a.country is not None:
        m.put("Country.CountryId", country_id(a.country, settings.country_ids), "address.country")
        m.put("Country.TwoLetterISOCountry", a.country, "address.country")


def from_wire(payload: Mapping[str, Any], job_title_field: str = "Position") -> dict[str, Any]:
    """The canonical contact (camelCase, defaults left out) that a ContactEntity body or record holds (`jobTitle`
    read from the person's `job_title_field`).

    Lossy where SuperOffice is: details come back grouped (e-mails, the person's mobile, phones, faxes, urls) and
    without `preferred`; a name that is not the person's "first last" comes back as the organisation; company
    phones come back as PHONE.
    """
    persons = payload.get("Persons") or []
    person: Mapping[str, Any] = persons[0] if persons and isinstance(persons[0], dict) else {}
    details: list[dict[str, Any]] = []
    details.extend(_elements(payload.get("Emails"), DetailKind.EMAIL))
    if person.get("MobilePhone"):
        details.append({"kind": DetailKind.MOBILE.value, "value": person["MobilePhone"]})
    details.extend(_elements(payload.get("Phones"), DetailKind.PHONE))
    details.extend(_elements(payload.get("Faxes"), DetailKind.FAX))
    details.extend(_elements(payload.get("Urls"), DetailKind.WEB))
    name = payload.get("Name") or None
    derived = person_name(person.get("Firstname"), person.get("Lastname"))
    out = {
        "id": payload.get("DbiKey") or None,
        "organisation": name if name != derived else None,
        "title": person.get("Mrmrs") or None,
        "firstName": person.get("Firstname") or None,
        "middleName": person.get("MiddleName") or None,
        "lastName": person.get("Lastname") or None,
        "jobTitle": (person.get(job_title_field) or None) if job_title_field else None,
        "department": payload.get("Department") or None,
        "notes": payload.get("Description") or None,
        "details": details or None,
        "address": _address_from_wire(payload.get("Address"), payload.get("Country")),
    }
    return _present(out)


def _elements(items: Any, kind: DetailKind) -> list[dict[str, Any]]:
    out = []
    for item in items or []:
        if isinstance(item, dict) and item.get("Value"):
            out.append(_present({"kind": kind.value, "value": item["Value"], "label": item.get("Description") or None}))
    return out


def _address_from_wire(address: Any, country: Any) -> dict[str, Any] | None:
    a: Mapping[str, Any] = address if isinstance(address, dict) else {}
    raw_postal = a.get("Postal")
    postal: Mapping[str, Any] = raw_postal if isinstance(raw_postal, dict) else {}
    lines = [postal[f"Address{n}"] for n in range(1, ADDRESS_LINES + 1) if postal.get(f"Address{n}")]
    iso = country.get("TwoLetterISOCountry") if isinstance(country, dict) else None
    data = _present(
        {
            "lines": lines or None,
            "city": postal.get("City") or None,
            "region": postal.get("State") or None,
            "postCode": postal.get("Zipcode") or None,
            "country": iso or None,
            "latitude": a.get("Wgs84Latitude"),
            "longitude": a.get("Wgs84Longitude"),
        }
    )
    return data or None


def _present(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def put_body(
    current: Mapping[str, Any],
    payload: Mapping[str, Any],
    previous: Mapping[str, Any] | None,
    job_title_field: str = "Position",
) -> tuple[dict[str, Any], int | None]:
    """The whole entity a PUT sends: the record as read, with every field the gateway owns replaced.

    PUT replaces the whole entity, so what the gateway does not own (owner, interests, other persons, user-defined
    fields, list items nobody chose, the street address) is sent back as SuperOffice gave it. Of `Address` the
    gateway owns `ADDRESS_OWNED`; of its person, `PERSON_FIELDS` and the `job_title_field`. When the contact no
    longer has a person (no name, title, job title or mobile left) while the last payload sent had one, that person
    is left out, as a removed Department is cleared. Returns the body and the index of the gateway's person in its
    `Persons` (None when there is none).
    """
    body = {k: v for k, v in current.items() if k not in ANSWER_ONLY}
    for key, empty in OWNED_FIELDS.items():
        body[key] = payload.get(key, empty)
    held = current.get("Address")
    address = {k: v for k, v in (held if isinstance(held, dict) else {}).items() if k not in ADDRESS_OWNED}
    address.update({k: v for k, v in (payload.get("Address") or {}).items() if k in ADDRESS_OWNED})
    body["Address"] = address or None
    for key in SET_WHEN_GIVEN:
        if key in payload:
            body[key] = payload[key]
    persons = [p for p in current.get("Persons") or [] if isinstance(p, dict)]
    ours = (payload.get("Persons") or [None])[0]
    index: int | None = None
    if isinstance(ours, dict):
        # A lone person is the gateway's unless the last payload it sent is known and had none: then it is someone
        # else's (added at SuperOffice), and the gateway's person is added beside it.
        lone_is_ours = previous is None or isinstance(((previous.get("Persons") or [None])[0]), dict)
        index = _our_person(persons, ours, previous, lone_is_ours=lone_is_ours)
        merged = {k: v for k, v in (persons[index] if index is not None else {}).items() if k not in ANSWER_ONLY}
        for key in (*PERSON_FIELDS, job_title_field) if job_title_field else PERSON_FIELDS:
            merged[key] = ours.get(key)
        if index is None:
            index = len(persons)
            persons.append(merged)
        else:
            persons[index] = merged
    else:
        before = ((previous or {}).get("Persons") or [None])[0]
        if isinstance(before, dict):
            gone = _our_person(persons, before, None, lone_is_ours=False)
            if gone is not None:
                del persons[gone]
    body["Persons"] = [{k: v for k, v in p.items() if k not in ANSWER_ONLY} for p in persons]
    return body, index


#: Where each `SET_WHEN_GIVEN` field comes from, for the warning that it stays.
_KEPT_SOURCES = {
    "Country": "address.country",
    "Category": "vendorOptions.superoffice.categoryId",
    "Business": "vendorOptions.superoffice.businessId",
}


def kept(payload: Mapping[str, Any], previous: Mapping[str, Any] | None) -> tuple[str, ...]:
    """Warnings for the `SET_WHEN_GIVEN` fields the last payload sent had and this one has not: SuperOffice has no
    "none" for them, so the PUT leaves what the record holds (the value sent before)."""
    return tuple(
        f"{_KEPT_SOURCES[key]}: removed, but a SuperOffice contact always has a {key.lower()}; the one sent before "
        "stays"
        for key in SET_WHEN_GIVEN
        if previous is not None and previous.get(key) is not None and payload.get(key) is None
    )


def _our_person(
    persons: Sequence[Mapping[str, Any]],
    ours: Mapping[str, Any],
    previous: Mapping[str, Any] | None,
    *,
    lone_is_ours: bool,
) -> int | None:
    """Which of the record's persons is the gateway's: the one named as last sent, else as now, else (when
    `lone_is_ours`) the only one.

    A card the gateway made holds one person, so a lone person is its own when the gateway sent one before, or when
    what it sent is not known (an adopted record, a link from before payloads were kept): renamed at SuperOffice, it
    is still the gateway's. Among several, only a name match counts; so it does when removing the gateway's person
    (a lone person under another name may be someone a SuperOffice user added after deleting the gateway's).
    """
    candidates = [ours]
    before = ((previous or {}).get("Persons") or [None])[0]
    if isinstance(before, dict):
        candidates.insert(0, before)
    for wanted in candidates:
        key = (wanted.get("Firstname") or "", wanted.get("Lastname") or "")
        for i, person in enumerate(persons):
            if (person.get("Firstname") or "", person.get("Lastname") or "") == key:
                return i
    return 0 if lone_is_ours and len(persons) == 1 else None
