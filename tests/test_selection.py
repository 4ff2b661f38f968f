"""`graph.schema.selects_contact`: a write reads its contact back exactly when the operation selects `contact` under
the mutation's field, directly, aliased or through fragments; unsure (an unknown fragment) means yes.

Run through a real strawberry schema, so the `Info` it reads is the one strawberry builds."""

from __future__ import annotations

from typing import Any

import pytest
import strawberry

from graph.schema import selects_contact

_SEEN: list[bool] = []


@strawberry.type
class Payload:
    status: str
    contact: str | None
    results: list[str]


@strawberry.type
class _Query:
    @strawberry.field
    def write(self, info: strawberry.Info, input: str) -> Payload:
        _SEEN.append(selects_contact(info))  # type: ignore[arg-type]
        return Payload(status="ok", contact="c", results=["r"])


_SCHEMA = strawberry.Schema(query=_Query)


@pytest.mark.parametrize(
    ("selection", "fragments", "expected"),
    [
        ("status", "", False),
        ("status results", "", False),
        ("contact", "", True),
        ("status c: contact", "", True),
        ("... on Payload { contact }", "", True),
        ("... on Payload { status }", "", False),
        ("...A", "fragment A on Payload { status }", False),
        ("...A ...A", "fragment A on Payload { status results }", False),
        ("...A", "fragment A on Payload { ...B } fragment B on Payload { ... { contact } }", True),
        ("...A ...B", "fragment A on Payload { status } fragment B on Payload { contact }", True),
    ],
)
def test_selects_contact(selection: str, fragments: str, expected: bool) -> None:
    _SEEN.clear()
    result = _SCHEMA.execute_sync(
        f"query($v: String!) {{ write(input: $v) {{ {selection} }} }} {fragments}", {"v": "x"}
    )
    assert result.errors is None, result.errors
    assert [expected] == _SEEN


def test_an_info_it_cannot_read_means_yes() -> None:
    class Opaque:
        pass

    info: Any = Opaque()
    assert selects_contact(info) is True
