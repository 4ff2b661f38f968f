"""`graph.execution.GatewayExecutionContext`: plain leaf fields read directly, everything else as graphql-core does.

The short path must give what strawberry's own execution context gives, data and errors alike (messages, paths,
locations), for good values and for every bad one (None in a non-null field, an attribute that raises, an enum
value that is not a member, a scalar that cannot be serialised), and must leave `resolve` hooks in force.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any

import pytest
import strawberry
from strawberry.extensions import SchemaExtension
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


QUERY = """{
  items { id name required count colour at tags computed __typename alias: name }
  one { ...F }
}
fragment F on Item { id name colour @include(if: true) count @skip(if: true) }"""


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


async def test_plain_leaves_skip_graphql_cores_field_execution(monkeypatch: pytest.MonkeyPatch) -> None:
    executed: list[str] = []
    original = StrawberryGraphQLCoreExecutionContext.execute_field

    def counted(self: Any, parent_type: Any, source: Any, details: Any, *args: Any) -> Any:
        executed.append(f"{parent_type.name}.{details[0].node.name.value}")
        return original(self, parent_type, source, details, *args)

    monkeypatch.setattr(StrawberryGraphQLCoreExecutionContext, "execute_field", counted)
    await _schema(GatewayExecutionContext).execute("{ one { id name count colour computed tags } }")
    assert executed == ["Query.one", "Item.computed", "Item.tags"], "lists and resolvers take graphql-core's path"


class Shout(SchemaExtension):
    """A `resolve` hook: every string upper-cased."""

    def resolve(self, _next: Any, root: Any, info: Any, *args: Any, **kwargs: Any) -> Any:
        value = _next(root, info, *args, **kwargs)
        return value.upper() if isinstance(value, str) else value


async def test_resolve_hooks_still_see_every_field() -> None:
    result = await _schema(GatewayExecutionContext, [Shout]).execute("{ one { name required } }")
    assert result.data == {"one": {"name": "ADA", "required": "X"}}


async def test_the_gateways_schema_uses_it() -> None:
    from graph.schema import build_schema

    assert build_schema().execution_context_class is GatewayExecutionContext
