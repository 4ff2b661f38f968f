"""The only aiohttp code: one shared ClientSession, and the translation of foreign errors into the project's own.

Connectors call `Transport.request`; it never raises an aiohttp or asyncio exception, only `VendorError`s
(`raise ... from exc`), and it never interprets a status code: that is each connector's error parser, helped by
`status_error`'s table.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import orjson
from multidict import CIMultiDict
from pydantic import BaseModel, ValidationError
from yarl import URL

from resolvers import observe
from resolvers.errors import (
    AuthFailed,
    ConnectionDropped,
    RateLimited,
    VendorConflict,
    VendorError,
    VendorNotFound,
    VendorProtocolError,
    VendorRejected,
    VendorTimeout,
    VendorUnavailable,
    VendorUnreachable,
)

#: The most of a vendor body kept in an error message.
BODY_EXCERPT = 300

ModelT = TypeVar("ModelT", bound=BaseModel)

#: A URL already in its encoded form: only RFC 3986's unreserved and reserved characters and `%XX` escapes.
_ENCODED_URL = re.compile(r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*")


def path_segment(value: str) -> str:
    """`value` as exactly one URL path segment, for ids and references that go into a vendor's URL.

    Everything but RFC 3986's unreserved characters is percent-encoded (`/`, `?`, `#`, `%`, CR/LF, NUL, non-ASCII),
    and a segment of dots alone (`.`, `..`) is written as `%2E`s: a URL parser resolves a literal dot segment away
    (`contacts/..` is the parent path), which would send the call to another endpoint. An empty value would
    address the collection instead of a record, so it is refused (ValueError): callers check ids first.
    """
    if not value:
        raise ValueError("an empty value cannot be a URL path segment")
    quoted = quote(value, safe="")
    return quoted.replace(".", "%2E") if not quoted.strip(".") else quoted


def _target(url: str) -> URL:
    """The URL to request. One already in encoded form is taken as it is (`URL(..., encoded=True)`): parsing it
    again would decode `%2E` and then resolve the dot segments `path_segment` protected. Anything else (a configured
    path with a space, say) is encoded by yarl as before."""
    return URL(url, encoded=True) if _ENCODED_URL.fullmatch(url) else URL(url)


@dataclass(frozen=True, slots=True)
class FilePart:
    """A file sent in a multipart/form-data body."""

    filename: str
    content: bytes
    content_type: str


@dataclass(frozen=True, slots=True)
class VendorResponse:
    """A vendor's answer, fully read."""

    status: int
    #: Case-insensitive, and repeated headers (Set-Cookie) are all kept: see `header_values`.
    headers: CIMultiDict[str]
    body: bytes

    def header_values(self, name: str) -> list[str]:
        """Every value of a header that may repeat (`Set-Cookie`)."""
        return self.headers.getall(name, [])

    def json(self) -> Any:
        """The body as JSON; a body that is not JSON is a protocol error."""
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            raise VendorProtocolError(
                f"vendor answered HTTP {self.status} with a body that is not JSON: {self.excerpt()}",
                http_status=self.status,
            ) from exc

    def parse(self, model: type[ModelT], unexpected: str, *, keys: Callable[[Any], Any] | None = None) -> ModelT:
        """The JSON body as `model`. A body that is not JSON, or not that shape, is a protocol error: for the
        latter "<unexpected>: <excerpt of the body>". `keys` rewrites the decoded body first (Eros' PascalCase)."""
        data = self.json()
        try:
            return model.model_validate(keys(data) if keys is not None else data)
        except ValidationError as exc:
            raise VendorProtocolError(f"{unexpected}: {self.excerpt()}", http_status=self.status) from exc

    def json_or_none(self) -> Any:
        """The body as JSON, or None when it is empty or not JSON."""
        try:
            return orjson.loads(self.body) if self.body else None
        except orjson.JSONDecodeError:
            return None

    def excerpt(self) -> str:
        """The start of the body, for messages."""
        text = self.body[:BODY_EXCERPT].decode("utf-8", "replace")
        return text + ("…" if len(self.body) > BODY_EXCERPT else "")

    def retry_after(self) -> float | None:
        """`Retry-After` in seconds (delta-seconds or HTTP date), if the vendor sent one."""
        return parse_retry_after(self.headers.get("Retry-After"))


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header value."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


# HTTP status -> error type, for answers a connector's own parser did not claim (a table, read top to bottom).
_STATUS_TABLE: tuple[tuple[range, type[VendorError]], ...] = (
    (range(401, 402), AuthFailed),
    (range(403, 404), AuthFailed),
    (range(404, 405), VendorNotFound),
    (range(409, 410), VendorConflict),
    (range(412, 413), VendorConflict),
    (range(429, 430), RateLimited),
    (range(400, 500), VendorRejected),
    (range(500, 600), VendorUnavailable),
)


def status_error(
    response: VendorResponse, message: str | None = None, *, vendor_code: str | None = None
) -> VendorError:
    """The error for a non-success status, by the table; the vendor's own message is kept."""
    error_type: type[VendorError] = next(
        (kind for statuses, kind in _STATUS_TABLE if response.status in statuses), VendorProtocolError
    )
    return error_type(
        message or f"vendor answered HTTP {response.status}: {response.excerpt()}",
        http_status=response.status,
        vendor_code=vendor_code,
        retry_after=response.retry_after(),
    )


class Transport:
    """HTTP to vendors over one shared `aiohttp.ClientSession` (opened in the app's lifespan)."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        form: Mapping[str, str] | None = None,
        files: Mapping[str, FilePart] | None = None,
    ) -> VendorResponse:
        """Send one request and read the whole answer; every failure is a `VendorError`.

        The body is `json` (serialised with orjson, sent as `content_type`), `form` (urlencoded), `form` plus
        `files` (multipart/form-data), or raw `data`.
        """
        body: Any = data
        send_headers = dict(headers or {})
        observe.inject_trace(send_headers)  # W3C traceparent of the current span (nothing when tracing is off)
        if json is not None:
            body = orjson.dumps(json)
            send_headers.setdefault("Content-Type", content_type)
        elif files:
            # quote_fields=False: a file name goes as written (UTF-8 in the quoted `filename="..."`, RFC 7578 4.2, as
            # browsers send it), not percent-encoded, which servers read literally (`a b.png` would be `a%20b.png`).
            # Connectors refuse file names with `"`, `\` or control characters before sending.
            multipart = aiohttp.FormData(quote_fields=False)
            for name, value in (form or {}).items():
                multipart.add_field(name, value)
            for name, part in files.items():
                # A file object, not bytes: aiohttp warns (ResourceWarning) about in-memory bytes over 1 MiB.
                multipart.add_field(
                    name, io.BytesIO(part.content), filename=part.filename, content_type=part.content_type
                )
            body = multipart
        elif form is not None:
            body = aiohttp.FormData(dict(form))
        try:
            async with self.session.request(
                method, _target(url), data=body, headers=send_headers, params=params, allow_redirects=False
            ) as response:
                payload = await response.read()
                return VendorResponse(status=response.status, headers=CIMultiDict(response.headers), body=payload)
        except aiohttp.ClientConnectorError as exc:
            raise VendorUnreachable(f"cannot connect to {exc.host}:{exc.port}") from exc
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError) as exc:
            raise ConnectionDropped(f"connection dropped: {type(exc).__name__}") from exc
        except TimeoutError as exc:
            raise VendorTimeout("no answer in time") from exc
        except aiohttp.ClientResponseError as exc:
            raise VendorProtocolError(f"unreadable answer: {exc.message}", http_status=exc.status) from exc
        except aiohttp.ClientError as exc:
            raise VendorUnavailable(f"HTTP client error: {type(exc).__name__}") from exc
