"""Property tests over the contact input: whatever a caller sends, the gateway answers with a contact or field errors,
never an exception, and never sends a vendor a payload that is invalid for it or that means something else.

The inputs are the GraphQL `ContactInput` shape (camelCase keys, as `resolvers.model.parse_contact` takes them)
with valid-looking and hostile values mixed: arbitrary unicode with control characters, very long strings, dots and
slashes, bad countries, dates and e-mail addresses, unknown detail kinds, wrong value types, many details and
locations, and `vendorOptions` of every vendor. The pure properties (a-c) run every connector's mapping offline; the
last one sends inputs through the real gateway over HTTP to the five simulators over real sockets.

Profiles: `dev` (the default) and `ci` (chosen when `CI` is set: derandomized, so a CI failure reproduces) keep the
module under a minute on two cores; `HYPOTHESIS_PROFILE` picks another, e.g. `thorough` for a longer hunt.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import date, datetime
from enum import Enum
from typing import Any

import orjson
import strawberry
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from strawberry.relay import GlobalID

from resolvers.model import Contact, parse_contact
from resolvers.results import ErrorCode, FieldError, Vendor
from resolvers.transport import Transport
from resolvers.vendors import REGISTRY
from resolvers.vendors.base import Connector, Prepared
from tests.conftest import Gateway, Simulators
from tests.support import MISSING, UPSERT, value_at

settings.register_profile("dev", max_examples=300, deadline=None, database=None, print_blob=True)
settings.register_profile("ci", max_examples=300, deadline=None, database=None, print_blob=True, derandomize=True)
settings.register_profile("thorough", max_examples=2000, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))

# -- strategies -------------------------------------------------------------------------------------------------------

#: Values that have broken parsers, URLs, form bodies and headers somewhere.
HOSTILE: list[str] = [
    "",
    " ",
    " padded ",
    ".",
    "..",
    "../../etc/passwd",
    "a/b",
    "a?b=c&d=e",
    "a#b",
    "%2F",
    "%00",
    "%",
    "a\r\nX-Injected: 1",
    "a\x00b",
    "\x7f\x85\x9f",
    "a\uff0fb",  # fullwidth solidus
    "a\u2215b",  # division slash
    "\u202eevil\u202c",  # right-to-left override
    "\u2028\u2029",
    "😀🙈",
    "e\u0301",  # combining accent
    "'; DROP TABLE contacts; --",
    '"quoted" \\ back',
    "<script>alert(1)</script>",
    "x" * 10_000,
]


def texts(max_size: int = 40) -> st.SearchStrategy[str]:
    """Names, references and the like: plain words, arbitrary unicode (control characters too), hostile values and
    long runs of one character."""
    return st.one_of(
        st.from_regex(r"[A-Z][a-z]{1,10}( [A-Z][a-z]{1,10})?", fullmatch=True),
        st.text(max_size=max_size),
        st.sampled_from(HOSTILE),
        st.builds(lambda ch, n: ch * n, st.characters(), st.integers(min_value=48, max_value=3_000)),
    )


def optional(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


def emails() -> st.SearchStrategy[str]:
    """E-mail addresses: valid ones, ones that pass the canonical rule but hold URL-special characters, and junk."""
    local = st.text(alphabet=st.characters(blacklist_characters="@", blacklist_categories=("Zs", "Cc")), min_size=1)
    return st.one_of(
        st.emails(),
        st.builds(lambda a, b: f"{a}@{b}.example", local, st.sampled_from(["ex", "a/b", "a?b", "é", "x" * 300])),
        st.sampled_from(["not-an-email", "@example.com", "a@b", "a b@c.d", "a@@b.c", "a@b.c\n", "A@EXAMPLE.COM"]),
        texts(),
    )


DETAIL_KINDS = ["PHONE", "MOBILE", "EMAIL", "FAX", "WEB", "OTHER"]


def details() -> st.SearchStrategy[dict[str, Any]]:
    kind = st.one_of(st.sampled_from(DETAIL_KINDS), st.sampled_from(["TELEX", "email", ""]))
    return kind.flatmap(
        lambda k: st.fixed_dictionaries(
            {
                "kind": st.just(k),
                "value": emails()
                if k == "EMAIL"
                else st.one_of(st.from_regex(r"\+?[0-9 ]{3,15}", fullmatch=True), texts()),
            },
            optional={"label": optional(texts()), "preferred": st.booleans()},
        )
    )


def iso_dates() -> st.SearchStrategy[str]:
    """Dates as the GraphQL `Date` scalar sends them, every year 1-9999, and strings that are no date."""
    return st.one_of(
        st.dates().map(date.isoformat),
        st.sampled_from(["2024-13-01", "2023-02-29", "01/02/2024", "2024-1-1", "", "0000-01-01", "9999-12-31"]),
        st.text(max_size=12),
    )


def countries() -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(["GB", "AU", "FR", "NO", "US", "NZ"]),
        st.sampled_from(["UK", "gb", "XX", "GBR", "", "G", "\uff27\uff22"]),
        st.text(max_size=3),
    )


coordinates = st.floats(min_value=-200, max_value=200, allow_nan=False, allow_infinity=False)


def addresses() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {},
        optional={
            "lines": st.lists(texts(), max_size=5),
            "city": optional(texts()),
            "region": optional(texts()),
            "postCode": optional(texts(12)),
            "country": optional(countries()),
            "latitude": optional(coordinates),
            "longitude": optional(coordinates),
        },
    )


def locations() -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"ref": texts()},
        optional={
            "preferred": st.booleans(),
            "startDate": optional(iso_dates()),
            "endDate": optional(iso_dates()),
            "usageTypeId": optional(st.integers(min_value=-(2**31), max_value=2**31 - 1)),
        },
    )


GUIDS = ["8a2e4c6b-1f3d-4e5a-8b7c-9d0e1f2a3b4c", "c41d2e3f-6a7b-4c8d-9e0f-1a2b3c4d5e6f", "not-a-guid", "", "../x"]
digits = st.from_regex(r"[0-9]{1,6}", fullmatch=True)


def vendor_options(graphql: bool) -> st.SearchStrategy[dict[str, Any]]:
    """`vendorOptions` of every vendor. With `graphql`, only what the GraphQL input types can carry."""
    ints = st.integers(min_value=-(2**31), max_value=2**31 - 1)
    base = {
        "oneserve": st.fixed_dictionaries({}, optional={"clientRef": optional(st.one_of(st.just("29"), texts()))}),
        "eros": st.fixed_dictionaries(
            {},
            optional={
                "contactTypeId": optional(st.one_of(st.sampled_from(GUIDS), texts())),
                "roleIds": optional(st.lists(st.one_of(st.sampled_from(GUIDS), texts()), max_size=3)),
            },
        ),
        "jim2": st.fixed_dictionaries(
            {},
            optional={
                "cardNo": optional(st.one_of(st.just("10"), digits, st.sampled_from(["1\n", "\uff11\uff10"]), texts()))
            },
        ),
        "superoffice": st.fixed_dictionaries({}, optional={"categoryId": optional(ints), "businessId": optional(ints)}),
        "valomnia": st.fixed_dictionaries(
            {},
            optional={
                "customerId": optional(st.one_of(st.just("3229"), digits, texts())),
                "imageFileName": optional(st.one_of(st.sampled_from(["a.png", "a b.png", "../a.png"]), texts())),
                "imageBase64": optional(st.sampled_from(["iVBORw0KGgo=", "not base64", ""])),
            },
        ),
    }
    if not graphql:
        # Beyond the GraphQL types: numbers where text goes, unknown options, anything at all.
        base["jim2"] = st.fixed_dictionaries({}, optional={"cardNo": st.one_of(st.integers(), st.booleans(), texts())})
        base["valomnia"] = st.fixed_dictionaries(
            {}, optional={"customerId": st.one_of(st.integers(), st.floats(), texts()), "unknown": texts()}
        )
        base["eros"] = st.fixed_dictionaries({}, optional={"roleIds": st.one_of(texts(), st.lists(st.integers()))})
    return st.fixed_dictionaries({}, optional=base)


def contact_inputs(graphql: bool = False) -> st.SearchStrategy[dict[str, Any]]:
    """A `ContactInput` as a dict with camelCase keys. Without `graphql`, values may also be of the wrong type."""
    text = optional(texts())
    anything: st.SearchStrategy[Any] = st.one_of(
        st.integers(),
        st.booleans(),
        st.lists(st.integers(), max_size=2),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    )
    fields: dict[str, st.SearchStrategy[Any]] = {
        "title": text,
        "salutation": text,
        "firstName": text,
        "middleName": text,
        "lastName": text,
        "displayName": text,
        "jobTitle": text,
        "department": text,
        "organisation": text,
        "birthDate": optional(iso_dates()),
        "notes": text,
        "considerations": text,
        "details": st.lists(details(), max_size=6),
        "address": optional(addresses()),
        "locations": st.lists(locations(), max_size=3),
        "vendorOptions": vendor_options(graphql),
    }
    if not graphql:
        fields = {
            name: st.one_of(strategy, anything) if name != "details" else strategy for name, strategy in fields.items()
        }
        fields["details"] = st.one_of(fields["details"], anything, st.lists(st.one_of(details(), anything), max_size=3))
    valid_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True)
    return st.fixed_dictionaries({"id": st.one_of(valid_ids, texts())}, optional=fields)


def valid_contact_inputs() -> st.SearchStrategy[dict[str, Any]]:
    """Inputs that mostly pass the universal rules (so the vendors' mappings get exercised), with every field that
    the strictest vendor (Oneserve) requires present, and names, lines and references still hostile."""
    kinds = st.sampled_from(DETAIL_KINDS)
    detail = kinds.flatmap(
        lambda k: st.fixed_dictionaries(
            {"kind": st.just(k), "value": st.emails() if k == "EMAIL" else texts().filter(bool)},
            optional={"label": optional(texts())},
        )
    )
    in_range = st.floats(min_value=-90, max_value=90, allow_nan=False, allow_infinity=False)
    address = st.fixed_dictionaries(
        {"lines": st.lists(texts(), min_size=2, max_size=5), "postCode": texts(12)},
        optional={
            "city": optional(texts()),
            "region": optional(texts()),
            "country": st.sampled_from(["GB", "AU", "FR", "NO", "US"]),
            "latitude": in_range,
            "longitude": in_range,
        },
    )
    location = st.fixed_dictionaries(
        {"ref": texts().filter(bool)},
        optional={
            "preferred": st.booleans(),
            "startDate": st.dates().map(date.isoformat),
            "usageTypeId": st.sampled_from([1, 2, 3]),
        },
    )
    core = {
        "id": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_./?#%-]{0,20}", fullmatch=True),
        "title": texts(),
        "firstName": texts(),
        "lastName": texts(),
        "details": st.lists(detail, min_size=1, max_size=5),
        "address": address,
    }
    rest = {
        name: optional(texts())
        for name in ("salutation", "middleName", "displayName", "jobTitle", "department", "organisation", "notes")
    }
    rest |= {
        "birthDate": st.dates().map(date.isoformat),
        "locations": st.lists(location, max_size=2),
        "vendorOptions": vendor_options(graphql=True),
    }
    return st.fixed_dictionaries(core, optional=rest)


def any_contact_inputs() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(contact_inputs(), valid_contact_inputs())


# -- helpers ---------------------------------------------------------------------------------------------------------


def offline_connectors() -> dict[Vendor, Connector[Any]]:
    """Every registered connector with its demo settings, as the engine builds them (`prepare` needs no network)."""
    out: dict[Vendor, Connector[Any]] = {}
    for vendor, plugin in REGISTRY.items():
        config = plugin.demo_config(f"http://127.0.0.1:9/{vendor.value}/")
        out[vendor] = plugin.connector(
            plugin.connector.settings_type.model_validate(config), Transport.__new__(Transport)
        )
    return out


CONNECTORS = offline_connectors()


def root(path: str) -> str:
    return re.split(r"[.\[]", path, maxsplit=1)[0]


# -- a. parse_contact ------------------------------------------------------------------------------------------------


@given(contact_inputs())
def test_parse_contact_answers_a_contact_or_field_errors(data: dict[str, Any]) -> None:
    """Whatever the input, `parse_contact` never raises: it returns a Contact, or a non-empty list of FieldErrors,
    each with a documented code, a message, and a field path rooted at a key the caller sent (or `id`, required)."""
    result = parse_contact(data)
    if isinstance(result, Contact):
        assert result.id == data["id"]
        return
    assert isinstance(result, list) and result, f"neither a contact nor errors: {result!r}"
    for error in result:
        assert isinstance(error, FieldError)
        assert isinstance(error.code, ErrorCode)
        assert error.message
        assert error.field, f"an error naming no field: {error}"
        assert root(error.field) in {*data, "id"}, f"{error.field} is no field of the input {sorted(data)}"


# -- b. every connector's pre-flight ---------------------------------------------------------------------------------


def prepared_for_every_vendor(data: dict[str, Any]) -> list[tuple[Vendor, Contact, Prepared]]:
    contact = parse_contact(data)
    if not isinstance(contact, Contact):
        return []
    return [(vendor, contact, connector.prepare(contact)) for vendor, connector in CONNECTORS.items()]


@given(any_contact_inputs())
def test_prepare_never_raises_and_never_passes_an_invalid_payload(data: dict[str, Any]) -> None:
    """For a contact that passed the universal rules, every connector's `prepare` never raises, and either reports
    errors or hands over a payload its wire model (the vendor's own rules) accepts and that can be serialised; a
    payload with errors is never `valid`, so the engine never sends it."""
    for vendor, _, prepared in prepared_for_every_vendor(data):
        assert prepared.vendor is vendor
        if prepared.errors:
            assert not prepared.valid
            for error in prepared.errors:
                assert isinstance(error, FieldError) and isinstance(error.code, ErrorCode) and error.message
            continue
        assert prepared.wire is not None, f"{vendor.name}: no errors, yet the payload fails the wire model"
        assert prepared.valid
        # What the engine stores and the transport sends: orjson must take it as it is.
        orjson.dumps(prepared.payload)


# -- c. the payload means what the caller said ----------------------------------------------------------------------


def _starts_with(wire: Any, canonical: Any, contact: Contact, source: str) -> bool:
    return isinstance(wire, str) and isinstance(canonical, str) and wire.startswith(canonical)


def _contact_name(wire: Any, canonical: Any, contact: Contact, source: str) -> bool:
    if source in ("firstName", "lastName"):
        return bool(wire == " ".join(part for part in (contact.first_name, contact.last_name) if part))
    return bool(wire == canonical)  # organisation or displayName, as given


def _joined_lines(wire: Any, canonical: Any, contact: Contact, source: str) -> bool:
    return isinstance(canonical, list) and wire == ", ".join(canonical)


def _excluded(wire: Any, canonical: Any, contact: Contact, source: str) -> bool:
    return True


Check = Callable[[Any, Any, Contact, str], bool]

#: Wire fields a vendor legitimately transforms, each with the check that replaces equality (and why).
TRANSFORMED: dict[tuple[Vendor, str], tuple[Check, str]] = {
    # Eros has two address lines: lines[1:] joined into AddressLineTwo with ", ".
    (Vendor.EROS, r"Contact\.ContactDetails\[\d+\]\.ContactAddress\.Address\.AddressLineTwo"): (_starts_with, "joined"),
    # SuperOffice has three: lines[2:] joined into Address3.
    (Vendor.SUPEROFFICE, r"Address\.Postal\.Address3"): (_starts_with, "joined"),
    # The contact name without organisation or displayName is the person's "first last".
    (Vendor.SUPEROFFICE, r"Name"): (_contact_name, "first last"),
    # StrippedValue is SuperOffice's search key (digits only for numbers), derived from Value, which is verbatim.
    (Vendor.SUPEROFFICE, r"(Emails|Phones|Faxes|Urls)\[\d+\]\.StrippedValue"): (_excluded, "search key"),
    # The country travels as the tenant's numeric CountryId; TwoLetterISOCountry beside it is verbatim.
    (Vendor.SUPEROFFICE, r"Country\.CountryId"): (_excluded, "numeric code"),
    # Valomnia has one address field: every line joined with the address_separator setting (", ").
    (Vendor.VALOMNIA, r"address"): (_joined_lines, "joined"),
}

#: Wire date fields and the format each vendor takes: the date must read back as the caller's date.
DATE_FORMATS: dict[tuple[Vendor, str], str] = {
    (Vendor.EROS, r"Contact\.BirthDate"): "%Y-%m-%d",
    (Vendor.JIM2, r"data\.attributes\.dob"): "%Y-%m-%d",
    (Vendor.ONESERVE, r"locations\[\d+\]\.(startDate|endDate)"): "%d/%m/%Y",
}


def _rule(table: dict[tuple[Vendor, str], Any], vendor: Vendor, wire_path: str) -> Any:
    return next(
        (rule for (v, pattern), rule in table.items() if v is vendor and re.fullmatch(pattern, wire_path)), None
    )


def meaning_violations(vendor: Vendor, contact: Contact, prepared: Prepared) -> list[str]:
    """Every wire field whose value is not the caller's value at its source path (transforms as documented above).

    Enum sources (a detail's kind) become the vendor's own type names or ids, and a bool source may choose a slot
    (Oneserve's preferredContact): those are not values the caller typed and are left out. A str source that became
    anything but a str, or a value of another type, is a violation unless TRANSFORMED says why.
    """
    canonical_data = contact.model_dump(mode="python", by_alias=True)
    out: list[str] = []
    for wire_path, source in prepared.sources.items():
        wire = value_at(prepared.payload, wire_path)
        canonical = value_at(canonical_data, source) if source else MISSING
        if wire is MISSING or canonical is MISSING or wire is None or canonical is None:
            continue
        transformed = _rule(TRANSFORMED, vendor, wire_path)
        date_format = _rule(DATE_FORMATS, vendor, wire_path)
        if transformed is not None:
            check, _why = transformed
            ok = check(wire, canonical, contact, source)
        elif date_format is not None:
            ok = isinstance(canonical, date) and isinstance(wire, str) and _reads_as(wire, date_format, canonical)
        elif isinstance(canonical, Enum | dict | list) or (isinstance(canonical, bool) and not isinstance(wire, bool)):
            continue
        elif isinstance(canonical, int) and not isinstance(canonical, bool) and isinstance(wire, str):
            ok = wire == str(canonical)  # a number typed where the vendor takes text (cardNo, customerId)
        else:
            ok = type(wire) is type(canonical) and wire == canonical
        if not ok:
            out.append(f"{vendor.name} {wire_path} = {wire!r:.80} but {source} = {canonical!r:.80}")
    return out


def _reads_as(wire: str, fmt: str, expected: date) -> bool:
    try:
        return datetime.strptime(wire, fmt).date() == expected
    except ValueError:
        return False


def dropped(contact: Contact, prepared: Prepared) -> list[str]:
    """Names and detail values the caller gave that a valid payload neither carries nor warns about.

    Every vendor holds a first and a last name. A detail a vendor has no room for is fine when the mapping's own
    warning names it (`details[3] (EMAIL ...): ...`, `details[2]: ...`); the base's generic "not sent" warning is no
    excuse for a name or a detail value.
    """
    sent = {source for wire, source in prepared.sources.items() if value_at(prepared.payload, wire) is not MISSING}
    out = [
        name for name in ("firstName", "lastName") if getattr(contact, _snake(name)) is not None and name not in sent
    ]
    for i, _ in enumerate(contact.details):
        warned = any(re.match(rf"details\[{i}\](:| \()", w) for w in prepared.warnings)
        if f"details[{i}].value" not in sent and not warned:
            out.append(f"details[{i}].value")
    return out


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


@given(any_contact_inputs())
def test_a_valid_payload_carries_the_callers_values_unchanged(data: dict[str, Any]) -> None:
    """Never a wire payload that differs in meaning from the input: in every valid payload, each field copied from
    the contact holds the caller's value exactly (no trimming, truncation, case change, re-encoding or swapped
    source), dates read back as the same date, joined fields start with their first part, and names and detail
    values are carried or named in a warning, never silently left out."""
    problems: list[str] = []
    for vendor, contact, prepared in prepared_for_every_vendor(data):
        if prepared.valid:
            problems += meaning_violations(vendor, contact, prepared)
            problems += [f"{vendor.name} dropped {path}" for path in dropped(contact, prepared)]
    assert not problems, "\n".join(problems)


def test_the_meaning_checks_can_fail() -> None:
    """The checks above are not vacuous: a swapped source, a trimmed value, a mangled date and a dropped name are
    each reported (as a mapping with that bug would be)."""
    contact = Contact.model_validate(
        {"id": "c", "firstName": " Ada ", "lastName": "Lovelace", "birthDate": "0099-01-02", "details": []}
    )
    prepared = CONNECTORS[Vendor.EROS].prepare(contact)
    assert prepared.valid and meaning_violations(Vendor.EROS, contact, prepared) == []
    broken = Prepared(**{**_fields(prepared), "payload": _nested_copy(prepared.payload)})
    broken.payload["Contact"]["FirstName"] = "Ada"  # trimmed
    broken.payload["Contact"]["BirthDate"] = "99-01-02"  # strftime's unpadded year
    broken.sources = {**broken.sources, "Contact.Surname": "firstName"}  # swapped source
    assert len(meaning_violations(Vendor.EROS, contact, broken)) == 3
    broken.sources = {wire: source for wire, source in prepared.sources.items() if source != "firstName"}
    assert dropped(contact, broken) == ["firstName"]


def _fields(prepared: Prepared) -> dict[str, Any]:
    return {name: getattr(prepared, name) for name in Prepared.__dataclass_fields__}


def _nested_copy(payload: dict[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = orjson.loads(orjson.dumps(payload))
    return copied


# -- d. end to end over HTTP -----------------------------------------------------------------------------------------

#: Extension codes the gateway's own GraphQL errors carry; an error without one is a leaked exception.
KNOWN_ERROR_CODES = {"BAD_USER_INPUT", "CONFLICT", "FORBIDDEN", "UNAUTHENTICATED", "PAYLOAD_TOO_LARGE"}
_VARIABLE_ERROR = re.compile(r"^Variable '\$(input|vendors|force)'")


async def calls_by_vendor(simulators: Simulators) -> dict[Vendor, int]:
    return {vendor: len(await simulators.calls(vendor)) for vendor in REGISTRY}


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=contact_inputs(graphql=True))
# Always tried, whatever the budget: a Date and an enum the GraphQL scalars refuse (a variable error naming the field,
# not a masked one), ids and names past every limit, and payloads pre-flight once let through though the vendors
# refused them (an empty address at Eros, a blank name at SuperOffice, Jim2's dob of a year before 1000).
@example(data={"id": "E-1", "locations": [{"ref": "L", "startDate": "2024-13-01"}]})
@example(data={"id": "E-2", "details": [{"kind": "TELEX", "value": "1"}]})
@example(data={"id": "../x\r\n", "firstName": "x" * 10_000})
@example(data={"id": "E-3", "address": {}})
@example(data={"id": "E-4", "firstName": " "})
@example(data={"id": "E-5", "lastName": "L", "birthDate": "0999-01-01"})
async def test_upsert_over_http_answers_results_or_field_errors(
    data: dict[str, Any], gateway: Gateway, simulators: Simulators
) -> None:
    """Any input to `upsertContact` gets HTTP 200 (asserted by `Gateway.graphql`) and a GraphQL answer: either
    per-vendor results, or errors that name the argument (`Variable '$input' ...`) or carry one of the gateway's
    codes, never a leaked Python exception. A vendor whose result is INVALID received no call at all, no connector
    crashed ("internal error"), and a vendor sent a valid payload without vendorOptions was not then refused by its
    simulator for the contact's content (pre-flight holds the vendor's rules).

    One gateway and one set of simulators serve every example (hypothesis runs the examples inside one test call):
    the calls each example caused are the ones recorded after it started.
    """
    before = await calls_by_vendor(simulators)
    answer = await gateway.graphql(UPSERT, {"input": data})
    assert set(answer) <= {"data", "errors", "extensions"}, answer
    for error in answer.get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        assert code in KNOWN_ERROR_CODES or _VARIABLE_ERROR.match(error["message"]), f"unexpected error: {error}"
        assert "Traceback" not in error["message"]
    payload = (answer.get("data") or {}).get("upsertContact")
    if payload is None:
        assert answer.get("errors"), answer
        return
    results = {r["vendor"]: r for r in payload["results"]}
    assert set(results) == {v.name for v in REGISTRY}
    after = await calls_by_vendor(simulators)
    for vendor in REGISTRY:
        result = results[vendor.name]
        if result["status"] == "INVALID":
            assert result["errors"], result
            assert all(e["field"] or e["vendorField"] for e in result["errors"]), result
            assert after[vendor] == before[vendor], f"{vendor.name} was called for an INVALID contact"
        # A connector that raised (a bug, not a vendor's answer) is reported as "internal error".
        assert all(e["message"] != "internal error" for e in result["errors"]), f"{vendor.name} crashed: {result}"
        if result["status"] == "REJECTED" and not data.get("vendorOptions"):
            raise AssertionError(f"{vendor.name} refused a payload pre-flight passed: {result}")
    assert payload["status"] in {"SUCCEEDED", "PARTIAL", "FAILED"}, payload


# -- compiled input conversion (graph/inputs.py) ----------------------------------------------------------------------


@given(data=contact_inputs(graphql=True))
def test_compiled_inputs_build_what_strawberry_builds(data: dict[str, Any]) -> None:
    """`ContactInput` built from its plan equals the one strawberry's generic conversion builds from the same value,
    as graphql-core coerces it (types, nested inputs, implicit None, defaults, copied lists)."""
    from graphql import coerce_input_value
    from graphql.error import GraphQLError
    from graphql.pyutils import Undefined
    from strawberry.types.arguments import convert_argument

    from graph import types
    from graph.schema import schema

    try:
        value = coerce_input_value(data, schema._schema.get_type("ContactInput"))
    except GraphQLError:
        return  # graphql-core refuses it before any conversion
    if value is Undefined:
        return  # likewise (a scalar that does not parse)
    registry, config = schema.schema_converter.scalar_registry, schema.config
    definition = types.ContactInput.__strawberry_definition__
    compiled = convert_argument(value, types.ContactInput, registry, config)
    hook, definition.from_input = definition.from_input, None
    try:
        generic = convert_argument(value, types.ContactInput, registry, config)
    finally:
        definition.from_input = hook
    assert hook is not None and compiled == generic
    assert repr(compiled) == repr(generic)  # the same classes all the way down (dataclass == compares them too)
    if compiled.address is not None:
        assert compiled.address.lines is not value["address"]["lines"]  # copied, as strawberry copies


@strawberry.input
class _OwnHook:
    value: str


def _own_hook(cls: type, value: Any, _: Any) -> Any:
    return cls(value=value["value"].upper())


_OwnHook.__strawberry_definition__.from_input = _own_hook  # type: ignore[attr-defined]


@strawberry.input
class _Odd:
    gid: GlobalID
    gids: list[GlobalID]
    maybe: strawberry.Maybe[str]
    maybe_null: strawberry.Maybe[str | None]
    own: _OwnHook | None = None


def test_compiled_inputs_leave_maybe_globalid_and_own_hooks_to_strawberry() -> None:
    """Fields the plan has no rule of its own for are converted by strawberry: `Maybe` keeps its `Some` (and an
    explicit null), a `GlobalID` is decoded, an input with its own `from_input` builds itself."""
    from strawberry.types.arguments import convert_argument

    from graph.inputs import compiled
    from graph.schema import schema

    value = {
        "gid": str(GlobalID("Contact", "1")),
        "gids": [str(GlobalID("Contact", "2"))],
        "maybe": "a",
        "maybeNull": None,
        "own": {"value": "x"},
    }
    registry, config = schema.schema_converter.scalar_registry, schema.config
    generic = convert_argument(value, _Odd, registry, config)
    built = convert_argument(value, compiled(_Odd), registry, config)
    assert built == generic
    assert built.gid == GlobalID("Contact", "1") and built.gids == [GlobalID("Contact", "2")]
    assert built.maybe == strawberry.Some("a") and built.maybe_null == strawberry.Some(None)
    assert built.own == _OwnHook(value="X")
