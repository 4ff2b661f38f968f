"""`graph.execution.GatewayExecutionContext`: plain selections completed directly, everything else as graphql-core
does.

The short path must give what strawberry's own execution context gives, data and errors alike (messages, paths,
locations), for good values and for every bad one (None in a non-null field or list, an attribute that raises, an
enum value that is not a member, a scalar that cannot be serialised, a string where a list belongs), at every depth
of plain objects and lists; it must read with the schema's own default resolver, and leave `resolve` hooks in force.
"""

from __future__ import annotations

import asyncio
import enum
import gc
from datetime import UTC, datetime
from typing import Any

import pytest
import strawberry
from strawberry.extensions import SchemaExtension
from strawberry.permission import BasePermission
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from graph.execution import GatewayExecutionContext


@strawberry.enum
class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@strawberry.type
class Item:
    id: strawberry.ID
    name: str | None
    required: str
    count: int
    colour: Colour | None
    at: datetime | None
    tags: list[str]

    @strawberry.field
    def computed(self) -> str:
        return f"<{self.name}>"


class Raising:
    """Looks like an Item; reading `name` raises."""

    id = strawberry.ID("raising")
    required = "r"
    count = 1
    colour = None
    at = None
    tags: list[str] = []

    @property
    def name(self) -> str:
        raise RuntimeError("cannot read name")


def _items() -> list[Any]:
    good = Item(
        id=strawberry.ID("a"),
        name="Ada",
        required="x",
        count=3,
        colour=Colour.BLUE,
        at=datetime(2026, 12, 2, 5, 0, tzinfo=UTC),
        tags=["t1"],
    )
    nulls = Item(id=strawberry.ID("b"), name=None, required="y", count=0, colour=None, at=None, tags=[])
    null_required = Item(id=strawberry.ID("c"), name="n", required=None, count=1, colour=None, at=None, tags=[])  # type: ignore[arg-type]
    bad_enum = Item(id=strawberry.ID("d"), name="e", required="z", count=1, colour="green", at=None, tags=[])  # type: ignore[arg-type]
    bad_int = Item(id=strawberry.ID("e"), name="f", required="z", count="many", colour=None, at=None, tags=[])  # type: ignore[arg-type]
    return [good, nulls, null_required, bad_enum, bad_int, Raising()]


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item | None]:
        return _items()

    @strawberry.field
    def one(self) -> Item:
        return _items()[0]

    @strawberry.field
    def holders(self) -> list[Holder | None]:
        return _holders()


@strawberry.type
class Holder:
    """Plain fields all the way down: objects, lists of objects and of enums, nested."""

    label: str
    item: Item | None
    required_item: Item
    items: list[Item | None]
    required_items: list[Item]
    colours: list[Colour | None]
    inner: Holder | None


def _holders() -> list[Any]:
    good, nulls, null_required, bad_enum, bad_int, raising = _items()
    plain = Holder(
        label="plain",
        item=good,
        required_item=nulls,
        items=[good, None, nulls],
        required_items=(good, nulls),  # type: ignore[arg-type]  # a tuple is a list too
        colours=[Colour.RED, None],
        inner=Holder(label="inner", item=None, required_item=good, items=[], required_items=[], colours=[], inner=None),
    )
    return [
        plain,
        Holder(
            label="bad item", item=bad_enum, required_item=good, items=[], required_items=[], colours=[], inner=None
        ),
        Holder(
            label="null in list",
            item=None,
            required_item=good,
            items=[null_required, good, raising],
            required_items=[good, None],  # type: ignore[list-item]
            colours=[],
            inner=None,
        ),
        Holder(
            label="not a list",
            item=None,
            required_item=good,
            items="abc",  # type: ignore[arg-type]
            required_items=[good],
            colours=[],
            inner=None,
        ),
        Holder(
            label="deep",
            item=None,
            required_item=good,
            items=[],
            required_items=[],
            colours=[],
            inner=Holder(
                label="x", item=None, required_item=null_required, items=[], required_items=[], colours=[], inner=None
            ),
        ),
        Holder(label=None, item=None, required_item=good, items=[], required_items=[], colours=[], inner=None),  # type: ignore[arg-type]
        Holder(
            label="bad enums",
            item=bad_int,
            required_item=good,
            items=[],
            required_items=[],
            colours=["green", Colour.BLUE],  # type: ignore[list-item]
            inner=None,
        ),
    ]


QUERY = """{
  items { id name required count colour at tags computed __typename alias: name }
  one { ...F }
}
fragment F on Item { id name colour @include(if: true) count @skip(if: true) }"""

#: Every kind of plain selection, on good values and on each bad one, with `__typename` and aliases inside.
HOLDERS = """{ holders {
  __typename label
  item { id colour count }
  requiredItem { id required count }
  items { __typename id required name }
  requiredItems { id at }
  colours
  inner { label requiredItem { id required } inner { label } }
  again: item { name }
} }"""


def _schema(execution_context: type[Any], extensions: list[Any] | None = None) -> strawberry.Schema:
    return strawberry.Schema(query=Query, execution_context_class=execution_context, extensions=extensions or [])


def _answer(result: Any) -> tuple[Any, list[Any]]:
    errors = sorted(
        ((e.message, e.path, [(loc.line, loc.column) for loc in e.locations or []]) for e in result.errors or []),
        key=repr,
    )
    return result.data, errors


async def test_the_short_path_answers_what_strawberrys_execution_does() -> None:
    stock = _answer(await _schema(StrawberryGraphQLCoreExecutionContext).execute(QUERY))
    ours = _answer(await _schema(GatewayExecutionContext).execute(QUERY))
    assert ours == stock
    data, errors = ours
    assert data["items"][0]["colour"] == "BLUE" and data["items"][0]["at"] == "2026-12-02T05:00:00+00:00"
    assert data["items"][2] is None and data["items"][5] is None, "a bad non-null field nulls its item"
    messages = " | ".join(message for message, _, _ in errors)
    for expected in ("Cannot return null for non-nullable field Item.required", "green", "many", "cannot read name"):
        assert expected in messages


async def test_plain_subtrees_answer_what_strawberrys_execution_does() -> None:
    stock = _answer(await _schema(StrawberryGraphQLCoreExecutionContext).execute(HOLDERS))
    ours = _answer(await _schema(GatewayExecutionContext).execute(HOLDERS))
    assert ours == stock
    data, errors = ours
    plain, bad_item, null_in_list, not_a_list, deep, no_label, bad_enums = data["holders"]
    assert plain["items"][1] is None and plain["requiredItems"][1]["id"] == "b" and plain["colours"] == ["RED", None]
    assert plain["inner"] == {"label": "inner", "requiredItem": {"id": "a", "required": "x"}, "inner": None}
    assert plain["items"][0]["__typename"] == "Item" and plain["__typename"] == "Holder"
    assert bad_item["item"] == {
        "id": "d",
        "colour": None,
        "count": 1,
    }  # not a member of the enum: the nullable colour nulled
    assert null_in_list is None  # None in [Item!]! nulls up to the nullable holder
    assert not_a_list is None and deep["inner"] is None and no_label is None  # nulled up to the nullable parent
    paths = {tuple(path) for _, path, _ in errors}
    assert ("holders", 2, "requiredItems", 1) in paths and ("holders", 3, "items") in paths
    assert bad_enums["colours"] == [None, "BLUE"] and ("holders", 6, "colours", 0) in paths
    assert bad_enums["item"] is None and ("holders", 6, "item", "count") in paths
    assert ("holders", 4, "inner", "requiredItem", "required") in paths and ("holders", 5, "label") in paths


@strawberry.type
class Row:
    name: str
    colour: Colour | None


@strawberry.type
class RowsQuery:
    """Its rows are dicts: only a schema whose default resolver reads keys can answer."""

    @strawberry.field
    def rows(self) -> list[Row]:
        return [{"name": "first", "colour": Colour.RED}, {"name": "second", "colour": "green"}]  # type: ignore[list-item]


async def test_a_configured_default_resolver_is_what_reads_plain_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    def answer(context: type[Any]) -> Any:
        config = StrawberryConfig(default_resolver=lambda source, name: source[name])
        return strawberry.Schema(query=RowsQuery, execution_context_class=context, config=config)

    query = "{ rows { name colour } }"
    stock = _answer(await answer(StrawberryGraphQLCoreExecutionContext).execute(query))
    assert _answer(await answer(GatewayExecutionContext).execute(query)) == stock
    assert stock[0] == {"rows": [{"name": "first", "colour": "RED"}, {"name": "second", "colour": None}]}
    executed = _count_executed(monkeypatch)
    await answer(GatewayExecutionContext).execute(query)
    assert executed == ["RowsQuery.rows", "Row.colour"], "read by the configured resolver; only 'green' goes back"


def _count_executed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record each field graphql-core's `execute_field` runs, as `Type.field`."""
    executed: list[str] = []
    original = StrawberryGraphQLCoreExecutionContext.execute_field

    def counted(self: Any, parent_type: Any, source: Any, details: Any, *args: Any) -> Any:
        executed.append(f"{parent_type.name}.{details[0].node.name.value}")
        return original(self, parent_type, source, details, *args)

    monkeypatch.setattr(StrawberryGraphQLCoreExecutionContext, "execute_field", counted)
    return executed


async def test_plain_leaves_skip_graphql_cores_field_execution(monkeypatch: pytest.MonkeyPatch) -> None:
    executed = _count_executed(monkeypatch)
    await _schema(GatewayExecutionContext).execute("{ one { id name count colour computed tags } }")
    assert executed == ["Query.one", "Item.computed"], "resolvers take graphql-core's path"

    executed.clear()
    result = await _schema(GatewayExecutionContext).execute(
        "{ holders { label items { id tags } inner { requiredItem { id } } } }"
    )
    assert result.data is not None and result.data["holders"][0]["items"][0] == {"id": "a", "tags": ["t1"]}
    # The first holder is plain all the way down; each bad one goes back to graphql-core's path at the field
    # that is not plain (and only there).
    assert executed[0] == "Query.holders"
    assert "Holder.label" not in executed[:1] and executed.count("Holder.items") == 1, executed


class Shout(SchemaExtension):
    """A `resolve` hook: every string upper-cased."""

    def resolve(self, _next: Any, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
        value = _next(root, info, *args, **kwargs)
        return value.upper() if isinstance(value, str) else value


class _Never(BasePermission):
    message = "never"

    def has_permission(self, source: Any, info: Any, **kwargs: Any) -> bool:
        return False


@strawberry.type
class Guarded:
    open: str
    secret: str | None = strawberry.field(permission_classes=[_Never])


@strawberry.type
class GuardedQuery:
    @strawberry.field
    def guarded(self) -> Guarded:
        return Guarded(open="o", secret="s")


async def test_a_field_with_a_permission_and_no_resolver_is_checked() -> None:
    """strawberry marks such a field `_is_default` (it has no resolver) although its permission is a field
    extension: the short path read the attribute and answered the secret."""
    query = "{ guarded { open secret } }"
    answers = [
        _answer(await strawberry.Schema(query=GuardedQuery, execution_context_class=context).execute(query))
        for context in (StrawberryGraphQLCoreExecutionContext, GatewayExecutionContext)
    ]
    assert (
        answers[0]
        == answers[1]
        == ({"guarded": {"open": "o", "secret": None}}, [("never", ["guarded", "secret"], [(1, 18)])])
    )


async def test_resolve_hooks_still_see_every_field() -> None:
    result = await _schema(GatewayExecutionContext, [Shout]).execute("{ one { name required } }")
    assert result.data == {"one": {"name": "ADA", "required": "X"}}


async def test_the_gateways_schema_uses_it() -> None:
    from graph.schema import build_schema
    from resolvers.config import ServerConfig

    assert build_schema(ServerConfig(introspection=True)).execution_context_class is GatewayExecutionContext
    assert issubclass(build_schema(ServerConfig(introspection=False)).execution_context_class, GatewayExecutionContext)


async def test_an_enums_names_are_read_once_per_schema_not_once_per_operation(monkeypatch: pytest.MonkeyPatch) -> None:
    schema = _schema(GatewayExecutionContext)
    colour = schema._schema.type_map["Colour"]
    members: list[Any] = []  # calls with a member (a value that is none, 'green', takes the call every time)
    coerce = colour.coerce_output_value

    def counting(value: Any) -> Any:
        if isinstance(value, Colour):
            members.append(value)
        return coerce(value)

    monkeypatch.setattr(colour, "coerce_output_value", counting)
    first = _answer(await schema.execute("{ items { colour } }"))
    assert first[0]["items"][0] == {"colour": "BLUE"}
    assert sorted(members, key=str) == sorted(Colour, key=str), "the first operation reads each member's name once"
    for _ in range(3):
        assert _answer(await schema.execute("{ items { colour } }")) == first
    assert len(members) == len(Colour), "later operations reuse the names"


@strawberry.type
class _Sums:
    @strawberry.field
    async def gathered(self, info: strawberry.Info) -> int:
        """Awaits two values through graphql-core's resolver helpers, as a resolver of graphql-core's own would."""

        async def value(n: int) -> int:
            return n

        helpers = info._raw_info.async_helpers
        helpers.track([value(0)])  # settled in the background by the executor
        return sum(await helpers.gather([value(2), value(3)]))


async def test_resolver_helpers_still_gather_and_track() -> None:
    schema = strawberry.Schema(query=_Sums, execution_context_class=GatewayExecutionContext)
    result = await schema.execute("{ gathered }")
    assert result.errors is None, result.errors
    assert result.data == {"gathered": 5}


async def test_an_operation_is_freed_without_the_cycle_collector(gateway: Any) -> None:
    """Over HTTP, a whole write: once answered, its execution context (and all it reaches) is gone by reference
    counting alone. graphql-core's helpers held the context's bound methods, a cycle only a collection freed."""
    from tests.support import UPSERT, contact

    def alive() -> int:
        return sum(isinstance(o, GatewayExecutionContext) for o in gc.get_objects())

    assert "errors" not in await gateway.graphql(UPSERT, {"input": contact(id="gc-0")})  # warm: caches, pools
    gc.collect()
    gc.disable()
    try:
        for n in range(1, 4):
            body = await gateway.graphql(UPSERT, {"input": contact(id=f"gc-{n}")})
            assert "errors" not in body, body
        for _ in range(100):  # the server's task may still be unwinding its last frames
            if alive() == 0:
                break
            await asyncio.sleep(0.01)
        assert alive() == 0
    finally:
        gc.enable()
