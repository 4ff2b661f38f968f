"""Who is calling: static bearer tokens from `[[auth.tokens]]`, JWTs from `[auth.jwt]`, and the scope checks.

A JWT is checked with PyJWT: signature (one configured family of algorithms: a shared secret, or public keys from a
JWKS file or URL), issuer, audience, expiry, not-before and issued-at. Failed authentications are counted per client
address (`FailureLimiter`); past `auth.max_failures` within `auth.failure_window_s` the address is refused with 429
until the window has passed.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import jwt
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
)
from strawberry.permission import BasePermission
from strawberry.types import Info

from resolvers.config import AuthConfig, JwtConfig
from resolvers.errors import ConfigError
from resolvers.results import Vendor

if TYPE_CHECKING:
    from strawberry.types import ExecutionContext

    from graph.context import Context

log = logging.getLogger(__name__)

READ = "contacts:read"
WRITE = "contacts:write"
ADMIN = "contacts:admin"
FEDERATION = "contacts:federation"
SCOPES = frozenset({READ, WRITE, ADMIN, FEDERATION})


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: a name for logs and idempotency keys, its scopes, and the vendors it may write to
    (None: every configured vendor)."""

    name: str
    scopes: frozenset[str]
    vendors: frozenset[Vendor] | None = None


class Authenticator:
    """Checks `Authorization: Bearer <credential>`: a configured static token (compared in constant time, every
    token every time) or, when `[auth.jwt]` is set and no static token matches, a JWT (a credential with two
    dots)."""

    def __init__(self, auth: AuthConfig) -> None:
        self._tokens = [
            (
                t.token.get_secret_value().encode(),
                Principal(t.name, frozenset(t.scopes), frozenset(t.vendors) if t.vendors is not None else None),
            )
            for t in auth.tokens
        ]
        self._jwt = JwtVerifier(auth.jwt) if auth.jwt is not None else None

    async def authenticate(self, authorization: str | None) -> Principal | None:
        """The principal for a header value, or None."""
        if not authorization:
            return None
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            return None
        presented = credential.encode()
        found: Principal | None = None
        for secret, principal in self._tokens:
            if hmac.compare_digest(secret, presented) and found is None:
                found = principal
        # The static tokens first: one holding two dots is a valid token too, and was sent to the JWT check alone.
        if found is None and self._jwt is not None and credential.count(".") == 2:
            return await self._jwt.verify(credential)
        return found


class JwtVerifier:
    """Verifies JWTs against one `[auth.jwt]` table."""

    def __init__(self, config: JwtConfig) -> None:
        self.config = config
        self._secret = config.secret.get_secret_value() if config.secret is not None else None
        self._keys: jwt.PyJWKSet | None = None
        self._client: jwt.PyJWKClient | None = None
        if config.jwks_file is not None:
            try:
                self._keys = jwt.PyJWKSet.from_json(Path(config.jwks_file).read_text(encoding="utf-8"))
            except (OSError, jwt.PyJWTError, json.JSONDecodeError, ValueError) as exc:
                raise ConfigError(f"auth.jwt.jwks_file: cannot read a JWKS from {config.jwks_file}: {exc}") from None
        if config.jwks_url is not None:
            self._client = jwt.PyJWKClient(
                str(config.jwks_url), cache_jwk_set=True, lifespan=max(config.jwks_cache_s, 1.0), timeout=10
            )

    async def verify(self, token: str) -> Principal | None:
        """The principal a valid token names; None for any invalid token (the reason is logged, not returned)."""
        try:
            key = await self._key(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=list(self.config.algorithms),
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=self.config.leeway_s,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except (jwt.PyJWTError, ValueError, KeyError) as exc:  # KeyError: a kid the key set lacks
            # The token itself is never logged: it is a credential.
            log.info("JWT refused: %s", type(exc).__name__)
            return None
        name = claims.get(self.config.name_claim)
        if not isinstance(name, str) or not name:
            log.info("JWT refused: no %s claim", self.config.name_claim)
            return None
        return Principal(f"jwt:{name}", _scopes(claims), self._vendors(claims))

    async def _key(self, token: str) -> Any:
        if self._secret is not None:
            return self._secret
        header = jwt.get_unverified_header(token)
        kid = header.get("kid")
        if self._keys is not None:
            keys = self._keys.keys
            if kid is None and len(keys) == 1:
                return keys[0]
            if kid is None:
                raise jwt.InvalidTokenError("no kid header and several keys")
            return self._keys[kid]
        assert self._client is not None
        # PyJWKClient fetches with urllib (blocking): off the event loop. It caches the key set.
        signing_key = await asyncio.to_thread(self._client.get_signing_key_from_jwt, token)
        return signing_key

    def _vendors(self, claims: dict[str, Any]) -> frozenset[Vendor] | None:
        if self.config.vendors_claim is None or self.config.vendors_claim not in claims:
            return None
        known = {v.value: v for v in Vendor}
        return frozenset(known[n] for n in _names(claims[self.config.vendors_claim]) if n in known)


def _names(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def _scopes(claims: dict[str, Any]) -> frozenset[str]:
    named = _names(claims.get("scope")) + _names(claims.get("scp"))
    return frozenset(n for n in named if n in SCOPES)


class FailureLimiter:
    """Failed authentications per client address in a sliding window; an address past the limit is refused until
    its oldest counted failure leaves the window. Remembers at most `max_addresses` addresses (oldest forgotten)."""

    def __init__(
        self,
        max_failures: int,
        window_s: float,
        *,
        max_addresses: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self.max_addresses = max_addresses
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def retry_after(self, address: str) -> float | None:
        """Seconds until `address` may try again, or None when it may now."""
        failures = self._failures.get(address)
        if failures is None:
            return None
        now = self._clock()
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[address]
            return None
        if len(failures) < self.max_failures:
            return None
        return failures[0] + self.window_s - now

    def failed(self, address: str) -> None:
        """Count one failed authentication from `address`."""
        failures = self._failures.pop(address, None) or deque(maxlen=self.max_failures)
        failures.append(self._clock())
        self._failures[address] = failures
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)


class _ScopePermission(BasePermission):
    scope: ClassVar[str]
    error_extensions: ClassVar[dict[str, Any]] = {"code": "FORBIDDEN"}  # type: ignore[misc]

    def has_permission(self, source: Any, info: Info[Context, Any], **kwargs: Any) -> bool:
        principal = info.context.principal
        allowed = principal is not None and self.scope in principal.scopes
        if not allowed and self.scope in (WRITE, ADMIN):
            audit(
                "refused",
                principal=principal.name if principal else None,
                operation=info.field_name,
                reason=f"lacks {self.scope}",
            )
        return allowed


class CanRead(_ScopePermission):
    """Requires the `contacts:read` scope."""

    scope = READ
    message = f"this token lacks the {READ} scope"


class CanWrite(_ScopePermission):
    """Requires the `contacts:write` scope."""

    scope = WRITE
    message = f"this token lacks the {WRITE} scope"


class CanAdmin(_ScopePermission):
    """Requires the `contacts:admin` scope (the outbox: deliveries, retries, cancellations)."""

    scope = ADMIN
    message = f"this token lacks the {ADMIN} scope"


def service_sdl_refusal(execution: ExecutionContext, router_addresses: frozenset[str]) -> GraphQLError | None:
    """The error refusing `_service { sdl }` (the whole schema, even with introspection off) to this operation, or
    None: it is allowed to a `contacts:federation` token or a configured router address (`server.router_addresses`),
    over HTTP and WebSocket alike. Applied at validation, after the validation cache has set the document's own
    errors (`graph.schema.DocumentCache`), so the refusal has the same answer shape as any invalid document."""
    document = execution.graphql_document
    asks = (
        document is not None
        and "_service" in (execution.query or "_service")
        and "_service" in top_level_fields(document, execution.operation_name)
    )
    if not asks:
        return None
    context = execution.context
    principal = getattr(context, "principal", None)
    if principal is not None and FEDERATION in principal.scopes:
        return None
    client = getattr(getattr(context, "request", None), "client", None)
    if client is not None and client.host in router_addresses:
        return None
    return GraphQLError(
        f"_service: needs a token with the {FEDERATION} scope or a router address (server.router_addresses)",
        extensions={"code": "FORBIDDEN"},
    )


def top_level_fields(document: DocumentNode, operation_name: str | None) -> set[str]:
    """The names of the root fields an operation selects (through fragments too)."""
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    names: set[str] = set()

    def visit(selections: Any, seen: frozenset[str]) -> None:
        for selection in selections:
            if isinstance(selection, FieldNode):
                names.add(selection.name.value)
            elif isinstance(selection, InlineFragmentNode):
                visit(selection.selection_set.selections, seen)
            elif isinstance(selection, FragmentSpreadNode) and selection.name.value not in seen:
                fragment = fragments.get(selection.name.value)
                if fragment is not None:
                    visit(fragment.selection_set.selections, seen | {selection.name.value})

    for definition in document.definitions:
        if isinstance(definition, OperationDefinitionNode) and (
            operation_name is None or (definition.name is not None and definition.name.value == operation_name)
        ):
            visit(definition.selection_set.selections, frozenset())
    return names


#: The audit trail: one log line per write (and per refused write or failed authentication), on the
#: `contact_gateway.audit` logger; `serve` renders it as one JSON object (graph/observability.py).
audit_log = logging.getLogger("contact_gateway.audit")


def audit(event: str, **fields: Any) -> None:
    """Record one audited event: who, which contact, which vendors, what came of it (never secrets or payloads)."""
    if audit_log.isEnabledFor(logging.INFO):
        audit_log.info(event, extra={"fields": {"audit": True, **fields}})
