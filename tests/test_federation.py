"""The gateway as an Apollo Federation v2 subgraph, composed with another subgraph and queried through a real gateway.

A tiny WorkOrder subgraph (Strawberry, below) references `Contact` by its key. Both real composition tools from npm
(`@apollo/composition` and `@theguild/federation-composition`, tests/federation/compose.mjs) must accept the two
subgraphs, and `@apollo/gateway` (tests/federation/gateway.mjs) must join a work order to its contact's name and vendor
links, forwarding the caller's bearer token to our subgraph.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import strawberry
import uvicorn
from strawberry.asgi import GraphQL
from strawberry.federation.schema_directives import Key
from strawberry.federation.types import FieldSet

from resolvers.sql import Direct
from resolvers.store import Store, StoredContact
from tests.conftest import READ_TOKEN, ROUTER_TOKEN, WRITE_ONLY_TOKEN, Gateway, free_port, stop
from tests.node import FEDERATION, require_node, run_script
from tests.support import UPSERT, contact

# The WorkOrder subgraph: its own type, and `Contact` only as a reference (`resolvable: false`: no `_entities` here).


@strawberry.federation.type(name="Contact", keys=[Key(fields=FieldSet("id"), resolvable=False)])
class ContactReference:
    id: strawberry.ID


@strawberry.type
class WorkOrder:
    id: strawberry.ID
    title: str
    contact: ContactReference | None


WORK_ORDERS = {
    "W1": WorkOrder(
        id=strawberry.ID("W1"), title="Replace boiler", contact=ContactReference(id=strawberry.ID("C-1001"))
    )
}


@strawberry.type
class WorkOrderQuery:
    @strawberry.field
    def work_order(self, id: strawberry.ID) -> WorkOrder | None:
        return WORK_ORDERS.get(str(id))


workorder_schema = strawberry.federation.Schema(query=WorkOrderQuery, federation_version="2.9")

JOINED = """
{ workOrder(id: "W1") { title contact { id firstName lastName vendorLinks { vendor remoteId status } } } }
"""

ENTITIES = """
query Entities($representations: [_Any!]!) {
  _entities(representations: $representations) { ... on Contact { id lastName vendorLinks { vendor remoteId } } }
}
"""


@contextlib.asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """An ASGI app on a free port with uvicorn; yields its GraphQL URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}/graphql"
    finally:
        await stop(server, task)


@contextlib.asynccontextmanager
async def node_gateway(supergraph: Path, log: Path) -> AsyncIterator[str]:
    """`node gateway.mjs` on the supergraph; yields its URL once it listens, stops it afterwards."""
    with log.open("wb") as errors:
        process = await asyncio.create_subprocess_exec(
            "node",
            "gateway.mjs",
            "--supergraph",
            str(supergraph),
            "--port",
            "0",
            cwd=FEDERATION,
            stdout=asyncio.subprocess.PIPE,
            stderr=errors,
        )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        if not line.startswith("gateway ready at "):
            raise AssertionError(f"gateway.mjs did not start: {line}{await asyncio.to_thread(log.read_text)}")
        yield line.removeprefix("gateway ready at ").strip()
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()


async def service_sdl(gateway: Gateway) -> str:
    answer = await gateway.graphql("{ _service { sdl } }", token=ROUTER_TOKEN)
    sdl: str = answer["data"]["_service"]["sdl"]
    return sdl


async def test_service_sdl_is_a_federation_2_9_subgraph(gateway: Gateway) -> None:
    sdl = await service_sdl(gateway)
    assert '@link(url: "https://specs.apollo.dev/federation/v2.9", import: ["@key"])' in sdl
    assert 'type Contact @key(fields: "id")' in sdl
    assert "union _Entity = Contact" in sdl
    unauthenticated = await gateway.client.post(f"{gateway.url}/graphql", json={"query": "{ _service { sdl } }"})
    assert unauthenticated.status_code == 401


async def test_composed_with_a_workorder_subgraph_and_joined_through_apollo_gateway(
    gateway: Gateway, tmp_path: Path
) -> None:
    require_node()
    written = await gateway.graphql(UPSERT, {"input": contact()})
    links = written["data"]["upsertContact"]["contact"]["vendorLinks"]
    expected_links = [
        {"vendor": link["vendor"], "remoteId": link["remoteId"], "status": link["status"]} for link in links
    ]
    assert len(expected_links) == 5

    async with serving(GraphQL(workorder_schema)) as workorders:
        supergraphs = {"apollo": tmp_path / "supergraph.graphql", "guild": tmp_path / "supergraph-guild.graphql"}
        composed = await run_script(
            "compose.mjs",
            "--subgraph",
            f"contacts={gateway.url}/graphql",
            "--subgraph",
            f"workorders={workorders}",
            "--header",
            f"Authorization: Bearer {ROUTER_TOKEN}",
            "--out",
            str(supergraphs["apollo"]),
            "--out-guild",
            str(supergraphs["guild"]),
        )
        assert composed.returncode == 0, composed.stderr
        for supergraph in supergraphs.values():
            text = supergraph.read_text()
            assert "join__Graph" in text and "CONTACTS" in text and "WORKORDERS" in text

        # The Guild's supergraph serves through @apollo/gateway as well as Apollo's own.
        for name, supergraph in supergraphs.items():
            async with (
                node_gateway(supergraph, tmp_path / f"gateway-{name}.log") as router,
                httpx.AsyncClient(timeout=30) as client,
            ):
                joined = await client.post(
                    router, json={"query": JOINED}, headers={"Authorization": f"Bearer {READ_TOKEN}"}
                )
                assert joined.status_code == 200, joined.text
                assert joined.json() == {
                    "data": {
                        "workOrder": {
                            "title": "Replace boiler",
                            "contact": {
                                "id": "C-1001",
                                "firstName": "Ada",
                                "lastName": "Lovelace",
                                "vendorLinks": expected_links,
                            },
                        }
                    }
                }, name

                # Without a token the router forwards none: our subgraph refuses, the work order still answers.
                anonymous = (await client.post(router, json={"query": JOINED})).json()
                assert anonymous["data"]["workOrder"]["title"] == "Replace boiler"
                assert "UNAUTHENTICATED" in {error["extensions"]["code"] for error in anonymous["errors"]}, anonymous


@pytest.fixture
def contact_loads(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The ids of every `Store.get_contacts` call from now on (the DataLoader's one query per batch)."""
    calls: list[list[str]] = []
    original = Store.get_contacts

    async def counted(self: Store, ids: Iterable[str]) -> dict[str, StoredContact]:
        wanted = list(ids)
        calls.append(wanted)
        return await original(self, wanted)

    monkeypatch.setattr(Store, "get_contacts", counted)
    return calls


@pytest.fixture
def contact_selects(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """SQL statements that read the contacts table, from any engine, from now on: through SQLAlchemy's execution
    (its cursor events) and on the driver's cursor (`resolvers.sql.Direct`, which those events do not see)."""
    seen: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "FROM contacts" in statement:
            seen.append(statement)

    direct = Direct.execute

    def direct_execute(self: Direct, conn: sa.Connection, params: Any) -> Any:
        plan = self.plan(conn.dialect)
        if plan is not None:  # without a plan it goes through Connection.execute: the event sees it
            record(conn, None, plan.sql)
        return direct(self, conn, params)

    monkeypatch.setattr(Direct, "execute", direct_execute)
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    yield seen
    sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)


async def test_entities_are_batched_into_one_store_query(
    gateway: Gateway, contact_loads: list[list[str]], contact_selects: list[str]
) -> None:
    ids = ["E-1", "E-2", "E-3"]
    for contact_id in ids:
        assert (await gateway.graphql(UPSERT, {"input": contact(id=contact_id)}))["data"]["upsertContact"]["contact"]
    contact_loads.clear()
    contact_selects.clear()

    representations = [{"__typename": "Contact", "id": i} for i in ["E-3", "missing-1", "E-1", "E-2", "missing-2"]]
    answer = await gateway.graphql(ENTITIES, {"representations": representations}, token=READ_TOKEN)

    assert "errors" not in answer, answer
    entities = answer["data"]["_entities"]
    assert [e and e["id"] for e in entities] == ["E-3", None, "E-1", "E-2", None]
    assert all(len(e["vendorLinks"]) == 5 for e in entities if e)
    assert contact_loads == [["E-3", "missing-1", "E-1", "E-2", "missing-2"]]
    assert len(contact_selects) == 1, contact_selects


async def test_entities_need_the_read_scope(gateway: Gateway) -> None:
    """`contact(id)` needs contacts:read; `_entities` reads the same contacts, so it does too (any token could
    read every contact through it before)."""
    await gateway.graphql(UPSERT, {"input": contact(id="E-9")})
    representations = [{"__typename": "Contact", "id": "E-9"}]
    answer = await gateway.graphql(ENTITIES, {"representations": representations}, token=WRITE_ONLY_TOKEN)
    assert answer["data"] is None
    assert answer["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert answer["errors"][0]["message"] == "this token lacks the contacts:read scope"
    allowed = await gateway.graphql(ENTITIES, {"representations": representations}, token=ROUTER_TOKEN)
    assert allowed["data"]["_entities"][0]["id"] == "E-9"


async def test_each_bad_representation_is_answered_at_its_index(gateway: Gateway) -> None:
    """A representation that is not a Contact reference answers null with an error naming it; the others in the
    router's batch are resolved (an unknown __typename failed the whole batch, the others were masked INTERNAL)."""
    await gateway.graphql(UPSERT, {"input": contact(id="E-8")})
    representations: list[Any] = [
        {"__typename": "Vendor", "id": "E-8"},
        {"__typename": "Contact"},
        {"__typename": "Contact", "id": "E-8", "email": "x"},
        "E-8",
        {"id": "E-8"},
        {"__typename": "Contact", "id": "E-8"},
    ]
    answer = await gateway.graphql(ENTITIES, {"representations": representations}, token=READ_TOKEN)
    assert [e and e["id"] for e in answer["data"]["_entities"]] == [None] * 5 + ["E-8"]
    errors = {tuple(e["path"]): e for e in answer["errors"]}
    assert set(errors) == {("_entities", i) for i in range(5)}
    assert all(e["extensions"] == {"code": "BAD_USER_INPUT", "argument": "representations"} for e in errors.values())
    messages = [errors[("_entities", i)]["message"] for i in range(5)]
    assert messages == [
        "representations[0].__typename: this subgraph resolves Contact only, not 'Vendor'",
        "representations[1].id: must be a contact id (a string)",
        "representations[2]: a Contact is referenced by id alone, not 'email'",
        'representations[3]: must be an object such as {__typename: "Contact", id: ...}',
        "representations[4].__typename: this subgraph resolves Contact only, not None",
    ]


async def test_entities_answer_null_for_unknown_ids(gateway: Gateway) -> None:
    representations = [{"__typename": "Contact", "id": "nobody"}]
    answer = await gateway.graphql(ENTITIES, {"representations": representations}, token=READ_TOKEN)
    assert answer == {"data": {"_entities": [None]}}
