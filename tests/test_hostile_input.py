"""Hostile ids and references: values that could change a vendor URL, query string, header or form body.

Every place a caller controls that reaches a vendor call gets every hostile value (`../`, `/`, `?`, `#`, `%2F`,
`%00`, CR/LF, NUL, 10,000 characters, look-alike slashes, emoji, an RTL override, ...): the contact `id`, names, a
detail value, an address line, a location `ref`, and the `vendorOptions` references (Oneserve's clientRef, Jim2's
cardNo, Eros' contactTypeId, Valomnia's customerId and photo file name). For each vendor, either

- the gateway refused it before calling: the result is INVALID, an error names the field, and the vendor's simulator
  received no call at all; or
- the simulator received it verbatim: the recorded call, decoded as the vendor decodes it (JSON body, urlencoded
  form, query string, multipart file name), holds the caller's value character for character, and every call went
  to one of the vendor's routes with exactly the expected path segments (nothing added by a `/`, nothing resolved
  away by a `..`, nothing cut off by a `?` or `#`).

Ids the vendors issue are hostile too: the simulators' `_admin/next-ids` hook makes Jim2 and Valomnia issue ids
holding `/`, `?`, `#` and `..`, and the later update and delete must address exactly that record. SuperOffice's ids
are integers (its reply model refuses anything else), so its URL building is checked directly.

Everything runs through the real gateway over HTTP to the five simulators over real sockets.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson
import pytest

from resolvers.model import Contact, parse_contact
from resolvers.results import Vendor
from resolvers.transport import Transport, _target, path_segment
from resolvers.vendors import REGISTRY
from resolvers.vendors.base import Connector, Prepared
from tests.conftest import Gateway, Simulators
from tests.support import DELETE, FULL_CONTACT, MISSING, PATH_TOKEN, UPSERT, by_vendor, value_at

#: The hostile values, by a name the test ids show.
HOSTILE: dict[str, str] = {
    "dotdot-slash": "../../x",
    "slash": "a/b",
    "query": "a?b=c&d=e",
    "fragment": "a#b",
    "pct-2F": "a%2Fb",
    "pct-00": "a%00b",
    "pct-bad": "100%",
    "crlf": "a\r\nX-Injected: 1",
    "nul": "a\x00b",
    "long": "x" * 10_000,
    "fullwidth-solidus": "a\uff0fb",
    "division-slash": "a\u2215b",
    "emoji": "\U0001f600\U0001f648",
    "rtl-override": "a\u202eb",
    "dotdot": "..",
    "dot": ".",
    "plus-space": "a+b c",
    "quotes": "a'b\"c",
    "backslash": "a\\b",
}

#: Each vendor's routes as path segments after the simulator's host; `{x}` is one segment of any value.
AUTH_ROUTES: dict[Vendor, list[list[str]]] = {
    Vendor.ONESERVE: [],
    Vendor.EROS: [["eros", "auth", "credentials"]],
    Vendor.JIM2: [["jim2", "token"], ["jim2", "logoff"]],
    Vendor.SUPEROFFICE: [],
    Vendor.VALOMNIA: [["valomnia", "j_spring_security_check"], ["valomnia", "login", "ajaxSuccess"]],
}
#: The routes that carry contacts (the ones whose bodies are checked).
CONTACT_ROUTES: dict[Vendor, list[list[str]]] = {
    Vendor.ONESERVE: [["oneserve", "acme", "rest", "contact", "contact"]],
    Vendor.EROS: [["eros", "json", "reply", "SaveContact"]],
    Vendor.JIM2: [
        ["jim2", "api", "v1", "cardfiles", "{card}", "contacts"],
        ["jim2", "api", "v1", "cardfiles", "{card}", "contacts", "{id}"],
    ],
    Vendor.SUPEROFFICE: [["superoffice", "api", "v1", "Contact"], ["superoffice", "api", "v1", "Contact", "{id}"]],
    Vendor.VALOMNIA: [["valomnia", "api", "v1.0", "contacts"], ["valomnia", "api", "v1.0", "contacts", "{id}"]],
}
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


# -- helpers --------------------------------------------------------------------------------------------------------


def segments(call: dict[str, Any]) -> list[str]:
    """The recorded call's path as the server split it: raw path (no query) cut at `/`, each segment decoded."""
    raw_path = call["path"].split("?", 1)[0]
    return [unquote(part) for part in raw_path.split("/")[1:]]


def matched(templates: list[list[str]], call: dict[str, Any]) -> dict[str, str] | None:
    got = segments(call)
    for template in templates:
        if len(template) == len(got) and all(t.startswith("{") or t == g for t, g in zip(template, got, strict=True)):
            return {t.strip("{}"): g for t, g in zip(template, got, strict=True) if t.startswith("{")}
    return None


def route(vendor: Vendor, call: dict[str, Any]) -> dict[str, str]:
    """The placeholders of the vendor route the call went to; fails when it matches none (a changed path)."""
    found = matched(AUTH_ROUTES[vendor] + CONTACT_ROUTES[vendor], call)
    assert found is not None, f"{vendor.name} call {call['method']} {call['path'][:200]!r} is on none of its routes"
    return found


def contact_writes(vendor: Vendor, calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The calls that wrote a contact (not logins, token requests or lookups)."""
    return [c for c in calls if c["method"] in WRITES and matched(CONTACT_ROUTES[vendor], c) is not None]


def decoded_body(call: dict[str, Any]) -> Any:
    """The body as the vendor reads it: JSON, or a urlencoded form (multipart fields are recorded urlencoded)."""
    content_type = next((v for k, v in call["headers"].items() if k.lower() == "content-type"), "")
    if not call["body"]:
        return None
    if "json" in content_type:
        return orjson.loads(call["body"])
    return dict(parse_qsl(call["body"], keep_blank_values=True))


def connector(vendor: Vendor, simulators: Simulators, overrides: dict[str, Any] | None = None) -> Connector[Any]:
    """The vendor's connector configured as the test gateway is (for its mapping only: no transport)."""
    plugin = REGISTRY[vendor]
    config = {**plugin.demo_config(simulators.url(vendor)), **(overrides or {})}
    return plugin.connector(plugin.connector.settings_type.model_validate(config), Transport.__new__(Transport))


async def new_calls(simulators: Simulators, vendor: Vendor, since: int) -> list[dict[str, Any]]:
    return (await simulators.calls(vendor))[since:]


async def call_counts(simulators: Simulators) -> dict[Vendor, int]:
    return {vendor: len(await simulators.calls(vendor)) for vendor in REGISTRY}


def wire_paths(prepared: Prepared, field: str) -> dict[str, Any]:
    """The wire fields the mapping fills from `field`, and what the payload holds there."""
    out = {w: value_at(prepared.payload, w) for w, source in prepared.sources.items() if source == field}
    return {w: v for w, v in out.items() if v is not MISSING}


Setter = Callable[[dict[str, Any], str], None]


def at(path: str) -> Setter:
    """A setter of one input field by its path (`details[1].value`, `vendorOptions.oneserve.clientRef`)."""

    def put(data: dict[str, Any], value: str) -> None:
        tokens = [int(i) if i else n for n, i in PATH_TOKEN.findall(path)]
        node: Any = data
        for token in tokens[:-1]:
            node = node[token] if isinstance(token, int) else node.setdefault(token, {})
        node[tokens[-1]] = value

    return put


async def check_each_vendor(
    gateway: Gateway,
    simulators: Simulators,
    field: str,
    value: str,
    data: dict[str, Any],
    *,
    overrides: dict[str, dict[str, Any]] | None = None,
    extra: Callable[[Vendor, list[dict[str, Any]], str], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Upsert `data` (which holds `value` at `field`) to every vendor and check the rule of this module for each:
    refused naming `field` and never called, or received verbatim on its own routes."""
    before = await call_counts(simulators)
    answer = await gateway.graphql(UPSERT, {"input": data})
    assert "errors" not in answer, answer
    results = by_vendor(answer["data"]["upsertContact"]["results"])
    contact = parse_contact(data)
    for vendor in REGISTRY:
        result = results[vendor.name]
        calls = await new_calls(simulators, vendor, before[vendor])
        label = f"{vendor.name} {field}={value[:40]!r}"
        if result["status"] == "INVALID":
            assert calls == [], f"{label}: called although INVALID"
            assert any(names(e["field"], field) for e in result["errors"]), f"{label}: no error names it: {result}"
            continue
        assert calls, f"{label}: {result['status']}, yet the vendor recorded no call (refused before its handler?)"
        for call in calls:
            route(vendor, call)
        assert isinstance(contact, Contact), f"{label}: not INVALID, yet the contact breaks the universal rules"
        prepared = connector(vendor, simulators, (overrides or {}).get(vendor.value)).prepare(contact)
        paths = wire_paths(prepared, field)
        if paths:
            assert value in paths.values(), f"{label}: the payload holds no verbatim copy: {paths}"
        writes = [c for c in contact_writes(vendor, calls) if decoded_body(c) is not None]
        if not writes:
            # Refused before any write (a lookup answered "no such customer"): `extra` checks what it was sent.
            assert result["status"] == "REJECTED", f"{label}: nothing written: {result}"
        for path, expected in paths.items() if writes else ():
            seen = [value_at(decoded_body(c), path) for c in writes]
            seen = [s for s in seen if s is not MISSING]
            assert seen, f"{label}: {path} is in no call: {result}"
            assert all(s == expected for s in seen), f"{label}: {path} arrived as {[str(s)[:60] for s in seen]}"
        if extra is not None:
            extra(vendor, calls, value)
    return results


def names(error_field: str, field: str) -> bool:
    """An error names `field` when it is that field or the list or object holding it (`address.lines`)."""
    return field == error_field or field.startswith((error_field + ".", error_field + "["))


def base_contact(key: str) -> dict[str, Any]:
    """FULL_CONTACT with its own id and e-mail (so e-mail reconciliation never adopts another case's record)."""
    data = copy.deepcopy(FULL_CONTACT)
    plain = re.sub(r"[^A-Za-z0-9]+", "-", key)
    data["id"] = f"H-{plain}"[:50]
    data["details"][0]["value"] = f"{plain}@example.com"
    return data


# -- the contact id ---------------------------------------------------------------------------------------------------


async def test_hostile_contact_id(gateway: Gateway, simulators: Simulators) -> None:
    """The id is Oneserve's contactRef, Eros' AlternateKey and SuperOffice's DbiKey (in the body, and in the
    `$filter` of the DbiKey lookup): values the id rules refuse (control characters, over 50 characters, blank
    ends) are INVALID for every vendor naming `id`; every other one arrives verbatim, the lookup's OData literal
    quoting included. deleteContact applies the same id rule (a refused id is a BAD_USER_INPUT error naming `id`,
    and no vendor is called); an accepted id reaches Eros' body verbatim and, when the gateway holds no link,
    SuperOffice's DbiKey lookup verbatim."""

    def lookup_filter(vendor: Vendor, calls: list[dict[str, Any]], value: str) -> None:
        if vendor is Vendor.SUPEROFFICE:
            filters = [c["query"].get("$filter") for c in calls if c["method"] == "GET" and "$filter" in c["query"]]
            literal = value.replace("'", "''")
            assert filters == [f"dbiKey eq '{literal}'"], filters

    for key, value in HOSTILE.items():
        data = base_contact(key)
        data["id"] = value
        results = await check_each_vendor(gateway, simulators, "id", value, data, extra=lookup_filter)
        accepted = results["EROS"]["status"] != "INVALID"
        assert accepted == (key not in {"crlf", "nul", "long"}), (key, results["EROS"])
        before = await call_counts(simulators)
        answer = await gateway.graphql(DELETE, {"id": value, "vendors": ["EROS", "SUPEROFFICE"]})
        if not accepted:
            assert answer["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "argument": "id"}, answer
            assert await call_counts(simulators) == before, key
            continue
        assert "errors" not in answer, answer
        for vendor in (Vendor.EROS, Vendor.SUPEROFFICE):
            calls = await new_calls(simulators, vendor, before[vendor])
            for call in calls:
                route(vendor, call)
        eros = [decoded_body(c) for c in await new_calls(simulators, Vendor.EROS, before[Vendor.EROS])]
        assert [b["AlternateKey"] for b in eros if b and "AlternateKey" in b] == [value], key


# -- values that go into bodies -------------------------------------------------------------------------------------

BODY_FIELDS = ["firstName", "lastName", "details[1].value", "address.lines[0]", "locations[0].ref"]


@pytest.mark.parametrize("field", BODY_FIELDS)
async def test_hostile_values_in_contact_fields(field: str, gateway: Gateway, simulators: Simulators) -> None:
    """Names, a phone number, an address line and a location ref go into JSON bodies and Valomnia's urlencoded
    form: each vendor either refuses a value naming the field (a length limit, a blank name) or receives it
    verbatim, NUL, CR/LF and `%00` included (JSON escapes them, the form percent-encodes them)."""
    for key, value in HOSTILE.items():
        data = base_contact(f"{field}-{key}")
        at(field)(data, value)
        await check_each_vendor(gateway, simulators, field, value, data)


async def test_hostile_email_reaches_bodies_and_lookups_verbatim(gateway: Gateway, simulators: Simulators) -> None:
    """An e-mail address may hold `/`, `?`, `#`, `&`, `=`, `+` and `%` and still be one (the canonical rule and
    Valomnia's): it goes into every body, into Jim2's `filter[email]` lookup and into Valomnia's `email` lookup,
    each as one query parameter holding exactly that address, as spelt (the match itself ignores case)."""
    value = "a/../b?c=d&e#f%2F+g@Example.com"
    data = base_contact("email")
    data["details"][0]["value"] = value

    def lookups(vendor: Vendor, calls: list[dict[str, Any]], value: str) -> None:
        queries = [c["query"] for c in calls if c["method"] == "GET" and c["query"]]
        if vendor is Vendor.JIM2:
            assert [q.get("filter[email]") for q in queries] == [value], queries
        if vendor is Vendor.VALOMNIA:
            assert [q.get("email") for q in queries] == [value], queries

    results = await check_each_vendor(gateway, simulators, "details[0].value", value, data, extra=lookups)
    assert {r["status"] for r in results.values()} == {"CREATED"}, results


# -- vendorOptions references ---------------------------------------------------------------------------------------

OPTION_FIELDS: dict[str, dict[str, dict[str, Any]]] = {
    "vendorOptions.oneserve.clientRef": {},
    "vendorOptions.jim2.cardNo": {},
    "vendorOptions.eros.contactTypeId": {},
    # With use_external_id, customerId is the customer's reference: free text, in the form and in the lookup query.
    "vendorOptions.valomnia.customerId": {"valomnia": {"use_external_id": True}},
}


@pytest.mark.parametrize("field", list(OPTION_FIELDS))
async def test_hostile_vendor_option_references(field: str, make_gateway: Any, simulators: Simulators) -> None:
    """References a caller gives in `vendorOptions` either fail the vendor's format pre-flight (Jim2's card number
    is digits and goes into the URL path; Eros' ContactType is a GUID; Valomnia's customer is numeric unless
    use_external_id) naming the option, or arrive verbatim (Oneserve's clientRef in the body; Valomnia's customer
    reference in the form and as the lookup's `customerId` parameter), even when the vendor then refuses them."""
    overrides = OPTION_FIELDS[field]
    gateway: Gateway = await make_gateway(vendor_overrides=overrides)

    def customer_lookup(vendor: Vendor, calls: list[dict[str, Any]], value: str) -> None:
        if vendor is Vendor.VALOMNIA and field.endswith("customerId"):
            queries = [c["query"] for c in calls if c["method"] == "GET" and c["query"]]
            assert all(q.get("customerId") == value for q in queries), queries

    for key, value in HOSTILE.items():
        data = base_contact(f"{field}-{key}")
        at(field)(data, value)
        results = await check_each_vendor(
            gateway, simulators, field, value, data, overrides=overrides, extra=customer_lookup
        )
        vendor = field.split(".")[1]
        named = next(r for r in results.values() if r["vendor"].lower() == vendor)
        if vendor in ("jim2", "eros"):
            assert named["status"] == "INVALID", (key, named)
        elif named["status"] != "INVALID":
            assert named["status"] == "REJECTED", (key, named)  # no such client or customer at the vendor


async def test_hostile_photo_file_names(gateway: Gateway, simulators: Simulators) -> None:
    """Valomnia's photo file name goes into the multipart part header (`filename="..."`): names with a path, a quote
    or a control character (CR/LF would start a new header) are refused naming `imageFileName`; every other name
    reaches Valomnia as written (not percent-encoded: `a b.png` must not become `a%20b.png`)."""
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    field = "vendorOptions.valomnia.imageFileName"
    for key, value in HOSTILE.items():
        name = f"{value}.png"
        data = base_contact(f"photo-{key}")
        data["vendorOptions"] = {"valomnia": {"imageFileName": name, "imageBase64": png}}
        before = await call_counts(simulators)
        answer = await gateway.graphql(UPSERT, {"input": data, "vendors": ["VALOMNIA"]})
        result = by_vendor(answer["data"]["upsertContact"]["results"])["VALOMNIA"]
        calls = await new_calls(simulators, Vendor.VALOMNIA, before[Vendor.VALOMNIA])
        if result["status"] == "INVALID":
            assert calls == [] and any(e["field"] == field for e in result["errors"]), (key, result)
            assert re.search(r'[/\\"\x00-\x1f]', name) or key == "long", (key, result)
            continue
        assert result["status"] == "CREATED", (key, result)
        for call in calls:
            route(Vendor.VALOMNIA, call)
        record = (await simulators.state(Vendor.VALOMNIA))["records"][result["remoteId"]]
        assert record["photo"].endswith(f"_{result['remoteId']}_{name}"), (key, record["photo"][-80:])


# -- ids the vendors issue -----------------------------------------------------------------------------------------

ISSUED = ["a/b", "x/../../../../token", "a?b=c", "a#b", "%2F", "..", ".", "a\uff0fb", "\U0001f600", "a\u202eb", "a b+c"]


async def issue(simulators: Simulators, vendor: Vendor, ids: list[str]) -> None:
    async with simulators.session.post(f"{simulators.url(vendor)}_admin/next-ids", json={"ids": ids}) as response:
        assert response.status == 200, await response.text()


@pytest.mark.parametrize("vendor", [Vendor.JIM2, Vendor.VALOMNIA], ids=lambda v: v.value)
async def test_issued_ids_are_one_path_segment(vendor: Vendor, gateway: Gateway, simulators: Simulators) -> None:
    """A remote id the vendor issued, holding `/`, `?`, `#`, `%2F`, `.` or `..`, addresses exactly that record in
    later URLs: the update (Jim2's PATCH, Valomnia's POST) and Jim2's DELETE go to the record route with the id as one
    segment, and the vendor finds the record (no 404, no other endpoint reached by traversal)."""
    for n, suffix in enumerate(ISSUED):
        remote = f"10-{suffix}" if vendor is Vendor.JIM2 else suffix
        await issue(simulators, vendor, [remote])
        data = base_contact(f"issued-{vendor.value}-{n}")
        created = by_vendor(
            (await gateway.graphql(UPSERT, {"input": data, "vendors": [vendor.name]}))["data"]["upsertContact"][
                "results"
            ]
        )[vendor.name]
        assert (created["status"], created["remoteId"]) == ("CREATED", remote), created
        before = len(await simulators.calls(vendor))
        data["firstName"] = "Changed"
        updated = by_vendor(
            (await gateway.graphql(UPSERT, {"input": data, "vendors": [vendor.name]}))["data"]["upsertContact"][
                "results"
            ]
        )[vendor.name]
        assert (updated["status"], updated["remoteId"]) == ("UPDATED", remote), updated
        if vendor is Vendor.JIM2:
            deleted = (await gateway.graphql(DELETE, {"id": data["id"], "vendors": ["JIM2"]}))["data"]["deleteContact"]
            assert deleted["results"][0]["status"] == "DELETED", deleted
        calls = contact_writes(vendor, await new_calls(simulators, vendor, before))
        record_calls = [c for c in calls if "id" in route(vendor, c)]
        assert record_calls, calls
        for call in record_calls:
            assert route(vendor, call)["id"] == remote, (suffix, call["path"])
            assert call["outcome"] in (200, 204), (suffix, call["method"], call["path"], call["outcome"])
        records = (await simulators.state(vendor))["records"]
        if vendor is Vendor.VALOMNIA:
            assert records[remote]["firstName"] == "Changed"
        else:
            assert remote not in records


@pytest.mark.parametrize("remote", [*ISSUED, "x" * 2_000], ids=lambda r: r[:12])
def test_record_urls_keep_an_id_in_one_segment(remote: str) -> None:
    """Every connector that puts a remote id into a URL (Jim2, SuperOffice, Valomnia) makes it exactly one path
    segment of the URL the transport sends, decoding back to the id (SuperOffice's ids are integers at the vendor,
    so this is where its encoding is checked)."""
    built: dict[str, tuple[str, int]] = {}
    for vendor in (Vendor.JIM2, Vendor.SUPEROFFICE, Vendor.VALOMNIA):
        plugin = REGISTRY[vendor]
        settings = plugin.connector.settings_type.model_validate(plugin.demo_config(f"http://h/{vendor.value}/"))
        c: Any = plugin.connector(settings, Transport.__new__(Transport))
        if vendor is Vendor.JIM2:
            built["jim2"] = (c.contact_url(f"10-{remote}"), 7)
        elif vendor is Vendor.SUPEROFFICE:
            built["superoffice"] = (c._record_url(remote), 5)
        else:
            built["valomnia"] = (c.contact_url(remote), 5)
    for name, (url, count) in built.items():
        sent = _target(url)
        parts = [unquote(p) for p in sent.raw_path.split("/")[1:]]
        assert len(parts) == count, (name, sent.raw_path)
        assert parts[-1] == (f"10-{remote}" if name == "jim2" else remote), (name, sent.raw_path)
        assert not sent.raw_query_string and not sent.fragment, (name, str(sent))


def test_path_segment_and_target() -> None:
    """`path_segment` encodes everything but unreserved characters and writes dot segments as `%2E`; an empty id is
    refused. `_target` keeps an encoded URL as it is (no dot-segment resolution) and still encodes a configured URL
    that is not encoded yet."""
    assert path_segment("..") == "%2E%2E"
    assert path_segment("a/b?c#d%") == "a%2Fb%3Fc%23d%25"
    assert path_segment("a.b") == "a.b"
    with pytest.raises(ValueError):
        path_segment("")
    assert _target("http://h/x/%2E%2E").raw_path == "/x/%2E%2E"
    assert _target("http://h/a b/é").raw_path == "/a%20b/%C3%A9"
    assert _target("http://h/x/100%").raw_path == "/x/100%25"
