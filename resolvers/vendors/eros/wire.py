"""Eros' own payloads (Perspective Platform subscription API, ServiceStack), field names exactly as its docs.

Docs: shared/seeds/001 (the SaveContact operation page). The seed states which fields are required and their types
but gives no length limits, so none are added here. What the gateway sends forbids unknown fields; what Eros answers
ignores them (ServiceStack adds fields freely).
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Sent(BaseModel):
    """Base of the request models: the gateway must not send a field Eros does not define."""

    model_config = ConfigDict(extra="forbid")


class _Received(BaseModel):
    """Base of the response models: unknown fields are tolerated."""

    model_config = ConfigDict(extra="ignore")


class Coordinates(_Sent):
    """`LocationCoordinates`: GPS coordinates of an address."""

    Latitude: float = Field(ge=-90, le=90)
    Longitude: float = Field(ge=-180, le=180)
    Altitude: float | None = None
    Accuracy: float | None = None
    AltitudeAccuracy: float | None = None
    Heading: float | None = None
    Speed: float | None = None
    VerticalSpeed: float | None = None


class AddressModel(_Sent):
    """`AddressModel`: Latitude and Longitude are required (seed 001), everything else optional."""

    DistanceAway: float | None = None
    Latitude: float = Field(ge=-90, le=90)
    Longitude: float = Field(ge=-180, le=180)
    AddressFormatId: UUID | None = None
    SuburbId: UUID | None = None
    SuburbName: str | None = None
    StateShortName: str | None = None
    PostCode: str | None = None
    CountryId: UUID | None = None
    CountryName: str | None = None
    #: "A 2 digit ISO Country Code".
    ISOCountryCode: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    LotNumber: str | None = None
    SubUnit: str | None = None
    BuildingNumber: str | None = None
    StreetNumber: str | None = None
    StreetName: str | None = None
    AddressLineOne: str | None = None
    AddressLineTwo: str | None = None
    AddressFull: str | None = None
    IsPhysical: bool | None = None
    Notes: str | None = None
    AutoMapCoordinates: bool | None = None
    LocationCoordinates: Coordinates | None = None


class ContactAddressModel(_Sent):
    """`ContactAddressModel`: the address of an address-kind contact detail."""

    Address: AddressModel | None = None
    IsPostal: bool | None = None
    IsPrimaryLocation: bool | None = None
    IsRegisteredLocation: bool | None = None
    SuburbName: str | None = None
    StateName: str | None = None
    CountryName: str | None = None


class PhoneModel(_Sent):
    """`PhoneModel`: a phone number split into parts."""

    CountryCode: str | None = None
    AreaCode: str | None = None
    LocalNumber: str | None = None


class ContactDetailModel(_Sent):
    """`ContactDetailModel`: one way to reach the contact; `ContactDetails` is the value itself."""

    ContactMethodId: UUID | None = None
    ContactMethodName: str | None = None
    ContactAddress: ContactAddressModel | None = None
    ContactPhone: PhoneModel | None = None
    CountryId: UUID | None = None
    ContactDetails: str | None = None
    Notes: str | None = None
    ContactDetailsCode: str | None = None
    OrderContactMethod: int | None = None
    IsPrimaryContactMethod: bool | None = None
    IsAddress: bool | None = None

    @model_validator(mode="after")
    def _address_entry_has_address(self) -> ContactDetailModel:
        # Eros refuses an address entry without its address (seed 001: an address needs Latitude and Longitude).
        if self.IsAddress and (self.ContactAddress is None or self.ContactAddress.Address is None):
            raise ValueError("an address entry needs ContactAddress.Address, with Latitude and Longitude")
        return self


class ContactRole(_Sent):
    """`ContactRole`: a role list item the contact has."""

    RoleId: UUID
    AlternateKey: str | None = None


class SubscriptionContactModel(_Sent):
    """`SubscriptionContactModel`: the contact; ContactType, ContactRoles and ContactDetails are required."""

    ContactId: UUID | None = None
    ContactType: UUID
    MaritalStatus: UUID | None = None
    Gender: UUID | None = None
    FirstName: str | None = None
    MiddleName: str | None = None
    Surname: str | None = None
    FullName: str | None = None
    ShortName: str | None = None
    BirthDate: date | None = None
    Title: str | None = None
    Salutation: str | None = None
    Abn: str | None = None
    Acn: str | None = None
    Arbn: str | None = None
    TradingName: str | None = None
    LegalName: str | None = None
    Notes: str | None = None
    EmploymentIndustry: str | None = None
    EmploymentRole: str | None = None
    EmploymentGeographicArea: str | None = None
    DriversLicence: str | None = None
    GstRegistered: bool | None = None
    RecordStatus: str | None = None
    ContactRoles: list[ContactRole] = Field(min_length=1)
    ContactDetails: list[ContactDetailModel]
    CustomContentXML: str | None = None
    BlobImageURLPrimary: str | None = None
    BlobImageURLPrimaryThumbnail: str | None = None
    PrimaryMobile: str | None = None
    PrimaryEmail: str | None = None


class SaveContact(_Sent):
    """`SaveContact`: inserts or updates (or, with MarkAsDeleted, deletes) one contact."""

    SuiteDataSourceInstanceId: UUID
    AlternateKey: str | None = Field(default=None, min_length=1)
    ObjectId: UUID | None = None
    IgnoreHash: bool | None = None
    IgnoreValidation: bool | None = None
    MarkAsDeleted: bool | None = None
    Contact: SubscriptionContactModel
    LicenseeId: UUID | None = None
    SessionId: UUID | None = None

    @model_validator(mode="after")
    def _keyed(self) -> SaveContact:
        # The contact is found by AlternateKey, or by ObjectId when the caller knows it (seed 001).
        if self.AlternateKey is None and self.ObjectId is None:
            raise ValueError("AlternateKey or ObjectId is required")
        return self


class RuleValidationResult(_Received):
    """`RuleValidationResult`: one business rule Eros says the contact breaks."""

    RuleCode: str | None = None
    Message: str | None = None
    Key: str | None = None
    Tag: str | None = None
    ErrorCode: str | None = None


class ResponseError(_Received):
    """ServiceStack `ResponseError`: one field-level error of a `ResponseStatus`."""

    ErrorCode: str | None = None
    FieldName: str | None = None
    Message: str | None = None
    Meta: dict[str, str] | None = None


class ResponseStatusModel(_Received):
    """ServiceStack `ResponseStatus`: how every ServiceStack service reports a failed request."""

    ErrorCode: str | None = None
    Message: str | None = None
    StackTrace: str | None = None
    Errors: list[ResponseError] = Field(default_factory=list)
    Meta: dict[str, str] | None = None


class SaveContactResponse(_Received):
    """The answer to SaveContact; ObjectId / ContactId are ASSUMED optional extras, never relied on. A ResponseStatus
    may come wrapped (`{"ResponseStatus": {...}}`, ServiceStack's way) or bare at the top level (seed 001's sample
    reply: `{ErrorCode, Message, StackTrace, Errors, Meta}`): both are read as `ResponseStatus`."""

    ValidationErrors: list[RuleValidationResult] = Field(default_factory=list)
    ResponseStatus: ResponseStatusModel | None = None
    ObjectId: str | None = None
    ContactId: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_status(cls, data: Any) -> Any:
        return bare_status(data)


def bare_status(data: Any) -> Any:
    """An answer (keys in PascalCase) whose ResponseStatus fields sit at its top level, with them moved under
    `ResponseStatus`; any other answer as it is."""
    if isinstance(data, dict) and "ResponseStatus" not in data and (data.get("ErrorCode") or data.get("Errors")):
        fields = ("ErrorCode", "Message", "StackTrace", "Errors", "Meta")
        return {**data, "ResponseStatus": {k: data[k] for k in fields if k in data}}
    return data


class Authenticate(_Sent):
    """ServiceStack `Authenticate` with the credentials provider."""

    provider: Literal["credentials"] = "credentials"
    UserName: str
    Password: str


class AuthenticateResponse(_Received):
    """ServiceStack `AuthenticateResponse`: the bearer token the following calls carry."""

    BearerToken: str | None = None
    RefreshToken: str | None = None
    SessionId: str | None = None
    UserName: str | None = None
    ResponseStatus: ResponseStatusModel | None = None


def pascal_keys(value: Any) -> Any:
    """Upper-case the first letter of every object key: ServiceStack may be set to answer in camelCase."""
    if isinstance(value, dict):
        return {(k[:1].upper() + k[1:] if isinstance(k, str) else k): pascal_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [pascal_keys(v) for v in value]
    return value
