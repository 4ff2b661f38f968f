"""The gateway's configuration: one TOML file, `${NAME}` replaced from the environment, checked once at start-up.

Every error stops start-up with one message naming the key (`vendors.oneserve.timeout_s: ...`); a bad setting never
surfaces later as a vendor failure.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, SecretStr, ValidationError, field_validator, model_validator

from resolvers.errors import ConfigError
from resolvers.model import error_message, render_path
from resolvers.results import Vendor
from resolvers.vendors.base import VendorSettings

Scope = Literal["contacts:read", "contacts:write", "contacts:admin", "contacts:federation"]
#: Signature algorithms accepted for JWTs: one shared secret (HS*) or public keys from a JWKS (RS*, ES*), never both.
JwtAlgorithm = Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512"]

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class Strict(BaseModel):
    """Base of every config table: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class GraphiQLExample(Strict):
    """`[server.graphiql_example]`: the operation, variables and headers GraphiQL opens with."""

    query: str = Field(min_length=1)
    variables: dict[str, Any] = Field(default_factory=dict)
    #: Set only by `contact-gateway demo` (its token); `serve` refuses headers, so no served page carries a token.
    headers: dict[str, str] = Field(default_factory=dict)


class ServerConfig(Strict):
    """`[server]`: how the HTTP server behaves."""

    cors_origins: list[str] = Field(default_factory=list)
    #: GraphiQL at GET /graphql, from files the gateway serves itself (never from a CDN).
    graphiql: bool = True
    #: The node_modules directory holding GraphiQL's pinned npm files (default: the repository's
    #: `graphiql/node_modules`, installed by `npm ci --prefix graphiql`). Missing files stop start-up.
    graphiql_assets: str | None = None
    #: When those files are missing, serve a small built-in page (query, variables, headers, Run) instead of failing.
    graphiql_fallback: bool = False
    graphiql_example: GraphiQLExample | None = None
    #: Operations over the WebSocket endpoint must come from these origins (empty: same-origin only).
    allowed_origins: list[str] = Field(default_factory=list)
    #: Schema introspection (`__schema`, `__type`). Off by default in `serve`; `demo` turns it on. GraphiQL's docs
    #: and autocompletion need it.
    introspection: bool = False
    #: Addresses of the federation router(s): they may ask `_service { sdl }` without a `contacts:federation` token.
    router_addresses: list[str] = Field(default_factory=list)
    #: `serve`: the proxies (addresses, CIDR ranges, or "*") whose `X-Forwarded-For` / `X-Forwarded-Proto` give the
    #: client's address and scheme. Empty (the default): none is trusted, the address is the connection's, so a
    #: client cannot pick the address the failed-authentication limit and `router_addresses` judge it by.
    forwarded_allow_ips: list[str] = Field(default_factory=list)
    #: Refusals before execution: deeper selections, longer documents and more aliases than these are errors.
    max_depth: int = Field(default=12, ge=1, le=100)
    max_tokens: int = Field(default=10_000, ge=100, le=1_000_000)
    max_aliases: int = Field(default=30, ge=1, le=10_000)
    #: Most contacts one `upsertContacts` may carry.
    max_batch_contacts: int = Field(default=1_000, ge=1, le=100_000)
    #: Largest request body accepted, in bytes (413 beyond it, before anything is parsed).
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    #: Operations one HTTP request may carry as a JSON array; 0 (the default) refuses batched requests.
    batch_max_operations: int = Field(default=0, ge=0, le=100)
    #: On SIGTERM, requests in flight get this long to finish before the server stops; what is left of their
    #: fan-outs stays in the outbox for the next process.
    shutdown_grace_s: float = Field(default=30.0, ge=0, le=3600)
    #: An idle keep-alive connection is closed after this long. Longer than the clients and proxies in front keep
    #: theirs (aiohttp 15 s, nginx and AWS load balancers 60 s): when the server closes first, a request sent
    #: at that moment fails on the caller's side. uvicorn's own default is 5 s.
    keep_alive_s: float = Field(default=75.0, gt=0, le=3600)
    #: Allocations between two young-generation garbage collections (Python's default is 700); 0 keeps Python's.
    #: Everything alive once the gateway has started is frozen out of collection (`gc.freeze`) whatever this says.
    gc_threshold: int = Field(default=50_000, ge=0, le=10_000_000)


class TokenConfig(Strict):
    """One `[[auth.tokens]]` entry: a bearer token the API accepts, and what it may do."""

    name: str = Field(min_length=1)
    token: SecretStr = Field(min_length=16)
    scopes: list[Scope] = Field(min_length=1)
    #: When given, the only vendors this token may write to (omitted: every configured vendor).
    vendors: list[Vendor] | None = Field(default=None, min_length=1)


class JwtConfig(Strict):
    """`[auth.jwt]`: bearer JWTs from the company's identity provider (checked with PyJWT).

    Issuer, audience, expiry and not-before are always checked (expiry and issued-at required). Scopes come from
    the `scope` claim (space-separated) or `scp` (a list or space-separated); unknown scopes are ignored.
    """

    issuer: str = Field(min_length=1)
    audience: str = Field(min_length=1)
    algorithms: list[JwtAlgorithm] = Field(min_length=1)
    #: The shared secret for HS* algorithms.
    secret: SecretStr | None = Field(default=None, min_length=32)
    #: Public keys for RS*/ES* algorithms: a JWKS file, or a URL fetched (and cached) when a new key id appears.
    jwks_file: str | None = None
    jwks_url: HttpUrl | None = None
    #: Clock skew tolerated on exp/nbf/iat, in seconds.
    leeway_s: float = Field(default=30.0, ge=0, le=600)
    #: The claim naming the caller in logs and idempotency keys.
    name_claim: str = "sub"
    #: An optional claim listing the vendors the caller may write to (a list or space-separated names).
    vendors_claim: str | None = None
    #: How long a fetched JWKS is trusted before it is fetched again, in seconds.
    jwks_cache_s: float = Field(default=300.0, ge=0)

    @model_validator(mode="after")
    def _keys_match_algorithms(self) -> JwtConfig:
        shared = {a for a in self.algorithms if a.startswith("HS")}
        if shared and len(shared) != len(self.algorithms):
            # A verifier that accepts both lets a public key be used as an HMAC secret (algorithm confusion).
            raise ValueError("algorithms: use HS* (shared secret) or RS*/ES* (public keys), not both")
        if shared and self.secret is None:
            raise ValueError("secret: required for HS* algorithms")
        if shared and (self.jwks_file or self.jwks_url):
            raise ValueError("jwks_file/jwks_url: only for RS*/ES* algorithms")
        if not shared and self.secret is not None:
            raise ValueError("secret: only for HS* algorithms")
        if not shared and bool(self.jwks_file) == bool(self.jwks_url):
            raise ValueError("jwks_file, jwks_url: give exactly one for RS*/ES* algorithms")
        return self


class AuthConfig(Strict):
    """`[auth]`: who may call the API."""

    tokens: list[TokenConfig] = Field(default_factory=list)
    jwt: JwtConfig | None = None
    #: Failed authentications per client address within `failure_window_s` before that address is refused (429)
    #: until the window has passed. Counted per process.
    max_failures: int = Field(default=10, ge=1)
    failure_window_s: float = Field(default=60.0, gt=0)


class StoreConfig(Strict):
    """`[store]`: where contacts and cross-references live."""

    url: str = "sqlite:///./contact-gateway.db"

    @field_validator("url")
    @classmethod
    def _supported(cls, value: str) -> str:
        # The store's own check (a scheme it can open, a PostgreSQL URL it can read), here so a wrong one stops the
        # configuration load with one line instead of failing in every worker's start-up.
        from resolvers.store import engine_url

        try:
            engine_url(value)
        except ConfigError as exc:
            raise ValueError(str(exc).removeprefix("store.url: ")) from None
        return value


class OutboxConfig(Strict):
    """`[outbox]`: how deliveries a vendor could not take yet are kept and redelivered."""

    #: A delivery not made within this long is FAILED (visible in `deliveries`, retryable by an operator).
    expire_after_s: float = Field(default=86_400.0, gt=0)
    #: Redelivery backoff: the first retry after about this long, doubling with jitter, capped.
    backoff_base_s: float = Field(default=1.0, gt=0)
    backoff_cap_s: float = Field(default=300.0, gt=0)
    #: How often a worker looks for due deliveries queued by other processes.
    poll_interval_s: float = Field(default=1.0, gt=0, le=60)
    #: Deliveries one process sends at once.
    max_parallel: int = Field(default=16, ge=1, le=1000)
    #: A lease outlives a vendor's deadline by this much before another process may take the delivery over.
    lease_grace_s: float = Field(default=5.0, ge=0)

    @model_validator(mode="after")
    def _cap_above_base(self) -> OutboxConfig:
        if self.backoff_cap_s < self.backoff_base_s:
            raise ValueError(
                f"backoff_cap_s ({self.backoff_cap_s:g}) is below backoff_base_s ({self.backoff_base_s:g}): "
                "the cap must be at least the first delay"
            )
        return self


class IdempotencyConfig(Strict):
    """`[idempotency]`: how long an idempotency key's first answer is kept."""

    ttl_s: float = Field(default=86_400.0, gt=0)


class LoggingConfig(Strict):
    """`[logging]`: how `serve` and `demo` log (one JSON object per line by default)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "console"] = "json"
    #: Log vendor error messages, which may quote the contact's personal data (names, e-mails, phones, addresses).
    personal_data: bool = False


class TelemetryConfig(Strict):
    """`[telemetry]`: OpenTelemetry tracing, off unless an OTLP endpoint is given."""

    #: OTLP/HTTP collector base URL, e.g. `http://otel-collector:4318` (spans go to `<url>/v1/traces`).
    otlp_endpoint: HttpUrl | None = None
    service_name: str = "contact-gateway"
    #: Share of traces started here that are recorded (a caller's sampled `traceparent` is always honoured).
    sample_ratio: float = Field(default=1.0, ge=0, le=1)


class MetricsConfig(Strict):
    """`[metrics]`: Prometheus text at GET /metrics."""

    enabled: bool = True
    #: When set, a scrape must send `Authorization: Bearer <token>`.
    token: SecretStr | None = Field(default=None, min_length=16)


class GatewayConfig(Strict):
    """The whole configuration file."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)
    idempotency: IdempotencyConfig = Field(default_factory=IdempotencyConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    #: One settings object per enabled vendor, validated by that vendor's own settings model.
    vendors: dict[Vendor, VendorSettings] = Field(default_factory=dict)


def substitute_env(value: Any, environ: dict[str, str], path: str = "") -> Any:
    """Replace `${NAME}` in every string with the environment variable; a missing one is an error naming the key."""
    if isinstance(value, dict):
        return {k: substitute_env(v, environ, f"{path}.{k}" if path else k) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_env(v, environ, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, str):

        def repl(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in environ:
                raise ConfigError(f"{path}: environment variable {name} is not set")
            return environ[name]

        return _ENV.sub(repl, value)
    return value


def _describe(exc: ValidationError, prefix: str) -> str:
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        key = render_path([prefix, *err["loc"]] if prefix else err["loc"])
        message = "unknown key" if err["type"] == "extra_forbidden" else error_message(err)
        if err["type"] == "missing":
            message = "required key is missing"
        if err["type"] == "value_error":
            # A table-level check names its key first ("secret: required ..."): move it into the path.
            message = str(err.get("ctx", {}).get("error", message))
            named, sep, rest = message.partition(": ")
            if sep and re.fullmatch(r"[a-z_]+(?:/[a-z_]+)?", named):
                key, message = f"{key}.{named}" if key else named, rest
        lines.append(f"{key}: {message}")
    return "; ".join(lines)


def build_config(data: dict[str, Any], environ: dict[str, str] | None = None) -> GatewayConfig:
    """Validate a parsed configuration (after `${ENV}` substitution) into a `GatewayConfig`.

    Every problem is reported at once, the gateway's own tables first and then each vendor's in the file's order
    (one `ConfigError`, its parts joined by "; "), so an operator fixes a file in one pass, not one error per start.
    """
    from resolvers.vendors import REGISTRY  # the registry imports every vendor; only needed here

    data = substitute_env(data, dict(os.environ) if environ is None else environ)
    raw_vendors = data.pop("vendors", {}) or {}
    problems: list[str] = []
    config: GatewayConfig | None = None
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        problems.append(_describe(exc, ""))
    else:
        names = [t.name for t in config.auth.tokens]
        if len(set(names)) != len(names):
            problems.append("auth.tokens: token names must be unique")
    vendors: dict[Vendor, VendorSettings] = {}
    if not isinstance(raw_vendors, dict):
        problems.append("vendors: must be a table of vendor tables")
        raw_vendors = {}
    known = {plugin.vendor.value: plugin for plugin in REGISTRY.values()}
    for name, table in raw_vendors.items():
        plugin = known.get(name)
        if plugin is None:
            problems.append(f"vendors.{name}: unknown vendor (known: {', '.join(sorted(known))})")
            continue
        try:
            vendors[plugin.vendor] = plugin.connector.settings_type.model_validate(table)
        except ValidationError as exc:
            problems.append(_describe(exc, f"vendors.{name}"))
    if problems or config is None:
        raise ConfigError("; ".join(problems))
    return config.model_copy(update={"vendors": vendors})


def load_config(path: str | Path, environ: dict[str, str] | None = None) -> GatewayConfig:
    """Read and validate a TOML configuration file."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"configuration file {file} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"configuration file {file} is a directory") from None
    except OSError as exc:
        raise ConfigError(f"configuration file {file} cannot be read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not UTF-8 text (byte {exc.start}): TOML files are UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    return build_config(data, environ)
