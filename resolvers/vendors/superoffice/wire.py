"""SuperOffice WebAPI payloads, field names exactly as its REST reference (ContactEntity and its carriers).

Docs: shared/seeds/003 (POST api/v1/Contact) and https://docs.superoffice.com/en/api/reference/restful/rest/Contact/.
Limits are the database column lengths VENDORS.md lists as known: contact name and department 219, orgNr / number1 /
number2 49, person names 99, e-mail 239, DbiKey 255, counted as SQL Server counts nvarchar (UTF-16 code units: an
emoji fills two). No other limit is invented here. What the gateway sends forbids
unknown fields; what SuperOffice answers ignores them (its carriers grow TableRight, FieldProperties, _Links, ...).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo
from pydantic_core import PydanticCustomError

from resolvers.vendors.base import NotBlank, utf16_units

# SuperOffice trims a contact name or an element value before it checks it is there (ASSUMED, as its simulator
# does): blank is missing, hence NotBlank on those.
#: SuperOffice's keys and list item ids are int32 (seed 003: ContactId, GroupId, ... `int32`); 0 means none.
INT32_MAX = 2**31 - 1
#: A list item or record id the gateway chooses: a positive int32.
Id32 = Annotated[int, Field(ge=1, le=INT32_MAX)]
#: The DbiKey column's length: no record can have a longer one.
DBI_KEY_LENGTH = 255


def _column(length: int) -> AfterValidator:
    """A text column of `length`, counted in UTF-16 code units (ASSUMED: SuperOffice on SQL Server, as SuperOffice
    Online is: nvarchar) unless the validation context says `length_unit = "characters"` (the connector's setting)."""

    def check(value: str, info: ValidationInfo) -> str:
        in_units = (info.context or {}).get("length_unit", "utf16") == "utf16"
        if (utf16_units(value) if in_units else len(value)) > length:
            raise PydanticCustomError(
                "string_too_long",
                "String should have at most {max_length} characters",
                # `unit_note` when characters and units differ, so the limit is not read as wrong.
                {"max_length": length}
                | ({"unit_note": " (an emoji counts as 2)"} if in_units and utf16_units(value) != len(value) else {}),
            )
        return value

    return AfterValidator(check)


Text49 = Annotated[str, _column(49)]
Text99 = Annotated[str, _column(99)]
Text219 = Annotated[str, _column(219)]


class _Sent(BaseModel):
    """Base of the request models: the gateway must not send a field the carrier does not define."""

    model_config = ConfigDict(extra="forbid")


class _Received(BaseModel):
    """Base of the response models: unknown fields are tolerated."""

    model_config = ConfigDict(extra="ignore")


class EntityElement(_Sent):
    """`EntityElement`: one phone number, fax number or internet address of a contact."""

    Value: Annotated[str, Field(min_length=1), NotBlank]
    StrippedValue: str | None = None
    Description: str | None = None


class EmailElement(EntityElement):
    """An e-mail `EntityElement`: the `email.email_address` column holds 239 characters."""

    Value: Annotated[str, Field(min_length=1), _column(239), NotBlank]


class StructuredAddress(_Sent):
    """`StructuredAddress`: the postal or street address of a contact, three lines plus the place."""

    AtypeIdx: str | None = None
    Address1: str | None = None
    Address2: str | None = None
    Address3: str | None = None
    City: str | None = None
    County: str | None = None
    State: str | None = None
    Zipcode: str | None = None
    Formatted: str | None = None


class AddressCarrier(_Sent):
    """`Address`: street and postal address plus the WGS84 position of the contact."""

    Wgs84Latitude: float | None = Field(default=None, ge=-90, le=90)
    Wgs84Longitude: float | None = Field(default=None, ge=-180, le=180)
    Street: StructuredAddress | None = None
    Postal: StructuredAddress | None = None
    Formatted: str | None = None


class CountryCarrier(_Sent):
    """`Country`: a country list item, found by CountryId (the ISO code travels along for readers)."""

    CountryId: Id32
    TwoLetterISOCountry: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")


class ListItem(_Sent):
    """`Category` / `Business`: an MDO list item, chosen by its id."""

    Id: Id32


class PersonCarrier(_Sent):
    """`Person` as the ContactEntity's `Persons` array carries it (the fields the gateway fills)."""

    PersonId: int | None = None
    Firstname: Text99 | None = None
    MiddleName: Text99 | None = None
    Lastname: Text99 | None = None
    Mrmrs: str | None = None
    Title: str | None = None
    Position: str | None = None
    MobilePhone: str | None = None


class ContactEntity(_Sent):
    """The body of `POST api/v1/Contact`: the company card (ContactEntity) and its persons."""

    ContactId: int | None = Field(default=None, ge=0, le=INT32_MAX)
    Name: Annotated[Text219, Field(min_length=1), NotBlank]
    Department: Text219 | None = None
    OrgNr: Text49 | None = None
    Number1: Text49 | None = None
    Number2: Text49 | None = None
    Emails: list[EmailElement] = Field(default_factory=list)
    Phones: list[EntityElement] = Field(default_factory=list)
    Faxes: list[EntityElement] = Field(default_factory=list)
    Urls: list[EntityElement] = Field(default_factory=list)
    Description: str | None = None
    Category: ListItem | None = None
    Business: ListItem | None = None
    Country: CountryCarrier | None = None
    Persons: list[PersonCarrier] = Field(default_factory=list)
    Address: AddressCarrier | None = None
    DbiKey: str = Field(min_length=1, max_length=DBI_KEY_LENGTH)


class SoError(_Received):
    """SuperOffice's error body: `{"Error": true, "ErrorType": ..., "ErrorMessage": ..., "ErrorSource": ...}`."""

    Error: bool = True
    ErrorType: str | None = None
    ErrorMessage: str | None = None
    ErrorSource: str | None = None


class ContactEntityReply(_Received):
    """`ContactEntityWithLinks`, as far as the connector reads it: the id and when it last changed."""

    ContactId: int
    UpdatedDate: str | None = None


class ODataSlimResponse(_Received):
    """The OData answer of `GET api/v1/Contact?$filter=...`: one row per hit, `PrimaryKey` its ContactId."""

    value: list[dict[str, Any]] = Field(default_factory=list)
    #: A next page (OData's paging link): the rows above are not all the hits.
    next_link: str | None = Field(default=None, alias="odata.nextLink")
