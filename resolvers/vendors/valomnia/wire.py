"""Valomnia's own payloads: the contact form it takes, the contact and errors it answers, and its image rules.

Docs: shared/seeds/004 (the "Update a contact" quick reference). Field names are Valomnia's. The seed gives no text
lengths (the connector's `max_text_length` setting covers that assumption); it does give the required parameters,
the ISO country code, the e-mail check and the image rules (jpg/gif/png/bmp, at most "2Mo"). What the gateway sends
forbids unknown fields; what Valomnia answers ignores them.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from resolvers.results import ErrorCode
from resolvers.vendors.base import NotBlank

#: "image size should not exceed 2Mo": read the stricter way (2,000,000 bytes, not 2 MiB), so what the gateway
#: sends passes whichever Valomnia means.
MAX_IMAGE_BYTES = 2_000_000
#: Image format (as sniffed from the content) -> the content type sent with it.
IMAGE_CONTENT_TYPES: dict[str, str] = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "bmp": "image/bmp",
}
#: File name extension -> image format ("jpg, gif, png or bmp", and jpeg as jpg's other spelling).
IMAGE_EXTENSIONS: dict[str, str] = {"jpg": "jpeg", "jpeg": "jpeg", "png": "png", "gif": "gif", "bmp": "bmp"}
#: ASSUMED approximation of Grails' `email` constraint (Apache Commons EmailValidator): a dotted domain ending in a
#: TLD of two or more letters. Stricter than the canonical model, which takes `a@b.c`; applied before sending only
#: with the connector's `strict_email` setting (the default), and by the simulator.
EMAIL_PATTERN = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)+[A-Za-z]{2,}$"
)
_DATA_URL = re.compile(r"^data:[^,;]*(?:;[^,;]*)*;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(rb"\s+")
#: What a photo's file name must not hold: a path (`/`, `\`), a quote that would end the multipart header's quoted
#: `filename="..."`, or a control character (CR/LF would start a new header).
_NOT_IN_FILE_NAME = re.compile(r'[/\\"\x00-\x1f\x7f-\x9f]')
#: ASSUMED (the `max_image_name_length` setting's default): the longest photo file name Valomnia keeps (a file
#: system's name limit, and GORM's varchar(255)).
MAX_FILE_NAME_LENGTH = 255

#: Valomnia's error codes (the `error` of its error body), seed 004.
MISSING_PARAM = "missing_param"
INVALID_PARAM_TYPE = "invalid_param_type"
EMAIL_VALIDATION_ERROR = "email_validation_error"
COUNTRY_ERROR = "country_error"
SAVE_FAILED = "save_failed"
NOT_FOUND = "not_found"
EXCEEDED_FILE_SIZE = "exceeded_file_size"
UNSUPPORTED_FILE_TYPE = "unsupported_file_type"
SERVER_ERROR = "server_error"
#: ASSUMED: what an API call without a valid bearer token answers (401).
NO_CREDENTIALS = "no_credentials"


def sniff_image(content: bytes) -> str | None:
    """The image format the content's magic bytes announce (jpeg, png, gif, bmp), or None."""
    if content.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if content[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    # "BM" alone is too weak (plain text may start so): a BMP header is 14 bytes plus a DIB header of 12+.
    if content.startswith(b"BM") and len(content) >= 26:
        return "bmp"
    return None


def decode_base64(text: str) -> bytes:
    """Strict base64 (a `data:...;base64,` prefix and line breaks tolerated); ValueError when it is not base64."""
    data = _WHITESPACE.sub(b"", _DATA_URL.sub("", text.strip()).encode("ascii", "replace"))
    try:
        return base64.b64decode(data, validate=True)
    except binascii.Error as exc:
        raise ValueError(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class ImageProblem:
    """One broken image rule: `part` says whether the file name or its content is at fault."""

    part: Literal["name", "content"]
    code: ErrorCode
    message: str
    vendor_code: str | None


@dataclass(frozen=True, slots=True)
class Image:
    """An image that passes every rule: its bytes and the content type they are sent with."""

    filename: str
    content: bytes
    content_type: str


def inspect_image(
    filename: str, data: str, max_name_length: int | None = MAX_FILE_NAME_LENGTH
) -> Image | list[ImageProblem]:
    """Check a photo against Valomnia's rules before sending: every problem, or the image ready to send.
    `max_name_length`: the longest file name taken (the connector's `max_image_name_length`; None, no limit)."""
    problems: list[ImageProblem] = []
    extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
    named = IMAGE_EXTENSIONS.get(extension)
    if not filename.strip() or _NOT_IN_FILE_NAME.search(filename):
        problems.append(ImageProblem("name", ErrorCode.INVALID_FORMAT, "must be a plain file name", None))
    elif max_name_length is not None and len(filename) > max_name_length:
        message = f"at most {max_name_length} characters"
        problems.append(ImageProblem("name", ErrorCode.TOO_LONG, message, None))
    elif named is None:
        problems.append(
            ImageProblem(
                "name",
                ErrorCode.INVALID_FORMAT,
                "must end in .jpg, .jpeg, .gif, .png or .bmp (Valomnia takes jpg, gif, png or bmp)",
                UNSUPPORTED_FILE_TYPE,
            )
        )
    try:
        content = decode_base64(data)
    except ValueError:
        problems.append(ImageProblem("content", ErrorCode.INVALID_FORMAT, "must be base64", None))
        return problems
    sniffed = sniff_image(content)
    if len(content) > MAX_IMAGE_BYTES:
        problems.append(
            ImageProblem(
                "content",
                ErrorCode.TOO_LONG,
                f"the image is {len(content)} bytes; Valomnia takes at most {MAX_IMAGE_BYTES} (2 Mo)",
                EXCEEDED_FILE_SIZE,
            )
        )
    if sniffed is None:
        problems.append(
            ImageProblem(
                "content",
                ErrorCode.INVALID_FORMAT,
                "is not a JPEG, GIF, PNG or BMP image",
                UNSUPPORTED_FILE_TYPE,
            )
        )
    elif named is not None and named != sniffed:
        problems.append(
            ImageProblem(
                "name",
                ErrorCode.INVALID_FORMAT,
                f"says .{extension} but the content is a {sniffed.upper()} image",
                UNSUPPORTED_FILE_TYPE,
            )
        )
    if problems or sniffed is None:
        return problems
    return Image(filename=filename, content=content, content_type=IMAGE_CONTENT_TYPES[sniffed])


def _country(value: str) -> str:
    if not re.fullmatch(r"[A-Z]{2}", value):
        raise PydanticCustomError("invalid_format", "must be an ISO 3166-1 alpha-2 country code such as FR")
    return value


# Valomnia trims a parameter before its missing_param check (ASSUMED, as its simulator does): blank is missing.
Required = Annotated[str, Field(min_length=1), NotBlank]


class ImageFile(BaseModel):
    """The `imageFile` part of a multipart body: name, content type and the content as base64."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    filename: str
    contentType: str
    content: str

    @model_validator(mode="after")
    def _valid_image(self, info: ValidationInfo) -> ImageFile:
        # The name's limit is the connector's setting, passed as validation context (`wire_context`).
        limit = (info.context or {}).get("max_image_name_length", MAX_FILE_NAME_LENGTH)
        checked = inspect_image(self.filename, self.content, limit)
        if isinstance(checked, list):
            raise PydanticCustomError("invalid_format", "; ".join(f"{p.part}: {p.message}" for p in checked))
        if checked.content_type != self.contentType:
            raise PydanticCustomError("invalid_format", f"contentType must be {checked.content_type}")
        return self


class ValomniaContact(BaseModel):
    """The parameters of `POST api/{version}/contacts[/{id}]`: firstName, lastName and customerId are required."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    firstName: Required
    lastName: Required
    # Declared before customerId: its validator reads it.
    useExternalId: Literal["true", "false"] | None = None
    #: "Long/String": the customer's numeric id, or (ASSUMED, with useExternalId=true) its reference.
    customerId: Required
    fonction: str | None = None
    country: Annotated[str, AfterValidator(_country)] | None = None
    city: str | None = None
    postalCode: str | None = None
    address: str | None = None
    #: Its format is checked by the mapping, as the `strict_email` setting says (Valomnia's check is ASSUMED).
    email: str | None = None
    phone: str | None = None
    phone2: str | None = None
    mobile: str | None = None
    fax: str | None = None
    imageFile: ImageFile | None = None

    @field_validator("customerId")
    @classmethod
    def _numeric_unless_external(cls, value: str, info: ValidationInfo) -> str:
        if info.data.get("useExternalId") != "true":
            if not re.fullmatch(r"[0-9]+", value):
                raise PydanticCustomError(
                    "invalid_format",
                    "must be the numeric id of a Valomnia customer (its reference needs use_external_id)",
                )
            if int(value) > MAX_LONG:
                # Grails binds it to a Long: a larger number is answered invalid_param_type.
                raise PydanticCustomError("invalid_format", f"must be a customer id of at most {MAX_LONG}")
        return value


#: Valomnia's ids are Java Longs.
MAX_LONG = 2**63 - 1


class _Received(BaseModel):
    """Base of the answer models: Valomnia adds fields freely, unknown ones are ignored."""

    model_config = ConfigDict(extra="ignore")


class ValomniaError(_Received):
    """Valomnia's error body: `{"error": "missing_param", "error_description": "customerId parameter is missing"}`."""

    error: str
    error_description: str = ""


class CustomerLink(_Received):
    """The `customer` object inside a contact."""

    id: int | str | None = None
    reference: str | None = None
    name: str | None = None
    href: str | None = None


class ContactReply(_Received):
    """The contact Valomnia answers (seed 004): empty strings rather than nulls, dates in ISO `Z`."""

    #: Not empty: the id goes into the URL of later updates, and an empty one would address the collection.
    id: int | Annotated[str, Field(min_length=1)]
    customerReference: str | None = None
    customer: CustomerLink | None = None
    firstName: str | None = None
    lastName: str | None = None
    email: str | None = None
    photo: str | None = None
    dateCreated: str | None = None
    lastUpdated: str | None = None


class ContactPage(_Received):
    """ASSUMED shape of a contact listing: `{"data": [...]}` (a bare JSON array is read too)."""

    data: list[ContactReply] = Field(default_factory=list)


class LoginReply(_Received):
    """What `login/ajaxSuccess` answers after a form login: the bearer token (and who logged in)."""

    token: str | None = None
    username: str | None = None
