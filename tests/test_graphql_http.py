"""GraphQL over HTTP: the graphql-http audit suite against the running server, and each behaviour it relies on.

# Docs: https://graphql.github.io/graphql-over-http/draft/
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from graph.negotiation import GRAPHQL_RESPONSE_JSON, JSON, response_media_type
from resolvers.results import Vendor
from tests.conftest import READ_TOKEN, WRITE_TOKEN, Gateway, Simulators
from tests.node import require_node, run_script

AUTH = {"Authorization": f"Bearer {READ_TOKEN}"}
GRAPHQL_ACCEPT = {**AUTH, "Accept": GRAPHQL_RESPONSE_JSON}
JSON_ACCEPT = {**AUTH, "Accept": JSON}
COERCION = {"query": "query One($id: ID!) { contact(id: $id) { id } }", "variables": {"id": None}}


async def post(gateway: Gateway, body: Any, headers: dict[str, str]) -> httpx.Response:
    return await gateway.client.post(f"{gateway.url}/graphql", json=body, headers=headers)


def media_type(response: httpx.Response) -> str:
    return response.headers["content-type"].split(";", 1)[0].strip()


async def test_graphql_http_audit_passes_every_must_and_should(gateway: Gateway) -> None:
    require_node()
    audit = await run_script(
        "audit.mjs", f"{gateway.url}/graphql", "--header", f"Authorization: Bearer {READ_TOKEN}", "--json"
    )
    report = json.loads(audit.stdout) if audit.stdout.strip() else {}
    assert audit.returncode == 0, f"a MUST failed:\n{audit.stdout}{audit.stderr}"
    failed = [r for r in report["results"] if r["status"] != "ok"]
    assert [r for r in failed if r["level"] in {"MUST", "SHOULD"}] == [], json.dumps(failed, indent=2)
    assert report["levels"]["MUST"]["ok"] > 0 and report["levels"]["SHOULD"]["ok"] > 0


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, JSON),
        ("", JSON),
        ("*/*", JSON),
        ("application/*", JSON),
        (JSON, JSON),
        (GRAPHQL_RESPONSE_JSON, GRAPHQL_RESPONSE_JSON),
        (f"{GRAPHQL_RESPONSE_JSON}, {JSON};q=0.9", GRAPHQL_RESPONSE_JSON),
        (f"{JSON}, {GRAPHQL_RESPONSE_JSON}", GRAPHQL_RESPONSE_JSON),
        (f"{GRAPHQL_RESPONSE_JSON};q=0.5, {JSON}", JSON),
        (f"{GRAPHQL_RESPONSE_JSON};q=0, */*", JSON),
        ("Application/GraphQL-Response+JSON; charset=utf-8", GRAPHQL_RESPONSE_JSON),
        ("text/html", None),
        (f"text/html, {JSON};q=0", None),
    ],
)
def test_response_media_type(accept: str | None, expected: str | None) -> None:
    assert response_media_type(accept) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({**AUTH}, JSON), ({**AUTH, "Accept": "*/*"}, JSON), (JSON_ACCEPT, JSON), (GRAPHQL_ACCEPT, GRAPHQL_RESPONSE_JSON)],
)
async def test_answers_in_the_media_type_the_client_accepts(
    gateway: Gateway, headers: dict[str, str], expected: str
) -> None:
    response = await post(gateway, {"query": "{ __typename }"}, headers)
    assert response.status_code == 200
    assert media_type(response) == expected
    assert response.json() == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param({"query": "{"}, "GRAPHQL_PARSE_FAILED", id="parse"),
        pytest.param({"query": "{ noSuchField }"}, "GRAPHQL_VALIDATION_FAILED", id="validation"),
        pytest.param(COERCION, "BAD_USER_INPUT", id="variable-coercion"),
    ],
)
async def test_request_errors_are_400_for_graphql_response_json_and_200_for_json(
    gateway: Gateway, body: dict[str, Any], code: str
) -> None:
    """Each kind of request error carries the `extensions.code` Apollo's servers and routers give it, so a client
    or a supergraph router tells a broken document from a refused variable without reading the message."""
    strict = await post(gateway, body, GRAPHQL_ACCEPT)
    assert strict.status_code == 400
    assert media_type(strict) == GRAPHQL_RESPONSE_JSON
    assert "data" not in strict.json() and strict.json()["errors"]
    assert [e["extensions"]["code"] for e in strict.json()["errors"]] == [code]

    legacy = await post(gateway, body, JSON_ACCEPT)
    assert legacy.status_code == 200
    assert media_type(legacy) == JSON
    assert legacy.json() == strict.json()


async def test_field_errors_stay_200_with_data_for_graphql_response_json(gateway: Gateway) -> None:
    response = await post(gateway, {"query": "{ contacts(first: 1000) { totalCount } }"}, GRAPHQL_ACCEPT)
    assert response.status_code == 200
    assert media_type(response) == GRAPHQL_RESPONSE_JSON
    body = response.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_a_variable_error_does_not_repeat_the_object_it_was_given(gateway: Gateway) -> None:
    """graphql-core ends some variable errors with "Found: {...}", the whole input object: personal data copied
    into an error a front end may log, at any size. The message keeps the path and the fault, not the copy."""
    query = "mutation($input: ContactInput!) { upsertContact(input: $input) { status } }"
    for variables, fault in (
        ({"input": {"id": "x", "nickname": "Ada private"}}, "not to include unknown field 'nickname'"),
        ({"input": {"firstName": "Ada private"}}, "to include required field 'id'"),
    ):
        body = (await post(gateway, {"query": query, "variables": variables}, GRAPHQL_ACCEPT)).json()
        (error,) = body["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert fault in error["message"], error["message"]
        assert "private" not in error["message"], error["message"]


async def test_refused_values_are_named_and_worded_in_json_not_python(gateway: Gateway) -> None:
    """graphql-core words a refused variable in Python (`not to be None`, `ID cannot represent value: True`, an object
    as `{'name': ...}`, a copy of the caller's data) and a refused literal without saying where it is. Each now names
    its place and speaks JSON; an object or list given where a scalar belongs is named, not copied."""
    variable = "query($input: ContactInput!) { validateContact(input: $input) { vendor } }"
    cases: list[tuple[str, dict[str, Any] | None, str]] = [
        (
            variable,
            {"input": None},
            "Variable '$input' has invalid value: Expected value of non-null type 'ContactInput!' not to be null.",
        ),
        (
            variable,
            {"input": {"id": True, "lastName": "L"}},
            "Variable '$input' has invalid value at .id: ID cannot represent value: true",
        ),
        (
            variable,
            {"input": {"id": "a", "lastName": {"secret": "Ada private"}}},
            "Variable '$input' has invalid value at .lastName: String cannot represent a non string value: an object",
        ),
        (
            "query($id: ID!) { contact(id: $id) { id } }",
            {"id": ["Ada private"]},
            "Variable '$id' has invalid value: ID cannot represent value: a list",
        ),
        (
            '{ validateContact(input: {id: true, lastName: "L"}) { vendor } }',
            None,
            "Invalid value at 'input.id': ID cannot represent a non-string and non-integer value: true",
        ),
        (
            '{ validateContact(input: {lastName: "Ada private"}) { vendor } }',
            None,
            "Invalid value at 'input': Expected value of type 'ContactInput' to include required field 'id'.",
        ),
        (
            '{ validateContact(input: {id: "a", lastName: "L", details: [{kind: PAGER, value: "1"}]}) { vendor } }',
            None,
            "Invalid value at 'input.details.0.kind': Value 'PAGER' does not exist in 'ContactDetailKind' enum. "
            "Did you mean the enum value 'OTHER'?",
        ),
        (
            "{ contact(id: null) { id } }",
            None,
            "Invalid value at 'id': Expected value of non-null type 'ID!' not to be null.",
        ),
    ]
    headers = {**GRAPHQL_ACCEPT, "Authorization": f"Bearer {READ_TOKEN}"}
    for query, variables, message in cases:
        response = await gateway.client.post(
            f"{gateway.url}/graphql", json={"query": query, "variables": variables}, headers=headers
        )
        (error,) = response.json()["errors"]
        assert error["message"] == message, (query, variables, error)
        assert error["locations"], error


@pytest.mark.parametrize("content_type", ["Application/JSON", "APPLICATION/json; charset=UTF-8"])
async def test_a_media_type_is_read_whatever_its_case(gateway: Gateway, content_type: str) -> None:
    headers = {**GRAPHQL_ACCEPT, "Content-Type": content_type, "Authorization": f"Bearer {READ_TOKEN}"}
    response = await gateway.client.post(
        f"{gateway.url}/graphql", content=b'{"query": "{ __typename }"}', headers=headers
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
async def test_posts_other_than_json_are_415(gateway: Gateway, content_type: str | None) -> None:
    headers = {**GRAPHQL_ACCEPT, **({"Content-Type": content_type} if content_type else {})}
    response = await gateway.client.post(
        f"{gateway.url}/graphql", content=b'{"query": "{ __typename }"}', headers=headers
    )
    assert response.status_code == 415
    assert media_type(response) == GRAPHQL_RESPONSE_JSON
    assert response.json()["errors"][0]["extensions"] == {"code": "UNSUPPORTED_MEDIA_TYPE"}
    assert response.json()["errors"][0]["message"].startswith("send the operation as application/json")


async def test_an_accept_naming_neither_json_type_is_406(gateway: Gateway) -> None:
    response = await post(gateway, {"query": "{ __typename }"}, {**AUTH, "Accept": "text/html"})
    assert response.status_code == 406
    assert media_type(response) == JSON
    assert response.json()["errors"][0]["extensions"] == {"code": "NOT_ACCEPTABLE"}


async def test_mutations_over_get_are_405(gateway: Gateway) -> None:
    response = await gateway.client.get(
        f"{gateway.url}/graphql",
        params={"query": 'mutation { deleteContact(id: "C-1") { status } }'},
        headers={"Authorization": f"Bearer {WRITE_TOKEN}", "Accept": GRAPHQL_RESPONSE_JSON},
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert "data" not in response.json()
    assert response.json()["errors"][0]["extensions"] == {"code": "METHOD_NOT_ALLOWED"}


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH"])
async def test_other_methods_are_refused_as_graphql_errors(gateway: Gateway, method: str) -> None:
    # Without a token: the method is wrong whoever asks.
    response = await gateway.client.request(
        method, f"{gateway.url}/graphql", json={"query": "{ __typename }"}, headers={"Accept": GRAPHQL_RESPONSE_JSON}
    )
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD, POST"
    assert media_type(response) == GRAPHQL_RESPONSE_JSON
    assert "data" not in response.json()
    assert response.json()["errors"][0]["extensions"] == {"code": "METHOD_NOT_ALLOWED"}


async def test_queries_over_get_negotiate_too(gateway: Gateway) -> None:
    response = await gateway.client.get(
        f"{gateway.url}/graphql", params={"query": "{ __typename }"}, headers=GRAPHQL_ACCEPT
    )
    assert response.status_code == 200
    assert media_type(response) == GRAPHQL_RESPONSE_JSON


async def test_a_body_that_is_not_json_is_400_with_a_graphql_error(gateway: Gateway) -> None:
    headers = {**GRAPHQL_ACCEPT, "Content-Type": JSON}
    response = await gateway.client.post(f"{gateway.url}/graphql", content=b'{"query', headers=headers)
    assert response.status_code == 400
    assert media_type(response) == GRAPHQL_RESPONSE_JSON
    message = "Unable to parse request body as JSON: Unterminated string starting at (line 1, column 2)"
    assert response.json() == {"errors": [{"message": message, "extensions": {"code": "BAD_REQUEST"}}]}
    not_utf8 = await gateway.client.post(f"{gateway.url}/graphql", content=b'{"query": "\xff"}', headers=headers)
    message = "Unable to parse request body as JSON: the body is not UTF-8 (byte 11)"
    assert (not_utf8.status_code, not_utf8.json()) == (
        400,
        {"errors": [{"message": message, "extensions": {"code": "BAD_REQUEST"}}]},
    )


async def test_integers_past_64_bits_keep_every_digit(gateway: Gateway) -> None:
    """The body is decoded with orjson, which reads an integer past 2**64 as a float; such a body is decoded
    exactly instead, so an `ID` sent as a long number stays that number (and a broken one is still a 400)."""
    headers = {"Content-Type": JSON, "Authorization": f"Bearer {WRITE_TOKEN}"}
    # Past 2**64, and (19 digits only) just below -2**63, which orjson also reads as a float.
    for long_id in (123456789012345678901234567890, -9223372036854775809, -9999999999999999999):
        body = json.dumps(
            {
                "query": "mutation($input: ContactInput!) { upsertContact(input: $input, vendors: [EROS]) "
                "{ contact { id } } }",
                "variables": {"input": {"id": long_id, "firstName": "Ada", "lastName": "Lovelace"}},
            }
        )
        response = await gateway.client.post(f"{gateway.url}/graphql", content=body, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["data"]["upsertContact"]["contact"]["id"] == str(long_id)
    broken = await gateway.client.post(
        f"{gateway.url}/graphql", content=body[:-1].encode(), headers={**headers, **GRAPHQL_ACCEPT}
    )
    assert broken.status_code == 400
    assert broken.json()["errors"][0]["message"].startswith("Unable to parse request body as JSON: Expecting ',' ")


@pytest.mark.parametrize("number", ["12345678901234567.0", "1.0", "1e3", "-0.0", "1234567890123456789e0"])
async def test_an_id_sent_as_a_number_with_a_point_or_exponent_is_refused(
    gateway: Gateway, simulators: Simulators, number: str
) -> None:
    """graphql-core takes a whole float for `ID` and prints it as an integer, which past 2**53 is another id: the
    write landed on contact 12345678901234568. Such a number is refused, naming the variable's field."""
    headers = {"Content-Type": JSON, "Authorization": f"Bearer {WRITE_TOKEN}"}
    query = "mutation($input: ContactInput!) { upsertContact(input: $input, vendors: [EROS]) { contact { id } } }"
    body = f'{{"query": {json.dumps(query)}, "variables": {{"input": {{"id": {number}, "lastName": "L"}}}}}}'
    response = await gateway.client.post(f"{gateway.url}/graphql", content=body, headers=headers)
    error = response.json()["errors"][0]
    expected = "Variable '$input' has invalid value at .id: ID takes a string or an integer"
    assert error["message"].startswith(expected), error
    mutation = "mutation($id: ID!) { deleteContact(id: $id) { status } }"
    delete = f'{{"query": {json.dumps(mutation)}, "variables": {{"id": {number}}}}}'
    response = await gateway.client.post(f"{gateway.url}/graphql", content=delete, headers=headers)
    assert "decimal point or exponent" in response.json()["errors"][0]["message"], response.text
    for vendor in Vendor:
        assert await simulators.calls(vendor) == [], vendor
    whole = body.replace(number, "12345")
    response = await gateway.client.post(f"{gateway.url}/graphql", content=whole, headers=headers)
    assert response.json()["data"]["upsertContact"]["contact"]["id"] == "12345", response.text


async def test_a_bad_date_written_in_the_document_is_located_and_names_its_field(
    gateway: Gateway, simulators: Simulators
) -> None:
    """strawberry's `Date` refuses a literal with a GraphQLError that has no node, which graphql-core passed on as it
    was: no `locations`, no field named. Each refusal now points at its literal and names the path to it; nothing
    is sent."""
    query = (
        'query($d: Date = "2020-02-30") { one: validateContact(input: {id: "D-1", lastName: "L",\n'
        '  birthDate: "2024-13-01", locations: [{ref: "L-1", startDate: "soon"}]}) { vendor }\n'
        '  two: validateContact(input: {id: "D-2", lastName: "L", birthDate: $d}) { vendor } }'
    )
    headers = {"Content-Type": JSON, "Authorization": f"Bearer {READ_TOKEN}"}
    response = await gateway.client.post(f"{gateway.url}/graphql", json={"query": query}, headers=headers)
    errors = {error["message"].split(":", 1)[0]: error for error in response.json()["errors"]}
    assert set(errors) == {
        "Invalid value at '$d'",
        "Invalid value at 'input.birthDate'",
        "Invalid value at 'input.locations.0.startDate'",
    }, response.text
    lines = query.splitlines()
    literals = {"$d": '"2020-02-30"', "input.birthDate": '"2024-13-01"', "input.locations.0.startDate": '"soon"'}
    for where, literal in literals.items():
        error = errors[f"Invalid value at '{where}'"]
        assert "Value cannot represent a Date" in error["message"], error
        [location] = error["locations"]
        line = lines[location["line"] - 1]
        assert line[location["column"] - 1 :].startswith(literal), (error, line)
    for vendor in Vendor:
        assert await simulators.calls(vendor) == [], vendor


async def test_a_lone_surrogate_escape_is_400_however_the_body_is_decoded(gateway: Gateway) -> None:
    """`"\\ud800"` is no Unicode text: orjson refuses such a body, and the long-number path (json.loads, which would
    read it) refuses it too, rather than letting the write fail inside with an INTERNAL error; both name the field."""
    query = "mutation($input: ContactInput!) { upsertContact(input: $input) { contact { id } } }"
    headers = {**GRAPHQL_ACCEPT, "Content-Type": JSON, "Authorization": f"Bearer {WRITE_TOKEN}"}
    for last_name in ("Lovelace", "L12345678901234567890123"):  # the second has 20 digits in a row
        text = json.dumps({"id": "S-1", "firstName": "Ada", "lastName": last_name})
        body = f'{{"query": {json.dumps(query)}, "variables": {{"input": {text}}}}}'
        accepted = await gateway.client.post(f"{gateway.url}/graphql", content=body, headers=headers)
        assert accepted.status_code == 200 and "errors" not in accepted.json(), accepted.text
        broken = body.replace('"Ada"', '"Ad\\ud800a"')
        assert broken != body
        response = await gateway.client.post(f"{gateway.url}/graphql", content=broken, headers=headers)
        assert response.status_code == 400, (last_name, response.text)
        message = (
            "Unable to parse request body as JSON: variables.input.firstName: a string holds an unpaired UTF-16 "
            "surrogate (a lone \\ud800-\\udfff escape)"
        )
        assert response.json() == {"errors": [{"message": message, "extensions": {"code": "BAD_REQUEST"}}]}


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ('{"query": "query($x: Float) { __typename }", "variables": {"x": NaN}}', "variables.x: NaN is not JSON"),
        (
            '{"query": "query($x: Float) { __typename }", "variables": {"x": [1, -Infinity]}}',
            "variables.x[1]: -Infinity is not JSON",
        ),
        (
            '{"query": "query($x: Float) { __typename }", "variables": {"x": 1e400}}',
            "variables.x: 1e400 is past a double's range",
        ),
        ('{"query": "{ __typename }", "variables": {"a": ' + "[" * 5000 + "]" * 5000 + "}}", "nested too deeply"),
        ('{"query": "{ __typename }", "variables": {"a": ' + "7" * 5000 + "}}", "a number with more than 4300 digits"),
    ],
    ids=["NaN", "Infinity", "1e400", "nested 5000 deep", "5000 digits"],
)
@pytest.mark.parametrize("long_digits", [False, True], ids=["orjson", "long-number path"])
async def test_what_is_not_json_is_400_however_the_body_is_decoded(
    gateway: Gateway, body: str, why: str, long_digits: bool
) -> None:
    """NaN, Infinity and numbers past a double are not JSON (orjson refuses them; json.loads, which decodes a body
    holding a long number, read them), and a nesting past Python's recursion limit made json.loads crash (500)."""
    if long_digits:
        body = body[:-1] + ', "extensions": {"pad": 12345678901234567890}}'
    headers = {**GRAPHQL_ACCEPT, "Content-Type": JSON, "Authorization": f"Bearer {READ_TOKEN}"}
    response = await gateway.client.post(f"{gateway.url}/graphql", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json() == {
        "errors": [{"message": f"Unable to parse request body as JSON: {why}", "extensions": {"code": "BAD_REQUEST"}}]
    }


@pytest.mark.parametrize("body", ['"x"', "5", "null", "true", "[5]"])
async def test_a_body_that_is_not_an_object_is_400_with_a_graphql_error(gateway: Gateway, body: str) -> None:
    headers = {**GRAPHQL_ACCEPT, "Content-Type": JSON, "Authorization": f"Bearer {READ_TOKEN}"}
    response = await gateway.client.post(f"{gateway.url}/graphql", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert media_type(response) == GRAPHQL_RESPONSE_JSON
    (error,) = response.json()["errors"]
    assert error["message"] in {
        "the request's JSON must be an object (a batch: an array of objects)",
        "Batching is not enabled",
    }


@pytest.mark.parametrize("name", [5, ["a"], {"a": 1}])
async def test_an_operation_name_that_is_not_a_string_is_400(gateway: Gateway, name: object) -> None:
    """Before: a 200 whose error was an internal exception's text (the metrics label read it as a string)."""
    headers = {**GRAPHQL_ACCEPT, "Content-Type": JSON, "Authorization": f"Bearer {READ_TOKEN}"}
    body = {"query": "{ __typename }", "operationName": name}
    response = await gateway.client.post(f"{gateway.url}/graphql", json=body, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json() == {
        "errors": [{"message": "operationName: must be a string", "extensions": {"code": "BAD_REQUEST"}}]
    }


async def test_several_operations_need_an_operation_name(gateway: Gateway) -> None:
    """The spec's GetOperation: a document with several operations and no operationName is an error. strawberry ran
    the first named one, so a forgotten operationName could run a mutation the client did not mean to."""
    query = 'mutation M { deleteContact(id: "C-1") { status } } query B { vendors { vendor } }'
    response = await gateway.client.post(f"{gateway.url}/graphql", json={"query": query}, headers=GRAPHQL_ACCEPT)
    assert response.status_code == 400, response.text
    assert response.json() == {
        "errors": [
            {
                "message": "Must provide operation name if query contains multiple operations.",
                "extensions": {"code": "BAD_REQUEST"},
            }
        ]
    }
    picked = await gateway.client.post(
        f"{gateway.url}/graphql", json={"query": query, "operationName": "B"}, headers=GRAPHQL_ACCEPT
    )
    assert picked.status_code == 200 and "vendors" in picked.json()["data"]


async def test_a_missing_token_is_still_401_before_anything_else(gateway: Gateway) -> None:
    response = await gateway.client.post(
        f"{gateway.url}/graphql", content=b"not json", headers={"Accept": "text/html", "Content-Type": "text/plain"}
    )
    assert response.status_code == 401
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
