"""Jim2's own payloads (Web API, JSON:API `CardFileContact`), field names exactly as its docs.

Docs: shared/seeds/002 (the `api/v1/cardfiles/{cardno}/contacts` page) and
https://jim2help.happen.biz/jim2webapi/9148/token.html (the OAuth token endpoint). The seed gives attribute names
and types but no length limits, so none are added here. What the gateway sends forbids unknown fields; what Jim2
answers ignores them.

`ContactWrite` is the prepared payload: the JSON:API document the gateway sends (`data`), plus the card file it
goes to (`cardno`, a path parameter) and `sources` (wire path -> canonical input path, so that an error's
`source.pointer` maps back to what the caller typed). Only `data` goes over the wire.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo
from pydantic_core import PydanticCustomError

#: The JSON:API resource type of a card file contact (seed 002).
RESOURCE_TYPE = "CardFileContact"
#: ASSUMED (the `card_no_pattern` setting's default): card numbers are digits. The seed's only card is `10`, and the
#: contact id joins card and contact number with a hyphen (`10-3`).
CARD_NO_PATTERN = r"^[0-9]+$"


def _card_no(value: str, info: ValidationInfo) -> str:
    """A card number matching the connector's `card_no_pattern` (from the validation context; digits by default)."""
    pattern = (info.context or {}).get("card_no_pattern", CARD_NO_PATTERN)
    if re.fullmatch(pattern, value) is None:
        raise PydanticCustomError(
            "string_pattern_mismatch", "String should match pattern '{pattern}'", {"pattern": pattern}
        )
    return value


class _Sent(BaseModel):
    """Base of the request models: the gateway must not send a field Jim2 does not define."""

    model_config = ConfigDict(extra="forbid")


class _Received(BaseModel):
    """Base of the response models: unknown members are tolerated."""

    model_config = ConfigDict(extra="ignore")


class DetailWrite(_Sent):
    """One entry of `details`: a phone number, e-mail address, ... with its type and comments."""

    type: str = Field(min_length=1)
    value: str
    comments: str | None = None


class AttributesWrite(_Sent):
    """The writable `CardFileContact` attributes the gateway fills (`contNo` and `isPrimary` are read-only;
    `webAccount` is no part of the canonical contact and is never sent)."""

    title: str | None = None
    firstName: str | None = None
    middleName: str | None = None
    lastName: str | None = None
    displayName: str | None = None
    jobTitle: str | None = None
    department: str | None = None
    dob: str | None = None
    details: list[DetailWrite] = Field(default_factory=list)


class ResourceWrite(_Sent):
    """The JSON:API resource object of a create (`data`)."""

    type: Literal["CardFileContact"]
    attributes: AttributesWrite


class ContactWrite(_Sent):
    """The prepared payload: the card file, the document, and where each wire field came from."""

    cardno: Annotated[str, Field(min_length=1), AfterValidator(_card_no)]
    data: ResourceWrite
    sources: dict[str, str] = Field(default_factory=dict)


class DetailRead(_Received):
    """One `details` entry as Jim2 answers it (values may be null)."""

    type: str | None = None
    value: str | None = None
    comments: str | None = None


class AttributesRead(_Received):
    """`CardFileContact` attributes as Jim2 answers them."""

    contNo: int | None = None
    title: str | None = None
    firstName: str | None = None
    middleName: str | None = None
    lastName: str | None = None
    displayName: str | None = None
    jobTitle: str | None = None
    department: str | None = None
    dob: str | None = None
    isPrimary: bool | None = None
    details: list[DetailRead] | None = None
    webAccount: dict[str, Any] | None = None


class ResourceRead(_Received):
    """A `CardFileContact` resource object; `id` is `{cardno}-{contno}`."""

    id: str = Field(min_length=1)
    type: str
    attributes: AttributesRead = Field(default_factory=AttributesRead)


class ResourceDocument(_Received):
    """The answer to a POST, PATCH or GET of one contact."""

    data: ResourceRead


class CollectionLinks(_Received):
    """JSON:API top-level `links` of a collection: `next` is the following page, if the server pages."""

    next: str | None = None


class CollectionDocument(_Received):
    """The answer to a GET of a card's contacts (VENDORS.md assumes no paging; a `links.next` is followed)."""

    data: list[ResourceRead]
    links: CollectionLinks | None = None


class ErrorSource(_Received):
    """JSON:API `source`: a JSON Pointer into the request document, or the name of a parameter."""

    pointer: str | None = None
    parameter: str | None = None


class ErrorObject(_Received):
    """One JSON:API error object."""

    id: str | None = None
    status: str | None = None
    code: str | None = None
    title: str | None = None
    detail: str | None = None
    source: ErrorSource | None = None


class ErrorDocument(_Received):
    """A JSON:API error document: `{"errors": [...]}`."""

    errors: list[ErrorObject] = Field(min_length=1)


class TokenResponse(_Received):
    """The OAuth 2 token answer (RFC 6749 5.1 fields; ASSUMED standard, per VENDORS.md)."""

    access_token: str = Field(min_length=1)
    token_type: str = "bearer"
    expires_in: float | None = Field(default=None, ge=0)
    refresh_token: str | None = None
    scope: str | None = None


class OAuthError(_Received):
    """The OAuth 2 error answer (RFC 6749 5.2)."""

    error: str
    error_description: str | None = None
