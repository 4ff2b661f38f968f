"""The canonical contact: one model, the universal rules, and the paths errors point at.

Field names are snake_case in Python and camelCase (the GraphQL input names) by alias, so an error's `loc` rendered
by alias is exactly the caller's input path (`details[1].value`).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from enum import Enum
from typing import Annotated, Any, Self

import orjson
import pycountry
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

from resolvers.results import ErrorCode, FieldError

#: ISO 3166-1 alpha-2 codes, from pycountry (kept current with the standard, unlike a hand-kept list).
ISO_3166_ALPHA2 = frozenset(c.alpha_2 for c in pycountry.countries)

# Printable: no control characters (C0, DEL, C1) anywhere in the id.
_PRINTABLE = re.compile(r"^[^\x00-\x1f\x7f-\x9f]+$")
# A UTF-16 surrogate code point: never a character on its own. JSON's `"\ud800"` escape (read by json.loads) makes
# one; no UTF-8 text, no vendor's JSON encoder, SQLite nor PostgreSQL can hold it.
_SURROGATE = re.compile("[\ud800-\udfff]")
# Deliberately simple: one @, something before it, a dot in the domain, no spaces.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class DetailKind(Enum):
    """What kind of contact detail a value is."""

    PHONE = "PHONE"
    MOBILE = "MOBILE"
    EMAIL = "EMAIL"
    FAX = "FAX"
    WEB = "WEB"
    OTHER = "OTHER"


def _printable_id(value: str) -> str:
    if not _PRINTABLE.fullmatch(value) or value != value.strip():
        raise PydanticCustomError("invalid_format", "must be printable characters without leading or trailing spaces")
    return value


def _not_future(value: date) -> date:
    # A day ahead of UTC: somewhere it is already tomorrow.
    if value > (datetime.now(UTC) + timedelta(days=1)).date():
        raise PydanticCustomError("future_date", "must not be in the future")
    return value


def _country(value: str) -> str:
    if value not in ISO_3166_ALPHA2:
        raise PydanticCustomError("invalid_format", "must be an ISO 3166-1 alpha-2 country code such as GB or AU")
    return value


#: Most details or locations one contact may carry, and most street lines of an address: no vendor takes more, and
#: a huge list is refused at once (TOO_MANY) rather than validated item by item.
MAX_LIST_ITEMS = 50
MAX_ADDRESS_LINES = 10


class CanonicalModel(BaseModel):
    """Base of every canonical model: camelCase aliases, no unknown fields, immutable."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        str_strip_whitespace=False,
    )


# C0 and C1 control characters and DEL: no vendor field is meant to hold them (a NUL ends a C string, CR/LF break a
# multipart header or a log line). Multi-line text (notes, considerations) may hold tab, CR and LF.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CONTROL_MULTILINE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _text(control: re.Pattern[str], allowed: str) -> AfterValidator:
    """Text that is not only spaces (a vendor would store them as a value; "" or no field means none) and holds no
    control character `control` matches (`allowed` says which ones it lets through)."""

    def check(value: str) -> str:
        if value and not value.strip():
            raise PydanticCustomError("blank", "must not be only spaces: leave the field out instead")
        if control.search(value):
            raise PydanticCustomError("control_character", f"must not hold control characters{allowed}")
        return value

    return AfterValidator(check)


#: Text of one line (names, titles, a detail's value, an address line...).
Line = Annotated[str, _text(_CONTROL, " (U+0000-U+001F, U+007F-U+009F)")]
#: Text that may span lines (notes, considerations).
Multiline = Annotated[str, _text(_CONTROL_MULTILINE, " other than tab, CR and LF")]

ContactId = Annotated[str, Field(min_length=1, max_length=50), AfterValidator(_printable_id)]
CountryCode = Annotated[str, AfterValidator(_country)]


class ContactDetail(CanonicalModel):
    """A phone number, e-mail address, web address or other way to reach the contact."""

    kind: DetailKind
    value: Line = Field(min_length=1)
    label: Line | None = None
    preferred: bool = False

    @model_validator(mode="after")
    def _email_looks_like_email(self) -> Self:
        if self.kind is DetailKind.EMAIL:
            if not _EMAIL.fullmatch(self.value):
                raise PydanticCustomError("invalid_email", "value: must be an e-mail address such as name@example.com")
            local = self.value.rpartition("@")[0]
            # RFC 5321 4.5.3.1: a local part of at most 64 octets, a path of at most 256 (254 for the address).
            if len(local.encode()) > 64 or len(self.value.encode()) > 254:
                raise PydanticCustomError(
                    "invalid_email", "value: must be an e-mail address of at most 254 bytes, 64 before the @"
                )
        return self


class Address(CanonicalModel):
    """A postal address; `lines` are the street lines, most specific first."""

    lines: list[Line] = Field(default_factory=list, max_length=MAX_ADDRESS_LINES)
    city: Line | None = None
    region: Line | None = None
    post_code: Line | None = None
    country: CountryCode | None = None
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)


class Location(CanonicalModel):
    """A site the contact is associated with (Oneserve locations)."""

    ref: Line = Field(min_length=1)
    preferred: bool = False
    start_date: date | None = None
    end_date: date | None = None
    usage_type_id: int | None = None

    @model_validator(mode="after")
    def _dates_in_order(self) -> Self:
        if self.start_date and self.end_date and self.start_date > self.end_date:
            raise PydanticCustomError("date_order", "endDate: must not be before startDate")
        return self


def _one_preferred(details: list[ContactDetail]) -> list[ContactDetail]:
    if sum(1 for d in details if d.preferred) > 1:
        raise PydanticCustomError("too_many_preferred", "at most one detail may be preferred")
    return details


class Contact(CanonicalModel):
    """The one contact model every vendor mapping starts from."""

    id: ContactId
    title: Line | None = None
    salutation: Line | None = None
    first_name: Line | None = None
    middle_name: Line | None = None
    last_name: Line | None = None
    display_name: Line | None = None
    job_title: Line | None = None
    department: Line | None = None
    organisation: Line | None = None
    birth_date: Annotated[date, AfterValidator(_not_future)] | None = None
    notes: Multiline | None = None
    considerations: Multiline | None = None
    details: Annotated[list[ContactDetail], AfterValidator(_one_preferred)] = Field(
        default_factory=list, max_length=MAX_LIST_ITEMS
    )
    address: Address | None = None
    locations: list[Location] = Field(default_factory=list, max_length=MAX_LIST_ITEMS)
    #: Per-vendor overrides of configured defaults, keyed by vendor name (`oneserve`, `eros`, ...). Each connector
    #: validates its own entry.
    vendor_options: dict[str, dict[str, Any]] = Field(default_factory=dict)

    def content_hash(self) -> str:
        """A stable hash of the whole contact (used to tell a changed contact from a repeat)."""
        return payload_hash(self.model_dump(mode="json", by_alias=True))


#: Canonical field name -> the caller's name for it (`first_name` -> `firstName`), for every canonical model.
_FIELD_ALIASES = {
    name: field.alias or name
    for model in (Contact, ContactDetail, Address, Location)
    for name, field in model.model_fields.items()
}


def payload_hash(payload: Any) -> str:
    """SHA-256 of a JSON-able value with sorted keys: equal payloads, equal hashes."""
    return hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()


def render_path(loc: Iterable[int | str]) -> str:
    """`("details", 1, "value")` -> `details[1].value`; a surrogate in a key (a vendor option's name, say) is written
    as its `\\udXXX` escape, so the path is always text an answer can carry."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            part = str(part)
            if not part.isascii():
                part = _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", part)
            out += f".{part}" if out else part
    return out


# Pydantic error types -> the documented codes. Anything else is INVALID_FORMAT.
_PYDANTIC_CODES: dict[str, ErrorCode] = {
    "missing": ErrorCode.REQUIRED,
    "string_too_short": ErrorCode.REQUIRED,
    "too_short": ErrorCode.REQUIRED,
    "string_too_long": ErrorCode.TOO_LONG,
    "too_long": ErrorCode.TOO_MANY,
    "greater_than": ErrorCode.OUT_OF_RANGE,
    "greater_than_equal": ErrorCode.OUT_OF_RANGE,
    "less_than": ErrorCode.OUT_OF_RANGE,
    "less_than_equal": ErrorCode.OUT_OF_RANGE,
    "date_order": ErrorCode.OUT_OF_RANGE,
    "future_date": ErrorCode.OUT_OF_RANGE,
    "literal_error": ErrorCode.UNKNOWN_TYPE,
    "enum": ErrorCode.UNKNOWN_TYPE,
    "unknown_type": ErrorCode.UNKNOWN_TYPE,
    "too_many_preferred": ErrorCode.TOO_MANY,
    "extra_forbidden": ErrorCode.NOT_SUPPORTED,
}


def error_code(pydantic_type: str) -> ErrorCode:
    """The documented code for a pydantic error type."""
    return _PYDANTIC_CODES.get(pydantic_type, ErrorCode.INVALID_FORMAT)


#: Patterns of the wire models, in words.
_PATTERN_WORDS = {
    "^[0-9]+$": "digits only",
    "^[A-Z]{2}$": "two capital letters (an ISO 3166-1 alpha-2 code)",
}

#: pydantic's type errors, in the gateway's words.
_TYPE_WORDS = {
    "uuid_parsing": "must be a UUID (32 hexadecimal digits, as 8-4-4-4-12)",
    "uuid_type": "must be a UUID (32 hexadecimal digits, as 8-4-4-4-12)",
    "uuid_version": "must be a UUID of another version",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be text",
    "list_type": "must be a list",
    "dict_type": "must be an object",
    "model_type": "must be an object",
    "extra_forbidden": "unknown field",
}


def error_message(err: Mapping[str, Any]) -> str:
    """The message for one pydantic error, in the words every other message of the gateway uses ("required",
    "at most 50 characters", "must be at least -90"), not pydantic's ("String should have at most 50 characters",
    "Input should be greater than or equal to -90"); a message a validator of ours wrote is kept as it is."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "missing" or (kind in {"string_too_short", "too_short"} and ctx.get("min_length", 1) <= 1):
        return "required"
    # A length checked after validation (a secret's) is reported as too_short/too_long of a "Value" (a list's of a
    # "List"): of a string, characters, whether or not the error carries its input.
    text = isinstance(err.get("input"), str) or ctx.get("field_type") == "Value"
    if kind == "string_too_long" or (kind == "too_long" and text):
        return f"at most {ctx['max_length']} characters{ctx.get('unit_note', '')}"
    if kind == "string_too_short" or (kind == "too_short" and text):
        return f"at least {ctx['min_length']} characters"
    if kind == "too_long":
        given = f" ({ctx['actual_length']} given)" if ctx.get("actual_length") is not None else ""
        return f"at most {ctx['max_length']} items{given}"
    if kind == "too_short":
        return f"at least {ctx['min_length']} items"
    if kind == "string_pattern_mismatch":
        pattern = str(ctx.get("pattern", ""))
        return f"must be {_PATTERN_WORDS[pattern]}" if pattern in _PATTERN_WORDS else f"must match {pattern}"
    if kind in {"literal_error", "enum"} and "expected" in ctx:
        return f"must be {ctx['expected']}"
    if kind in _TYPE_WORDS:
        return _TYPE_WORDS[kind]
    bounds = {
        "greater_than_equal": ("must be at least", "ge"),
        "less_than_equal": ("must be at most", "le"),
        "greater_than": ("must be more than", "gt"),
        "less_than": ("must be less than", "lt"),
    }
    if kind in bounds and bounds[kind][1] in ctx:
        words, key = bounds[kind]
        bound = ctx[key]
        # A float field holds its bounds as floats: -90, not -90.0.
        return f"{words} {int(bound) if isinstance(bound, float) and bound.is_integer() else bound}"
    return str(err["msg"])


def _camel_path(loc: list[int | str]) -> list[int | str]:
    """An error's location in the caller's names: input given by field name (`first_name`, as the GraphQL layer
    gives it) is reported by alias (`firstName`); a vendor option's own keys, under `vendorOptions`, stay as sent."""
    out: list[int | str] = []
    for index, part in enumerate(loc):
        if isinstance(part, str) and part in _FIELD_ALIASES:
            out.append(_FIELD_ALIASES[part])
            if part == "vendor_options":
                return out + loc[index + 1 :]
        else:
            out.append(part)
            if part == "vendorOptions":
                return out + loc[index + 1 :]
    return out


def field_errors(exc: ValidationError) -> list[FieldError]:
    """Every violation in a canonical-model ValidationError, as FieldErrors naming the input path.

    Model-level validators name the sub-field in their message (`value: ...`); it is moved into the path.
    """
    out: list[FieldError] = []
    for err in exc.errors(include_url=False):
        loc: list[int | str] = _camel_path(
            [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        )
        message = error_message(err)
        head, sep, rest = message.partition(": ")
        if sep and err["type"] in {"invalid_email", "date_order"}:
            if head != render_path(loc[-1:]):
                loc.append(head)
            message = rest
        out.append(FieldError(field=render_path(loc), code=error_code(err["type"]), message=message))
    return out


def parse_contact(data: dict[str, Any]) -> Contact | list[FieldError]:
    """Validate raw input (camelCase keys) into a Contact, or every universal-rule violation.

    Text holding an unpaired surrogate (`\\ud800` alone) is INVALID_FORMAT wherever it is, vendor options and their
    keys included: it is no Unicode text, and neither a vendor's JSON nor the store could take it."""
    broken = [
        FieldError(field=render_path(_camel_path(list(loc))), code=ErrorCode.INVALID_FORMAT, message=_NOT_UNICODE)
        for loc in unpaired_surrogates(data)
    ]
    try:
        contact = Contact.model_validate(data)
    except ValidationError as exc:
        # pydantic's own complaint about the same text (`string_unicode`), or about a key it could not read (no path
        # at all), adds nothing to the errors that name the field.
        reported = {e.field for e in broken} | ({""} if broken else set())
        return broken + [e for e in field_errors(exc) if e.field not in reported]
    return broken or contact


_NOT_UNICODE = "must be Unicode text: it holds an unpaired UTF-16 surrogate (a lone \\ud800-\\udfff escape)"


def unpaired_surrogates(value: Any, loc: tuple[int | str, ...] = ()) -> Iterator[tuple[int | str, ...]]:
    """The path of every string (or mapping key) in `value` that holds an unpaired surrogate."""
    if isinstance(value, str):
        if not value.isascii() and _SURROGATE.search(value):
            yield loc
    elif isinstance(value, dict):
        for key, item in value.items():
            if isinstance(key, str) and not key.isascii() and _SURROGATE.search(key):
                yield (*loc, key)
                continue
            yield from unpaired_surrogates(item, (*loc, key))
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            yield from unpaired_surrogates(item, (*loc, index))


def unique(seq: Sequence[str]) -> list[str]:
    """Order-preserving de-duplication."""
    return list(dict.fromkeys(seq))
