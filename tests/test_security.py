"""Who may do what, and what the API refuses before it does anything: JWTs, vendor allow-lists, failed-auth rate
limiting, the audit trail, GraphQL limits, introspection, `_service`, masked errors, body size, batching, CORS.

Every test runs a real gateway on a socket (uvicorn) against the real simulators; JWTs are signed with real keys
(PyJWT + cryptography), a JWKS URL is served by a real aiohttp server.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import websockets
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from graph.auth import FailureLimiter
from graph.cli import EXAMPLE_VARIABLES
from resolvers.results import Vendor
from tests.conftest import ADMIN_TOKEN, READ_TOKEN, WRITE_TOKEN, Gateway, Simulators
from tests.support import by_vendor

ISSUER = "https://idp.example.test/"
AUDIENCE = "contact-gateway"
SECRET = "a-shared-secret-of-at-least-32-characters!"

OPERATOR = ["contacts:read", "contacts:write", "contacts:admin"]
UPSERT = """
mutation($input: ContactInput!, $vendors: [Vendor!]) {
  upsertContact(input: $input, vendors: $vendors) { status results { vendor status } }
}"""
READ = "{ contacts(first: 1) { edges { node { id } } } }"


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "svc-billing",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "scope": "contacts:read contacts:write",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def hs256(**overrides: Any) -> str:
    return jwt.encode(claims(**overrides), SECRET, algorithm="HS256")


async def post(gateway: Gateway, query: str, token: str | None, variables: dict[str, Any] | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return await gateway.client.post(
        f"{gateway.url}/graphql", json={"query": query, "variables": variables or {}}, headers=headers
    )


@pytest.fixture
async def jwt_gateway(make_gateway: Callable[..., Any]) -> Gateway:
    gateway: Gateway = await make_gateway(
        tables={"auth": {"jwt": {"issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["HS256"], "secret": SECRET}}}
    )
    return gateway


# -- JWT --------------------------------------------------------------------------------------------------------------


async def test_a_valid_hs256_token_is_accepted_with_its_scopes(jwt_gateway: Gateway) -> None:
    response = await post(jwt_gateway, READ, hs256())
    assert response.status_code == 200 and "errors" not in response.json(), response.text
    # `scp` as a list works too; a token without the write scope may read but not write.
    response = await post(jwt_gateway, UPSERT, hs256(scope=None, scp=["contacts:read"]), {"input": {"id": "j1"}})
    body = response.json()
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert "contacts:write" in body["errors"][0]["message"]


async def test_a_static_token_with_two_dots_works_beside_jwts(make_gateway: Callable[..., Any]) -> None:
    """A credential with two dots went to the JWT check alone, so such a static token never logged in once
    `[auth.jwt]` was set."""
    dotted = "dotted.token.0123456789"
    gateway: Gateway = await make_gateway(
        tables={
            "auth": {
                "tokens": [{"name": "dotted", "token": dotted, "scopes": ["contacts:read"]}],
                "jwt": {"issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["HS256"], "secret": SECRET},
            }
        }
    )
    for token in (dotted, hs256()):
        response = await post(gateway, READ, token)
        assert response.status_code == 200 and "errors" not in response.json(), response.text
    assert (await post(gateway, READ, "dotted.token.wrong")).status_code == 401


@pytest.mark.parametrize(
    ("why", "token"),
    [
        ("expired", lambda: hs256(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200)),
        ("not yet valid", lambda: hs256(nbf=int(time.time()) + 3600)),
        ("wrong audience", lambda: hs256(aud="someone-else")),
        ("wrong issuer", lambda: hs256(iss="https://evil.example/")),
        ("no expiry", lambda: hs256(exp=None)),
        ("bad signature", lambda: jwt.encode(claims(), "another-secret-that-is-long-enough-too!", algorithm="HS256")),
        ("alg none", lambda: jwt.encode(claims(), None, algorithm="none")),  # type: ignore[arg-type]
        ("no subject", lambda: hs256(sub=None)),
        ("garbage", lambda: "abc.def.ghi"),
    ],
)
async def test_invalid_tokens_are_refused(jwt_gateway: Gateway, why: str, token: Callable[[], str]) -> None:
    response = await post(jwt_gateway, READ, token())
    assert response.status_code == 401, (why, response.text)
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_static_tokens_still_work_beside_jwts(jwt_gateway: Gateway) -> None:
    response = await post(jwt_gateway, READ, READ_TOKEN)
    assert response.status_code == 200 and "errors" not in response.json()


def _jwks(*keys: tuple[str, Any]) -> dict[str, Any]:
    out = []
    for kid, key in keys:
        family = RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else ECAlgorithm
        jwk = json.loads(family.to_jwk(key.public_key()))
        jwk["kid"] = kid
        out.append(jwk)
    return {"keys": out}


async def test_rs256_with_keys_from_a_jwks_file(make_gateway: Callable[..., Any], tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps(_jwks(("k1", key))))
    gateway: Gateway = await make_gateway(
        tables={
            "auth": {"jwt": {"issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["RS256"], "jwks_file": str(jwks)}}
        }
    )
    good = jwt.encode(claims(), key, algorithm="RS256", headers={"kid": "k1"})
    assert (await post(gateway, READ, good)).status_code == 200
    forged = jwt.encode(claims(), stranger, algorithm="RS256", headers={"kid": "k1"})
    assert (await post(gateway, READ, forged)).status_code == 401
    unknown_kid = jwt.encode(claims(), key, algorithm="RS256", headers={"kid": "k9"})
    assert (await post(gateway, READ, unknown_kid)).status_code == 401
    # Algorithm confusion: the public key used as an HS256 secret is refused (only RS256 is configured).
    public_pem = key.public_key().public_bytes(encoding=Encoding.PEM, format=PublicFormat.SubjectPublicKeyInfo)
    confused = _hmac_token(public_pem, {"kid": "k1"})
    assert (await post(gateway, READ, confused)).status_code == 401


def _hmac_token(secret: bytes, headers: dict[str, str]) -> str:
    """An HS256 token signed with arbitrary bytes (PyJWT refuses PEM keys as HMAC secrets, so sign by hand)."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT", **headers}).encode())
    body = b64(json.dumps(claims()).encode())
    signature = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


@pytest.fixture
async def jwks_server() -> AsyncIterator[tuple[str, ec.EllipticCurvePrivateKey, list[int]]]:
    key = ec.generate_private_key(ec.SECP256R1())
    fetched: list[int] = []

    async def keys(request: web.Request) -> web.Response:
        fetched.append(1)
        return web.json_response(_jwks(("ec1", key)))

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", keys)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/.well-known/jwks.json", key, fetched
    finally:
        await runner.cleanup()


async def test_es256_with_keys_from_a_jwks_url(
    make_gateway: Callable[..., Any], jwks_server: tuple[str, ec.EllipticCurvePrivateKey, list[int]]
) -> None:
    url, key, fetched = jwks_server
    gateway: Gateway = await make_gateway(
        tables={"auth": {"jwt": {"issuer": ISSUER, "audience": AUDIENCE, "algorithms": ["ES256"], "jwks_url": url}}}
    )
    token = jwt.encode(claims(), key, algorithm="ES256", headers={"kid": "ec1"})
    for _ in range(3):
        response = await post(gateway, READ, token)
        assert response.status_code == 200, response.text
    assert len(fetched) == 1  # the key set is cached, not fetched per request
    other = ec.generate_private_key(ec.SECP256R1())
    forged = jwt.encode(claims(), other, algorithm="ES256", headers={"kid": "ec1"})
    assert (await post(gateway, READ, forged)).status_code == 401


# -- vendor allow-list -------------------------------------------------------------------------------------------------


async def test_a_token_writes_only_to_the_vendors_it_names(
    make_gateway: Callable[..., Any], simulators: Simulators
) -> None:
    limited = "test-limited-token-0123456789"
    gateway: Gateway = await make_gateway(
        tables={
            "auth": {
                "tokens": [
                    {"name": "limited", "token": limited, "scopes": ["contacts:write"], "vendors": ["oneserve", "eros"]}
                ],
                "jwt": {
                    "issuer": ISSUER,
                    "audience": AUDIENCE,
                    "algorithms": ["HS256"],
                    "secret": SECRET,
                    "vendors_claim": "vendors",
                },
            }
        }
    )
    contact = {"id": "allow-1", "firstName": "Ada", "lastName": "Lovelace"}
    body = (await post(gateway, UPSERT, limited, {"input": contact})).json()
    assert {r["vendor"] for r in body["data"]["upsertContact"]["results"]} == {"ONESERVE", "EROS"}
    for vendor in (Vendor.JIM2, Vendor.SUPEROFFICE, Vendor.VALOMNIA):
        assert await simulators.calls(vendor) == [], vendor
    refused = (await post(gateway, UPSERT, limited, {"input": contact, "vendors": ["ONESERVE", "JIM2"]})).json()
    assert refused["errors"][0]["extensions"] == {"code": "FORBIDDEN", "argument": "vendors"}
    assert "JIM2" in refused["errors"][0]["message"] and refused["data"] is None
    assert await simulators.calls(Vendor.JIM2) == []
    # The same from a JWT's vendors claim.
    token = hs256(scope="contacts:write", vendors="jim2")
    body = (await post(gateway, UPSERT, token, {"input": {**contact, "id": "allow-2"}})).json()
    assert [r["vendor"] for r in body["data"]["upsertContact"]["results"]] == ["JIM2"]


async def test_a_token_naming_a_vendor_not_configured_writes_to_the_configured_ones(
    make_gateway: Callable[..., Any], simulators: Simulators
) -> None:
    """`vendors` omitted means every configured vendor (the contract). A token allowed Oneserve and Valomnia, on a
    gateway without Valomnia, got a Valomnia result "vendor is not configured" too: a configuration matter shown
    as a vendor failure. It writes to Oneserve alone now; naming Valomnia is still answered SKIPPED, as for anyone."""
    limited = "test-limited-token-0123456789"
    tokens = [{"name": "limited", "token": limited, "scopes": ["contacts:write"], "vendors": ["oneserve", "valomnia"]}]
    gateway: Gateway = await make_gateway({"valomnia": None}, tables={"auth": {"tokens": tokens}})
    contact = {"id": "allow-3", "title": "Ms", "firstName": "Ada", "lastName": "Lovelace"}
    body = (await post(gateway, UPSERT, limited, {"input": contact})).json()
    assert [r["vendor"] for r in body["data"]["upsertContact"]["results"]] == ["ONESERVE"], body
    named = (await post(gateway, UPSERT, limited, {"input": contact, "vendors": ["VALOMNIA"]})).json()
    (result,) = named["data"]["upsertContact"]["results"]
    assert (result["vendor"], result["status"]) == ("VALOMNIA", "SKIPPED"), named
    assert await simulators.calls(Vendor.VALOMNIA) == []


async def test_a_token_limited_to_some_vendors_cannot_change_what_another_vendor_is_still_owed(
    make_gateway: Callable[..., Any], simulators: Simulators
) -> None:
    """Eros is down when an operator writes C-1: its delivery waits, to send the contact as stored when it goes. A
    token limited to Oneserve then wrote C-1 as "HACKED", and Eros later received that. Now that write is refused
    (FORBIDDEN), naming the delivery, and nothing of it is stored; once Eros has its delivery, the token may write."""
    limited = "test-limited-token-0123456789"
    gateway: Gateway = await make_gateway(
        {"eros": {"max_attempts": 1, "breaker_threshold": 0}},
        tables={
            "auth": {
                "tokens": [
                    {"name": "limited", "token": limited, "scopes": ["contacts:write"], "vendors": ["oneserve"]},
                    {"name": "operator", "token": ADMIN_TOKEN, "scopes": OPERATOR},
                ]
            },
            "outbox": {"backoff_base_s": 30, "backoff_cap_s": 30},
        },
    )
    original = {
        "id": "C-1",
        "title": "Ms",
        "firstName": "Ada",
        "lastName": "Original",
        "details": [{"kind": "PHONE", "value": "01392 000000"}],
        "address": {"lines": ["1 Way", "Flat 2"], "postCode": "EX4 9HL", "latitude": 50.7, "longitude": -3.5},
    }
    await simulators.faults(Vendor.EROS, fail_next=1, fail_status=503)
    first = await gateway.graphql(UPSERT, {"input": original, "vendors": ["EROS", "ONESERVE"]}, token=ADMIN_TOKEN)
    assert by_vendor(first["data"]["upsertContact"]["results"])["EROS"]["status"] == "QUEUED", first

    hacked = (await post(gateway, UPSERT, limited, {"input": {**original, "lastName": "HACKED"}})).json()
    assert hacked["data"] is None, hacked
    error = hacked["errors"][0]
    assert error["extensions"] == {"code": "FORBIDDEN", "argument": "input.id"}, error
    assert "not yet delivered to EROS (delivery" in error["message"] and "PENDING" in error["message"], error
    stored = await gateway.graphql('{ contact(id: "C-1") { lastName } }', token=ADMIN_TOKEN)
    assert stored["data"]["contact"]["lastName"] == "Original"
    # In a batch the refusal is that input's payload: FAILED, the vendor SKIPPED with AUTH_FAILED at `id`.
    many = "mutation($inputs: [ContactInput!]!) { upsertContacts(inputs: $inputs) { status results { vendor status "
    many += "errors { field code message } } } }"
    batch = (await post(gateway, many, limited, {"inputs": [{**original, "lastName": "HACKED"}]})).json()
    ((refused,),) = [p["results"] for p in batch["data"]["upsertContacts"]]
    assert (refused["vendor"], refused["status"]) == ("ONESERVE", "SKIPPED"), batch
    ((field, code, message),) = [(e["field"], e["code"], e["message"]) for e in refused["errors"]]
    assert (field, code) == ("id", "AUTH_FAILED") and "not yet delivered to EROS" in message, batch
    assert "errors" not in batch and batch["data"]["upsertContacts"][0]["status"] == "FAILED"
    stored = await gateway.graphql('{ contact(id: "C-1") { lastName } }', token=ADMIN_TOKEN)
    assert stored["data"]["contact"]["lastName"] == "Original"

    # An operator sends Eros its delivery; then the limited token's write goes to Oneserve alone, as it should.
    (delivery,) = [
        e["node"]["id"]
        for e in (
            await gateway.graphql(
                "{ deliveries(status: PENDING, vendor: EROS) { edges { node { id } } } }", token=ADMIN_TOKEN
            )
        )["data"]["deliveries"]["edges"]
    ]
    await gateway.graphql(
        "mutation($id: ID!) { cancelDelivery(id: $id) { status } }", {"id": delivery}, token=ADMIN_TOKEN
    )
    allowed = (await post(gateway, UPSERT, limited, {"input": {**original, "lastName": "Later"}})).json()
    assert [r["vendor"] for r in allowed["data"]["upsertContact"]["results"]] == ["ONESERVE"], allowed


# -- failed authentications --------------------------------------------------------------------------------------------


def test_failure_limiter_window() -> None:
    now = [1000.0]
    limiter = FailureLimiter(3, 60.0, clock=lambda: now[0])
    for _ in range(2):
        limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") is None
    limiter.failed("10.0.0.1")
    assert limiter.retry_after("10.0.0.1") == pytest.approx(60.0)
    assert limiter.retry_after("10.0.0.2") is None  # per address
    now[0] += 30
    assert limiter.retry_after("10.0.0.1") == pytest.approx(30.0)
    now[0] += 31
    assert limiter.retry_after("10.0.0.1") is None  # the window passed


def test_failure_limiter_forgets_the_oldest_addresses() -> None:
    limiter = FailureLimiter(1, 60.0, max_addresses=2)
    for address in ("a", "b", "c"):
        limiter.failed(address)
    assert limiter.retry_after("a") is None and limiter.retry_after("c") is not None


async def test_repeated_failures_from_an_address_are_refused_for_a_while(make_gateway: Callable[..., Any]) -> None:
    gateway: Gateway = await make_gateway(tables={"auth": {"max_failures": 3, "failure_window_s": 60}})
    for _ in range(3):
        assert (await post(gateway, READ, "wrong-token-wrong-token")).status_code == 401
    refused = await post(gateway, READ, READ_TOKEN)  # even a good token, from that address, waits
    assert refused.status_code == 429
    assert 0 < int(refused.headers["retry-after"]) <= 60
    assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"


# -- audit -------------------------------------------------------------------------------------------------------------


async def test_every_write_is_audited_without_secrets_or_payload(
    gateway: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="contact_gateway.audit")
    contact = {**EXAMPLE_VARIABLES["input"], "id": "audit-1", "lastName": "Hopper-Secretname"}
    await gateway.graphql(UPSERT, {"input": contact, "vendors": ["EROS", "ONESERVE"]})
    await gateway.graphql(UPSERT, {"input": contact}, token=READ_TOKEN)  # refused: no write scope
    lines = [{"event": r.getMessage(), **r.fields} for r in caplog.records if r.name == "contact_gateway.audit"]
    write = next(line for line in lines if line["event"] == "write")
    assert write["principal"] == "demo" and write["contact_id"] == "audit-1"
    assert write["operation"] == "upsertContact" and write["vendors"] == ["ONESERVE", "EROS"]
    assert write["status"] == "SUCCEEDED" and write["results"] == {"ONESERVE": "CREATED", "EROS": "CREATED"}
    refused = next(line for line in lines if line["event"] == "refused")
    assert refused["principal"] == "reader" and refused["operation"] == "upsertContact"
    text = caplog.text
    assert "Hopper-Secretname" not in text and WRITE_TOKEN not in text and READ_TOKEN not in text


# -- GraphQL limits, introspection, _service ---------------------------------------------------------------------------


@pytest.fixture
async def strict_gateway(make_gateway: Callable[..., Any]) -> Gateway:
    """`serve`'s defaults: introspection off, no router address; small limits to test them."""
    gateway: Gateway = await make_gateway(
        tables={
            "server": {
                "introspection": False,
                "max_depth": 4,
                "max_aliases": 5,
                "max_tokens": 400,
                "max_batch_contacts": 3,
                "max_body_bytes": 20_000,
            }
        }
    )
    return gateway


async def test_introspection_is_refused_unless_configured(strict_gateway: Gateway, gateway: Gateway) -> None:
    body = (await post(strict_gateway, "{ __schema { queryType { name } } }", READ_TOKEN)).json()
    assert "introspection" in body["errors"][0]["message"].lower() and "data" not in body
    body = (await post(gateway, "{ __schema { queryType { name } } }", READ_TOKEN)).json()
    assert body["data"]["__schema"]["queryType"]["name"] == "Query"


#: Guesses near the schema's names, each of which graphql-core answers with a "Did you mean ...?".
NEAR_MISSES: list[tuple[str, dict[str, Any]]] = [
    ('{ contac(id: "x") { id } }', {}),  # a field
    ('{ contact(idd: "x") { id } }', {}),  # an argument
    ('query($v: [Vendr!]) { vendors { vendor } contact(id: "x") { id } } ', {}),  # a type
    ('{ validateContact(input: {id: "x"}, vendors: [EROSS]) { vendor } }', {}),  # an enum value in the document
    ('query($v: [Vendor!]) { validateContact(input: {id: "x"}, vendors: $v) { vendor } }', {"v": ["EROSS"]}),
    ('{ validateContact(input: {id: "x", firstNam: "A"}) { vendor } }', {}),  # an input field in the document
    ("query($i: ContactInput!) { validateContact(input: $i) { vendor } }", {"i": {"id": "x", "firstNam": "A"}}),
]


@pytest.mark.parametrize(("query", "variables"), NEAR_MISSES)
async def test_errors_suggest_no_names_while_introspection_is_off(
    strict_gateway: Gateway, gateway: Gateway, query: str, variables: dict[str, Any]
) -> None:
    """With introspection off, "Did you mean 'contact'?" would hand out the names it hides to whoever guesses near
    them; the error still says what is wrong. With it on (`demo`), the suggestions help and stay."""
    refused = (await post(strict_gateway, query, READ_TOKEN, variables)).json()
    helped = (await post(gateway, query, READ_TOKEN, variables)).json()
    assert refused["errors"] and helped["errors"], (refused, helped)
    assert not any("Did you mean" in error["message"] for error in refused["errors"]), refused
    assert any("Did you mean" in error["message"] for error in helped["errors"]), helped


async def test_depth_alias_and_token_limits(strict_gateway: Gateway) -> None:
    deep = "{ contacts { edges { node { vendorLinks { pendingDeliveries { contactId } } } } } }"
    body = (await post(strict_gateway, deep, READ_TOKEN)).json()
    assert "exceeds maximum operation depth" in body["errors"][0]["message"]
    aliases = "{ " + " ".join(f"a{i}: vendors {{ vendor }}" for i in range(6)) + " }"
    body = (await post(strict_gateway, aliases, READ_TOKEN)).json()
    assert "aliases" in body["errors"][0]["message"].lower()
    tokens = "{ contacts(first: 1) { edges { node { " + " ".join(["id"] * 400) + " } } } }"
    body = (await post(strict_gateway, tokens, READ_TOKEN)).json()
    assert "token" in body["errors"][0]["message"].lower()
    ok = (await post(strict_gateway, "{ contacts(first: 1) { edges { node { id } } } }", READ_TOKEN)).json()
    assert "errors" not in ok


async def test_too_many_contacts_in_one_upsert_contacts(strict_gateway: Gateway, simulators: Simulators) -> None:
    query = "mutation($inputs: [ContactInput!]!) { upsertContacts(inputs: $inputs) { status } }"
    inputs = [{"id": f"many-{i}"} for i in range(4)]
    body = (await post(strict_gateway, query, WRITE_TOKEN, {"inputs": inputs})).json()
    error = body["errors"][0]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "argument": "inputs"}
    assert "at most 3" in error["message"]
    for vendor in Vendor:
        assert await simulators.calls(vendor) == [], vendor


async def test_service_sdl_needs_the_federation_scope_or_a_router_address(
    strict_gateway: Gateway, make_gateway: Callable[..., Any]
) -> None:
    sdl = "{ _service { sdl } }"
    body = (await post(strict_gateway, sdl, READ_TOKEN)).json()
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN" and "data" not in body
    body = (await post(strict_gateway, "query Q { ...F } fragment F on Query { _service { sdl } }", READ_TOKEN)).json()
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    body = (await post(strict_gateway, sdl, WRITE_TOKEN)).json()  # the demo token carries contacts:federation
    assert "type Contact" in body["data"]["_service"]["sdl"]
    router: Gateway = await make_gateway(tables={"server": {"router_addresses": ["127.0.0.1"]}})
    body = (await post(router, sdl, READ_TOKEN)).json()
    assert "type Contact" in body["data"]["_service"]["sdl"]


async def test_unexpected_errors_are_masked_with_a_reference(
    make_gateway: Callable[..., Any], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gateway: Gateway = await make_gateway(store="masked.db")
    # Break the store under the running gateway: every read of contacts now fails with an SQL error.
    with sqlite3.connect(tmp_path / "masked.db") as db:
        db.execute("ALTER TABLE contacts RENAME TO contacts_gone")
    caplog.set_level(logging.ERROR)
    response = await post(gateway, READ, READ_TOKEN)
    text = response.text
    error = response.json()["errors"][0]
    assert error["message"] == "Unexpected error." and error["extensions"]["code"] == "INTERNAL"
    for leak in ("contacts", "SELECT", "sqlite", "Traceback", str(tmp_path)):
        assert leak not in text.replace('"contacts"', ""), leak
    reference = error["extensions"]["reference"]
    assert any(reference in r.getMessage() for r in caplog.records)  # the operator can find it
    # Expected errors keep their message and code.
    body = (await post(gateway, "{ contacts(first: 1000) { edges { cursor } } }", READ_TOKEN)).json()
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


# -- body size, batching -----------------------------------------------------------------------------------------------


async def test_oversized_bodies_are_refused_before_parsing(strict_gateway: Gateway) -> None:
    big = {"query": READ, "variables": {"pad": "x" * 30_000}}
    response = await strict_gateway.client.post(
        f"{strict_gateway.url}/graphql", json=big, headers={"Authorization": f"Bearer {READ_TOKEN}"}
    )
    assert response.status_code == 413 and response.json()["errors"][0]["extensions"]["code"] == "PAYLOAD_TOO_LARGE"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it streams
        yield b'{"query": "{ contacts { edges { cursor } } }", "variables": {"pad": "'
        for _ in range(40):
            yield b"x" * 1000
        yield b'"}}'

    response = await strict_gateway.client.post(
        f"{strict_gateway.url}/graphql",
        content=chunks(),
        headers={"Authorization": f"Bearer {READ_TOKEN}", "Content-Type": "application/json"},
    )
    assert response.status_code == 413


async def test_batched_requests_are_refused_unless_configured(
    gateway: Gateway, make_gateway: Callable[..., Any]
) -> None:
    batch = [{"query": READ}, {"query": READ}]
    headers = {"Authorization": f"Bearer {READ_TOKEN}"}
    response = await gateway.client.post(f"{gateway.url}/graphql", json=batch, headers=headers)
    assert response.status_code == 400 and "batch" in response.text.lower()
    batching: Gateway = await make_gateway(tables={"server": {"batch_max_operations": 2}})
    response = await batching.client.post(f"{batching.url}/graphql", json=batch, headers=headers)
    assert response.status_code == 200 and len(response.json()) == 2
    response = await batching.client.post(f"{batching.url}/graphql", json=batch * 2, headers=headers)
    assert response.status_code == 400


# -- hostile requests under load ---------------------------------------------------------------------------------------


async def test_hostile_requests_are_refused_quickly_while_others_are_served(strict_gateway: Gateway) -> None:
    """Floods of oversized bodies, deep queries and alias storms: each refused at once, and a reader's queries keep
    being answered meanwhile."""
    headers = {"Authorization": f"Bearer {READ_TOKEN}"}
    url = f"{strict_gateway.url}/graphql"
    hostile = [
        {"json": {"query": READ, "variables": {"pad": "x" * 200_000}}},
        {"json": {"query": "{" + "contacts { edges { node { " * 30 + "id" + " } } }" * 30 + "}"}},
        {"json": {"query": "{ " + " ".join(f"a{i}: vendors {{ vendor }}" for i in range(2000)) + " }"}},
        {"json": {"query": "{ " * 5000}},
    ]
    async with httpx.AsyncClient(timeout=30) as attacker:

        async def attack() -> list[int]:
            statuses = []
            for _ in range(10):
                for request in hostile:
                    response = await attacker.post(url, headers=headers, **request)  # type: ignore[arg-type]
                    statuses.append(response.status_code)
                    assert "errors" in response.json()
            return statuses

        async def read() -> int:
            served = 0
            for _ in range(20):
                response = await strict_gateway.client.post(url, json={"query": READ}, headers=headers)
                assert response.status_code == 200 and "errors" not in response.json()
                served += 1
            return served

        results = await asyncio.gather(attack(), attack(), read())
    assert results[2] == 20
    assert 413 in results[0]


# -- CORS and WebSocket origins ----------------------------------------------------------------------------------------


async def test_cors_only_for_configured_origins(make_gateway: Callable[..., Any]) -> None:
    gateway: Gateway = await make_gateway(tables={"server": {"cors_origins": ["https://app.example.test"]}})
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    ok = await gateway.client.options(
        f"{gateway.url}/graphql", headers={"Origin": "https://app.example.test", **preflight}
    )
    assert ok.headers.get("access-control-allow-origin") == "https://app.example.test"
    evil = await gateway.client.options(
        f"{gateway.url}/graphql", headers={"Origin": "https://evil.example", **preflight}
    )
    assert "access-control-allow-origin" not in evil.headers


async def test_websocket_origins_are_checked(make_gateway: Callable[..., Any]) -> None:
    gateway: Gateway = await make_gateway(tables={"server": {"allowed_origins": ["https://app.example.test"]}})
    url = gateway.url.replace("http://", "ws://") + "/graphql"
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with pytest.raises(websockets.exceptions.InvalidStatus):
        async with websockets.connect(
            url, origin="https://evil.example", additional_headers=auth, subprotocols=["graphql-transport-ws"]
        ) as ws:
            await ws.recv()
    async with websockets.connect(
        url, origin="https://app.example.test", additional_headers=auth, subprotocols=["graphql-transport-ws"]
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"


# -- nothing secret leaks ---------------------------------------------------------------------------------------------


def _issued_tokens(simulators: Simulators) -> set[str]:
    """Bearer tokens and sessions the simulators handed out to the gateway at run time."""
    issued: set[str] = set()
    for simulator in simulators.by_vendor.values():
        for name in ("tokens", "access_tokens"):
            held = getattr(simulator, name, None)
            if isinstance(held, dict):
                issued |= {str(k) for k in held if len(str(k)) >= 8}
    return issued


async def test_no_secret_in_answers_logs_or_errors(
    make_gateway: Callable[..., Any], simulators: Simulators, caplog: pytest.LogCaptureFixture
) -> None:
    """Every vendor secret the gateway holds, and every token it was issued, is absent from every answer, every log
    line and every delivery row: after successes, vendor failures and refused credentials."""
    from graph.cli import demo_config
    from resolvers.vendors import REGISTRY

    caplog.set_level(logging.DEBUG)
    configured = demo_config(simulators.base, WRITE_TOKEN, "sqlite:///unused")["vendors"]
    secrets = {
        value
        for table in configured.values()
        for key, value in table.items()
        if isinstance(value, str) and any(word in key for word in ("token", "password", "secret", "ticket"))
    }
    wrong = {
        plugin.vendor.value: {
            key: f"LEAKCHECK-{plugin.vendor.value}-{key}-0123456789" for key in plugin.bad_credentials
        }
        for plugin in REGISTRY.values()
    }
    secrets |= {value for table in wrong.values() for value in table.values()}
    contact = {**EXAMPLE_VARIABLES["input"], "id": "leak-1"}
    texts: list[str] = []

    good: Gateway = await make_gateway()
    texts.append((await post(good, UPSERT, WRITE_TOKEN, {"input": contact})).text)
    for vendor in Vendor:
        await simulators.faults(vendor, fail_next=1, fail_status=500)
    texts.append((await post(good, UPSERT, WRITE_TOKEN, {"input": {**contact, "lastName": "Byron"}})).text)
    texts.append((await post(good, "{ vendors { vendor circuit } }", ADMIN_TOKEN)).text)

    bad: Gateway = await make_gateway(vendor_overrides=wrong, store="bad.db")
    answer = await post(bad, UPSERT, WRITE_TOKEN, {"input": {**contact, "id": "leak-2"}})
    texts.append(answer.text)
    results = answer.json()["data"]["upsertContact"]["results"]
    assert all(r["status"] in ("REJECTED", "UNAVAILABLE", "QUEUED") for r in results), results  # creds refused
    deliveries = "{ deliveries(first: 50) { edges { node { vendor status lastError } } } }"
    texts.append((await post(bad, deliveries, ADMIN_TOKEN)).text)
    texts.append((await post(good, deliveries, ADMIN_TOKEN)).text)

    secrets |= _issued_tokens(simulators)
    haystacks = {"answers": "\n".join(texts), "logs": caplog.text}
    for where, text in haystacks.items():
        for secret in secrets:
            assert secret not in text, f"a secret ({secret[:6]}…) appears in the {where}"
    assert "LEAKCHECK" not in caplog.text


def test_vendor_errors_are_scrubbed_of_credentials() -> None:
    """What a vendor echoes back lands in messages: registered secrets and credential-shaped values never do."""
    from resolvers.errors import VendorRejected, register_secret

    register_secret("s3cret-registered-value")
    body = (
        '{"error": "bad login for s3cret-registered-value", "access_token": "tok-123456", '
        '"detail": "Authorization: Bearer abc.def.ghi", "ticket": "7T:xyz=="}'
    )
    message = VendorRejected(f"vendor answered HTTP 400: {body}").message
    for leaked in ("s3cret-registered-value", "tok-123456", "abc.def.ghi", "7T:xyz=="):
        assert leaked not in message, message
    assert "vendor answered HTTP 400" in message and "bad login for ***" in message


async def test_huge_lists_in_a_contact_are_refused_at_once(gateway: Gateway, simulators: Simulators) -> None:
    contact = {
        "id": "huge-1",
        "details": [{"kind": "PHONE", "value": f"0770090{i:04d}"} for i in range(5000)],
        "address": {"lines": ["x"] * 11},
    }
    body = await gateway.graphql(
        "mutation($input: ContactInput!) { upsertContact(input: $input) "
        "{ status results { vendor status errors { field code } } } }",
        {"input": contact},
    )
    result = body["data"]["upsertContact"]
    assert result["status"] == "FAILED"
    errors = result["results"][0]["errors"]
    assert {"field": "details", "code": "TOO_MANY"} in errors and {
        "field": "address.lines",
        "code": "TOO_MANY",
    } in errors
    for vendor in Vendor:
        assert await simulators.calls(vendor) == [], vendor


async def test_service_sdl_is_refused_over_websocket_too(gateway: Gateway) -> None:
    url = gateway.url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(url, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": f"Bearer {READ_TOKEN}"}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": "{ _service { sdl } }"}}))
        messages = []
        while not messages or messages[-1]["type"] not in ("complete", "error"):
            messages.append(json.loads(await ws.recv()))
        answer = messages[0]
    assert answer.get("type") in ("error", "next"), answer
    errors = answer["payload"] if answer["type"] == "error" else answer["payload"]["errors"]
    assert errors[0]["extensions"]["code"] == "FORBIDDEN", answer
    assert "type Contact" not in json.dumps(answer)


@pytest.mark.parametrize("bad_id", ["", " padded ", "x" * 51, "a\nb", "a\x00b"])
async def test_delete_contact_checks_the_id_like_an_upsert(
    gateway: Gateway, simulators: Simulators, bad_id: str
) -> None:
    body = await gateway.graphql("mutation($id: ID!) { deleteContact(id: $id) { status } }", {"id": bad_id})
    assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "argument": "id"}, body
    for vendor in Vendor:
        assert await simulators.calls(vendor) == [], vendor


async def test_repeated_operations_are_validated_once() -> None:
    """The limits must not defeat the validation cache (a fresh rule class per operation would miss it every time,
    and validation is most of an operation's cost)."""
    from graph.schema import DocumentCache, build_schema
    from resolvers.config import ServerConfig

    schema = build_schema(ServerConfig())
    query = "query Cached { __typename }"
    await schema.execute(query)
    hits, misses = DocumentCache.hits, DocumentCache.misses
    for _ in range(3):
        result = await schema.execute(query)
        assert result.errors is None
    assert (DocumentCache.hits - hits, DocumentCache.misses - misses) == (3, 0)


async def test_the_validation_cache_keeps_schemas_rules_and_documents_apart() -> None:
    """An entry answers only for its own schema, rules and document: introspection refused by one schema and allowed
    by another, alternately, with the same text; an invalid document's errors are the same from the cache; and the
    cache keeps at most `maxsize` entries."""
    from graph.schema import DocumentCache, build_schema
    from resolvers.config import ServerConfig

    closed = build_schema(ServerConfig(introspection=False))
    open_ = build_schema(ServerConfig(introspection=True))
    query = "query Types { __schema { queryType { name } } }"
    for _ in range(2):
        refused = await closed.execute(query)
        assert refused.errors and "introspection" in refused.errors[0].message.lower()
        allowed = await open_.execute(query)
        assert allowed.errors is None and allowed.data == {"__schema": {"queryType": {"name": "Query"}}}

    invalid = "query Bad { noSuchField }"
    first = await open_.execute(invalid)
    hits = DocumentCache.hits
    second = await open_.execute(invalid)
    assert DocumentCache.hits == hits + 1
    assert first.errors and second.errors
    assert [e.message for e in first.errors] == [e.message for e in second.errors]
    assert "noSuchField" in first.errors[0].message

    bounded = build_schema(ServerConfig())
    bounded.extensions = [
        e if getattr(e, "func", None) is not DocumentCache else lambda: DocumentCache(maxsize=3)
        for e in bounded.extensions
    ]
    for n in range(5):
        assert (await bounded.execute(f"query Q{n} {{ __typename }}")).errors is None
    assert len(DocumentCache.entries) <= 3
