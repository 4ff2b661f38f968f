"""Oneserve's own payloads: the contact it takes and the reply it gives, with every limit of its field table.

Field names are Oneserve's (camelCase, as in the seed); constraints follow its "List of Included Fields".
Required strings carry `min_length=1` so an empty string counts as missing (the vendor's own example sends an
empty mandatory `contact1`; the gateway is deliberately stricter than that).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from resolvers.vendors.base import NotBlank

#: Oneserve's date format, `dd/MM/yyyy` in its own (Java) notation.
DATE_FORMAT = "%d/%m/%Y"
#: ASCII digits only, nothing after them (not even the newline `$` would let through).
_DATE_SHAPE = re.compile(r"([0-9]{2})/([0-9]{2})/([0-9]{4})")


def _oneserve_date(value: str) -> str:
    # strptime alone would take `9/7/2019`; the shape keeps the two-digit day and month Oneserve shows, and `date`
    # checks the calendar (what `strptime(value, DATE_FORMAT)` checked, at a tenth of its cost).
    shape = _DATE_SHAPE.fullmatch(value)
    try:
        if shape is None:
            raise ValueError(value)
        day, month, year = shape.groups()
        date(int(year), int(month), int(day))
    except ValueError:
        raise PydanticCustomError("invalid_format", "must be a date as dd/MM/yyyy") from None
    return value


Text50 = Annotated[str, Field(max_length=50)]
Text80 = Annotated[str, Field(max_length=80)]
Text200 = Annotated[str, Field(max_length=200)]
Required50 = Annotated[str, Field(min_length=1, max_length=50)]
Required80 = Annotated[str, Field(min_length=1, max_length=80)]
Required200 = Annotated[str, Field(min_length=1, max_length=200)]
OneserveDate = Annotated[str, AfterValidator(_oneserve_date)]


class OneserveModel(BaseModel):
    """Base of Oneserve request models: its field names, nothing unknown."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class OneserveLocation(OneserveModel):
    """One location the contact is associated with."""

    locationRef: Required50
    isPreferred: bool
    startDate: OneserveDate | None = None
    endDate: OneserveDate | None = None
    #: Must match a usage type id existing at the tenant; only the vendor can check that.
    usageTypeId: int | None = None


class OneserveContact(OneserveModel):
    """The body of `POST rest/contact/contact`: one contact, keyed by clientRef + contactRef."""

    #: Part of Oneserve's key: only spaces names no client.
    clientRef: Annotated[Required50, NotBlank]
    contactRef: Required50
    salutation: Required50
    forename: Required80
    surname: Required80
    contact1: Required80
    contact1Type: int
    # contact2 is 50, not 80: the vendor's table says so.
    contact2: Text50 | None = None
    contact2Type: int | None = None
    contact3: Text80 | None = None
    contact3Type: int | None = None
    contact4: Text80 | None = None
    contact4Type: int | None = None
    preferredContact: Annotated[int, Field(ge=1, le=4)]
    address1: Required200
    address2: Required200
    address3: Text200 | None = None
    address4: Text200 | None = None
    postCode: Required50
    notes: Annotated[str, Field(max_length=2000)] | None = None
    considerations: Annotated[str, Field(max_length=4000)] | None = None
    locations: list[OneserveLocation] | None = None


def max_lengths(model: type[BaseModel]) -> dict[str, int]:
    """Field -> its `max_length`, for the text fields of a wire model (read from the model, so the limits live in
    one place)."""

    def found(items: Iterable[Any]) -> int | None:
        for item in items:
            limit = getattr(item, "max_length", None)
            if isinstance(limit, int):
                return limit
            nested = found(getattr(item, "metadata", ()))  # a FieldInfo inside `Annotated`
            if nested is not None:
                return nested
        return None

    out: dict[str, int] = {}
    for name, field in model.model_fields.items():
        # `Text50 | None`: the limit sits on the union's member, not on the field.
        members = [m for a in getattr(field.annotation, "__args__", ()) for m in getattr(a, "__metadata__", ())]
        limit = found(field.metadata) or found(members)
        if limit is not None:
            out[name] = limit
    return out


class OneserveReply(BaseModel):
    """Oneserve's answer: `result` is `success` or `fail`; `result_msg` says why, `result_error_msg` more."""

    # A tolerant reader: an extra key in a reply must not turn a success into a protocol error.
    model_config = ConfigDict(extra="ignore", frozen=True)

    result: str
    result_msg: str = ""
    result_error_msg: str | None = None

    @property
    def succeeded(self) -> bool:
        """True when Oneserve stored the contact."""
        return self.result == "success"


# The vendor's own failure messages (`result_msg`), as its troubleshooting page prints them.
#: Body not one JSON object; `result_error_msg` says where reading stopped.
NOT_AN_OBJECT = "REST0002"
#: The clientRef names no client at the tenant.
UNKNOWN_CLIENT_REF = "Unable to locate client ref supplied"
#: "A field is of the wrong type or is overlong": the database refused the insert.
STATEMENT_FAILED = (
    "could not execute statement; SQL [n/a]; nested exception is org.hibernate.exception.DataException: "
    "could not execute statement"
)
#: Documented without a reason; the simulator uses it for ids the tenant does not have (assumed).
ROLLED_BACK = "Transaction rolled back because it has been marked as rollback-only"
