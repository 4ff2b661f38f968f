"""Canonical contact <-> Valomnia contact form, one field per line (pure: no I/O).

Decisions (Valomnia's docs leave them open):
- Details fill Valomnia's fixed slots in the caller's order: the first EMAIL -> `email`, the first two PHONEs ->
  `phone`, `phone2`, the first MOBILE -> `mobile`, the first FAX -> `fax`. Every other detail (a second e-mail, a
  third phone, WEB, OTHER) is not sent, and a warning names it by its path, never its value (`details[3]: Valomnia
  holds one e-mail; ...`).
- Address lines are joined into Valomnia's one `address` field with the `address_separator` setting (", " by
  default: one readable line, as in Valomnia's own "Main street" example). `from_wire` splits on it again.
- `jobTitle` -> `fonction` ("function" in French: the contact's role at the customer).
- `customerId` comes from `vendorOptions.valomnia.customerId`, else the `customer_id` setting; its errors point at
  the option, the one place a caller can change it.
- The photo comes from `vendorOptions.valomnia.imageFileName` + `imageBase64`; it is checked here (format by its
  magic bytes, size) and travels in the payload as base64 until the connector sends it as a multipart file.
- A detail's kind picks the field its value goes to, and every address line goes into `address`: `sources`
  records those as `<field>#...` entries (no wire field is named so; coverage reads them as `<field>`).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, StrictInt, ValidationError

from resolvers.model import Contact, ContactDetail, DetailKind, error_code, error_message, render_path
from resolvers.results import ErrorCode, FieldError
from resolvers.vendors.base import Mapped
from resolvers.vendors.valomnia.wire import EMAIL_PATTERN, inspect_image

if TYPE_CHECKING:
    from resolvers.vendors.valomnia.connector import ValomniaSettings

OPTIONS_PATH = "vendorOptions.valomnia"
CUSTOMER_ID_PATH = f"{OPTIONS_PATH}.customerId"
IMAGE_NAME_PATH = f"{OPTIONS_PATH}.imageFileName"
IMAGE_DATA_PATH = f"{OPTIONS_PATH}.imageBase64"
DEFAULT_ADDRESS_SEPARATOR = ", "

#: Detail kind -> the Valomnia fields it fills, in order.
DETAIL_SLOTS: Mapping[DetailKind, tuple[str, ...]] = {
    DetailKind.EMAIL: ("email",),
    DetailKind.PHONE: ("phone", "phone2"),
    DetailKind.MOBILE: ("mobile",),
    DetailKind.FAX: ("fax",),
}
#: Every field a detail can go to.
DETAIL_FIELDS = ("email", "phone", "phone2", "mobile", "fax")
_HOLDS: Mapping[DetailKind, str] = {
    DetailKind.EMAIL: "one e-mail",
    DetailKind.PHONE: "two phone numbers (phone, phone2)",
    DetailKind.MOBILE: "one mobile number",
    DetailKind.FAX: "one fax number",
}
_NO_FIELD: Mapping[DetailKind, str] = {
    DetailKind.WEB: "web addresses",
    DetailKind.OTHER: "other details",
}
#: Valomnia detail field -> canonical kind, in the order `from_wire` returns them.
_DETAIL_KINDS = (("email", "EMAIL"), ("mobile", "MOBILE"), ("phone", "PHONE"), ("phone2", "PHONE"), ("fax", "FAX"))
#: Text fields the `max_text_length` setting applies to (customerId too: a customer reference, with useExternalId,
#: is text of the same column type, and it also travels in the lookup's query string).
TEXT_FIELDS = ("firstName", "lastName", "customerId", "fonction", "city", "postalCode", "address", *DETAIL_FIELDS)
#: Optional fields: an update sends the absent ones empty, so the record at Valomnia is exactly what was sent.
OPTIONAL_FIELDS = ("fonction", "country", "city", "postalCode", "address", *DETAIL_FIELDS)


class ValomniaOptions(BaseModel):
    """The `vendorOptions.valomnia` entry a caller may send."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The customer the contact belongs to (overrides the `customer_id` setting); a number is taken too.
    customerId: StrictInt | str | None = None
    #: The photo's file name (jpg, jpeg, gif, png or bmp).
    imageFileName: str | None = None
    #: The photo's content, base64.
    imageBase64: str | None = None


def to_wire(contact: Contact, settings: ValomniaSettings, options: Mapping[str, Any]) -> Mapped:
    """The Valomnia contact form for `contact`, where each field came from, and what does not fit."""
    m = Mapped()
    c = contact
    chosen = _options(options, m)
    customer = chosen.customerId if chosen.customerId is not None else settings.customer_id

    m.put("firstName", c.first_name, "firstName")
    m.put("lastName", c.last_name, "lastName")
    m.put("useExternalId", "true" if settings.use_external_id else None, "")
    m.put("customerId", str(customer) if customer is not None else None, CUSTOMER_ID_PATH)
    m.put("fonction", c.job_title, "jobTitle")

    a = c.address
    m.put("country", a.country if a else None, "address.country")
    m.put("city", a.city if a else None, "address.city")
    m.put("postalCode", a.post_code if a else None, "address.postCode")
    m.put("address", settings.address_separator.join(a.lines) or None if a else None, "address.lines")
    for i in range(len(a.lines) if a else 0):
        m.sources[f"address#lines[{i}]"] = f"address.lines[{i}]"

    _details(c.details, m)
    _image(chosen, m, settings.max_image_name_length)
    _lengths(m, settings.max_text_length)
    if settings.strict_email:
        _email(m)
    return m


def _email(m: Mapped) -> None:
    email = m.payload.get("email")
    if isinstance(email, str) and not EMAIL_PATTERN.fullmatch(email):
        m.errors.append(
            FieldError(
                field=m.source("email"),
                code=ErrorCode.INVALID_FORMAT,
                message="must be an e-mail address Valomnia accepts, such as name@example.com",
                vendor_field="email",
            )
        )


def _options(options: Mapping[str, Any], m: Mapped) -> ValomniaOptions:
    try:
        return ValomniaOptions.model_validate(options)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            path = render_path(err["loc"][:1])
            m.errors.append(
                FieldError(field=f"{OPTIONS_PATH}.{path}", code=error_code(err["type"]), message=error_message(err))
            )
        return ValomniaOptions()


def _details(details: Sequence[ContactDetail], m: Mapped) -> None:
    free = {kind: list(fields) for kind, fields in DETAIL_SLOTS.items()}
    for i, d in enumerate(details):
        fields = free.get(d.kind)
        if fields:
            field = fields.pop(0)
            m.put(field, d.value, f"details[{i}].value")
            m.sources[f"{field}#kind"] = f"details[{i}].kind"
        elif d.kind in _HOLDS:
            m.warnings.append(f"details[{i}]: Valomnia holds {_HOLDS[d.kind]}; not sent")
        else:
            m.warnings.append(f"details[{i}]: Valomnia has no field for {_NO_FIELD[d.kind]}; not sent")


def _image(options: ValomniaOptions, m: Mapped, max_name_length: int | None) -> None:
    name, data = options.imageFileName, options.imageBase64
    if name is None and data is None:
        return
    if name is None or data is None:
        missing, other = (IMAGE_NAME_PATH, "imageBase64") if name is None else (IMAGE_DATA_PATH, "imageFileName")
        m.errors.append(
            FieldError(
                field=missing,
                code=ErrorCode.REQUIRED,
                message=f"required with {other}",
                vendor_field="imageFile",
            )
        )
        return
    checked = inspect_image(name, data, max_name_length)
    if isinstance(checked, list):
        m.errors.extend(
            FieldError(
                field=IMAGE_NAME_PATH if problem.part == "name" else IMAGE_DATA_PATH,
                code=problem.code,
                message=problem.message,
                vendor_field="imageFile",
                vendor_code=problem.vendor_code,
            )
            for problem in checked
        )
        return
    image = {
        "filename": checked.filename,
        "contentType": checked.content_type,
        # Normalised (no data: prefix, no line breaks): the payload hash changes only when the image does.
        "content": base64.b64encode(checked.content).decode("ascii"),
    }
    m.put("imageFile", image, IMAGE_DATA_PATH)
    m.sources["imageFile.filename"] = IMAGE_NAME_PATH


def _lengths(m: Mapped, limit: int | None) -> None:
    if limit is None:
        return
    for field in TEXT_FIELDS:
        value = m.payload.get(field)
        if isinstance(value, str) and len(value) > limit:
            m.errors.append(
                FieldError(
                    field=m.source(field),
                    code=ErrorCode.TOO_LONG,
                    message=f"at most {limit} characters",
                    vendor_field=field,
                )
            )


def from_wire(payload: Mapping[str, Any], address_separator: str = DEFAULT_ADDRESS_SEPARATOR) -> dict[str, Any]:
    """Canonical camelCase data for a Valomnia contact: the form it was sent (flat strings) or the contact it answers.

    Empty strings are Valomnia's "nothing" and are left out, like defaults in `model_dump(exclude_defaults=True)`.
    Valomnia keeps no order between its detail fields: details come back as e-mail, mobile, phone, phone2, fax.
    The customer is where the contact lives, not part of it, and does not come back.
    """
    details = [{"kind": kind, "value": value} for field, kind in _DETAIL_KINDS if (value := _text(payload.get(field)))]
    joined = _text(payload.get("address"))
    address = _present(
        {
            "lines": joined.split(address_separator) if joined else None,
            "city": _text(payload.get("city")),
            "postCode": _text(payload.get("postalCode")),
            "country": _text(payload.get("country")),
        }
    )
    return _present(
        {
            "firstName": _text(payload.get("firstName")),
            "lastName": _text(payload.get("lastName")),
            "jobTitle": _text(payload.get("fonction")),
            "details": details or None,
            "address": address or None,
        }
    )


def _text(value: Any) -> str | None:
    # A form decoded with parse_qs gives lists; Valomnia's answers give "" for nothing.
    if isinstance(value, list):
        value = value[0] if value else None
    return value if isinstance(value, str) and value else None


def _present(data: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if value is not None}
