"""Who is calling: bearer tokens from `[[auth.tokens]]`, and the scope checks on fields."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from strawberry.permission import BasePermission
from strawberry.types import Info

from resolvers.config import TokenConfig

if TYPE_CHECKING:
    from graph.context import Context

READ = "contacts:read"
WRITE = "contacts:write"
ADMIN = "contacts:admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: the token's name and its scopes."""

    name: str
    scopes: frozenset[str]


class Authenticator:
    """Checks `Authorization: Bearer <token>` against the configured tokens, in constant time."""

    def __init__(self, tokens: list[TokenConfig]) -> None:
        self._tokens = [(t.token.get_secret_value().encode(), Principal(t.name, frozenset(t.scopes))) for t in tokens]

    def authenticate(self, authorization: str | None) -> Principal | None:
        """The principal for a header value, or None. Every token is compared, so timing tells nothing."""
        if not authorization:
            return None
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() != "bearer" or not credential:
            return None
        presented = credential.strip().encode()
        found: Principal | None = None
        for secret, principal in self._tokens:
            if hmac.compare_digest(secret, presented) and found is None:
                found = principal
        return found


class _ScopePermission(BasePermission):
    scope: ClassVar[str]
    error_extensions: ClassVar[dict[str, Any]] = {"code": "FORBIDDEN"}  # type: ignore[misc]

    def has_permission(self, source: Any, info: Info[Context, Any], **kwargs: Any) -> bool:
        principal = info.context.principal
        return principal is not None and self.scope in principal.scopes


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
