"""Canonical contact <-> Eros SaveContact, one field per line (pure: no I/O).

Decisions (documented because Eros' docs leave them open):
- Every canonical detail becomes one `ContactDetails` entry, in order; the address becomes one more entry after them,
  with `IsAddress=true` and its fields under `ContactAddress.Address`.
- An address with nothing in it (`address: {}`) is no address: Eros would refuse an address entry without an
  address (it needs Latitude and Longitude), and there is nothing to send.
- Eros has two address lines. A third and further line are joined into `AddressLineTwo` with ", " (and a warning
  says so) rather than refused: a three-line postal address is ordinary and other vendors take it.
- `jobTitle` goes to `EmploymentRole` ("Contact Employment Role"): the closest Eros field, ASSUMED to mean the same.
- `organisation` goes to one of Eros' company fields (known: TradingName, LegalName); which one is ASSUMED, so it is
  the `organisation_field` setting (default TradingName, the name a business is known by; "" sends it nowhere).
- Seed 001 marks `ContactDetails` required, as it does `ContactRoles`; whether an empty list passes is not known.
  By default (`details_required` false) a contact with neither details nor an address is sent with an empty list;
  with the setting it is refused before sending, REQUIRED on `details`. (ContactRoles always needs one role: a
  contact without a role is no one's.)
- `ContactType` and `ContactRoles` come from `vendorOptions.eros` (`contactTypeId`, `roleIds`), else from settings;
  either way their errors point at `vendorOptions.eros.*`, the only place a caller can change them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from uuid import UUID

from resolvers.model import Contact, ContactDetail, DetailKind
from resolvers.results import ErrorCode, FieldError
from resolvers.vendors.base import Mapped, nest

if TYPE_CHECKING:
    from resolvers.vendors.eros.connector import ErosSettings

#: ASSUMED contact method names per detail kind (the tenant's list items); `method_names` in settings overrides.
DEFAULT_METHOD_NAMES: dict[str, str] = {
    "phone": "Phone",
    "mobile": "Mobile",
    "email": "Email",
    "fax": "Fax",
    "web": "Website",
    "other": "Other",
}
#: ASSUMED contact method name of the address detail; `address_method_name` in settings overrides.
DEFAULT_ADDRESS_METHOD_NAME = "Address"

#: The keys `vendorOptions.eros` accepts.
OPTION_KEYS = ("contactTypeId", "roleIds")
CONTACT_TYPE_SOURCE = "vendorOptions.eros.contactTypeId"
ROLE_IDS_SOURCE = "vendorOptions.eros.roleIds"


def to_wire(contact: Contact, settings: ErosSettings, options: Mapping[str, Any]) -> Mapped:
    """The SaveContact request for `contact`, where each wire field came from, and what does not fit."""
    m = Mapped()
    c = contact
    for key in options:
        if key not in OPTION_KEYS:
            m.errors.append(
                FieldError(
                    field=f"vendorOptions.eros.{key}",
                    code=ErrorCode.NOT_SUPPORTED,
                    message=f"unknown Eros option; expected one of {', '.join(OPTION_KEYS)}",
                )
            )

    m.put("SuiteDataSourceInstanceId", str(settings.data_source_instance_id), "")
    m.put("AlternateKey", c.id, "id")
    # False lets Eros skip a contact whose hash has not changed (seed 001), as the gateway does too.
    m.put("IgnoreHash", False, "")

    m.put("Contact.ContactType", _guid(options.get("contactTypeId", settings.contact_type_id)), CONTACT_TYPE_SOURCE)
    role_ids = options.get("roleIds", settings.role_ids)
    m.put("Contact.ContactRoles", [] if isinstance(role_ids, list) else role_ids, ROLE_IDS_SOURCE)
    for i, role_id in enumerate(role_ids if isinstance(role_ids, list) else []):
        m.put(f"Contact.ContactRoles[{i}].RoleId", _guid(role_id), f"{ROLE_IDS_SOURCE}[{i}]")

    m.put("Contact.Title", c.title, "title")
    m.put("Contact.Salutation", c.salutation, "salutation")
    m.put("Contact.FirstName", c.first_name, "firstName")
    m.put("Contact.MiddleName", c.middle_name, "middleName")
    m.put("Contact.Surname", c.last_name, "lastName")
    m.put("Contact.FullName", c.display_name, "displayName")
    m.put("Contact.BirthDate", c.birth_date.isoformat() if c.birth_date else None, "birthDate")
    m.put("Contact.Notes", c.notes, "notes")
    m.put("Contact.EmploymentRole", c.job_title, "jobTitle")
    if settings.organisation_field:
        m.put(f"Contact.{settings.organisation_field}", c.organisation, "organisation")

    email = _primary(c.details, DetailKind.EMAIL)
    mobile = _primary(c.details, DetailKind.MOBILE)
    m.put("Contact.PrimaryEmail", _value(c, email), f"details[{email}].value" if email is not None else "details")
    m.put("Contact.PrimaryMobile", _value(c, mobile), f"details[{mobile}].value" if mobile is not None else "details")

    m.put("Contact.ContactDetails", [], "details")
    for i, d in enumerate(c.details):
        at = f"Contact.ContactDetails[{i}]"
        m.put(f"{at}.ContactMethodName", settings.method_names[d.kind.value.lower()], f"details[{i}].kind")
        m.put(f"{at}.ContactDetails", d.value, f"details[{i}].value")
        m.put(f"{at}.Notes", d.label, f"details[{i}].label")
        m.put(f"{at}.IsPrimaryContactMethod", d.preferred, f"details[{i}].preferred")
        m.put(f"{at}.IsAddress", False, f"details[{i}]")
        m.put(f"{at}.OrderContactMethod", i, f"details[{i}]")

    if c.address is not None and c.address.model_dump(exclude_defaults=True):
        a = c.address
        n = len(c.details)
        at = f"Contact.ContactDetails[{n}]"
        address = f"{at}.ContactAddress.Address"
        m.put(f"{at}.ContactMethodName", settings.address_method_name, "address")
        m.put(f"{at}.IsAddress", True, "address")
        m.put(f"{at}.OrderContactMethod", n, "address")
        m.put(f"{address}.AddressLineOne", a.lines[0] if a.lines else None, "address.lines[0]")
        m.put(f"{address}.AddressLineTwo", ", ".join(a.lines[1:]) or None, "address.lines[1]")
        m.put(f"{address}.SuburbName", a.city, "address.city")
        m.put(f"{address}.StateShortName", a.region, "address.region")
        m.put(f"{address}.PostCode", a.post_code, "address.postCode")
        m.put(f"{address}.ISOCountryCode", a.country, "address.country")
        m.put(f"{address}.Latitude", a.latitude, "address.latitude")
        m.put(f"{address}.Longitude", a.longitude, "address.longitude")
        if len(a.lines) > 2:
            m.warnings.append("address.lines[2:]: Eros has two address lines; lines[1:] joined into AddressLineTwo")
    elif settings.details_required and not c.details:
        m.errors.append(
            FieldError(
                field="details",
                code=ErrorCode.REQUIRED,
                message="Eros needs at least one contact detail or an address",
                vendor_field="Contact.ContactDetails",
            )
        )

    m.payload = nest(m.payload)
    return m


def from_wire(payload: Mapping[str, Any], method_names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The canonical contact (camelCase, like the GraphQL input) that a SaveContact body or stored record holds.

    Defaults are left out, like `model_dump(exclude_defaults=True)`; ContactType and ContactRoles are tenant
    configuration, not contact data, so they do not come back as vendorOptions.
    """
    kinds = {name: kind.upper() for kind, name in (method_names or DEFAULT_METHOD_NAMES).items()}
    contact: Mapping[str, Any] = payload.get("Contact") or {}
    details: list[dict[str, Any]] = []
    address: dict[str, Any] | None = None
    for d in sorted(contact.get("ContactDetails") or [], key=_order):
        if d.get("IsAddress"):
            if address is None:
                address = _address_from_wire(((d.get("ContactAddress") or {}).get("Address")) or {})
            continue
        detail = {
            "kind": kinds.get(d.get("ContactMethodName", ""), DetailKind.OTHER.value),
            "value": d.get("ContactDetails"),
            "label": d.get("Notes"),
            "preferred": True if d.get("IsPrimaryContactMethod") else None,
        }
        details.append(_present(detail))
    birth = contact.get("BirthDate")
    out = {
        "id": payload.get("AlternateKey"),
        "title": contact.get("Title"),
        "salutation": contact.get("Salutation"),
        "firstName": contact.get("FirstName"),
        "middleName": contact.get("MiddleName"),
        "lastName": contact.get("Surname"),
        "displayName": contact.get("FullName"),
        "birthDate": str(birth)[:10] if birth else None,
        "notes": contact.get("Notes"),
        "jobTitle": contact.get("EmploymentRole"),
        "organisation": contact.get("TradingName") or contact.get("LegalName"),
        "details": details or None,
        "address": address,
    }
    return _present(out)


def _address_from_wire(a: Mapping[str, Any]) -> dict[str, Any]:
    lines = [line for line in (a.get("AddressLineOne"), a.get("AddressLineTwo")) if line]
    return _present(
        {
            "lines": lines or None,
            "city": a.get("SuburbName"),
            "region": a.get("StateShortName"),
            "postCode": a.get("PostCode"),
            "country": a.get("ISOCountryCode"),
            "latitude": a.get("Latitude"),
            "longitude": a.get("Longitude"),
        }
    )


def _order(detail: Mapping[str, Any]) -> int:
    order = detail.get("OrderContactMethod")
    return order if isinstance(order, int) else 0


def _value(contact: Contact, index: int | None) -> str | None:
    return contact.details[index].value if index is not None else None


def _present(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def _primary(details: list[ContactDetail], kind: DetailKind) -> int | None:
    """Index of the preferred detail of `kind`, else of the first one, else None."""
    indexes = [i for i, d in enumerate(details) if d.kind is kind]
    preferred = [i for i in indexes if details[i].preferred]
    return next(iter(preferred or indexes), None)


def _guid(value: Any) -> Any:
    """A GUID in its standard form (`8a2e4c6b-1f3d-...`, lower case), whichever form Python's UUID read (braces,
    `urn:uuid:`, no hyphens); a value that is not one is left for the wire model to refuse, naming the field."""
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, str):
        try:
            return str(UUID(value))
        except ValueError:
            return value
    return value
