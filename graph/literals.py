"""Values written in a document: graphql-core's `ValuesOfCorrectTypeRule`, each refusal located and named; and the
wording every refused value (written in the document or sent as a variable) is reported in.

graphql-core reports a leaf type's refusal as the scalar raised it when the scalar raises a `GraphQLError`, and
strawberry's `Date`, `DateTime`, `Time`, `Decimal` and `UUID` parsers do, without a node: `birthDate: "2024-13-01"`
written in a query was refused as `Value cannot represent a Date: "2024-13-01". month must be in 1..12`, with no
location and no field named. Such an error here gets the literal's node (so `locations`) and, in front of its
message, where the value is: the argument or variable and the path inside it (`input.birthDate`,
`input.locations.0.startDate`), the same path graphql-core gives a refused variable. Every other refusal of a
literal is prefixed the same way (`Invalid value at 'input.id': ID cannot represent ...`), so each names its field.

`plain_wording` takes out of graphql-core's messages what is Python's or a copy of the caller's data: the
"found: {...}" copy of a whole object or list (a contact, personal data and all, at any size), Python's `None`,
`True` and `{'name': ...}` for JSON's null, true and an object.
"""

from __future__ import annotations

import ast
import json
import re
from typing import Any

from graphql import (
    ArgumentNode,
    GraphQLError,
    GraphQLInputType,
    ListValueNode,
    Node,
    ObjectValueNode,
    ValueNode,
    VariableDefinitionNode,
)
from graphql.language import SKIP, VisitorAction
from graphql.utilities.validate_input_value import validate_input_literal
from graphql.validation import ValuesOfCorrectTypeRule


class LocatedValuesRule(ValuesOfCorrectTypeRule):
    """`ValuesOfCorrectTypeRule` with errors that carry no node located at the literal they refuse (module
    docstring). Errors graphql-core words itself already have their node and are reported unchanged."""

    _where = "value"

    def enter_argument(self, node: ArgumentNode, *_args: Any) -> None:
        self._where = node.name.value

    def enter_variable_definition(self, node: VariableDefinitionNode, *_args: Any) -> None:
        self._where = f"${node.variable.name.value}"

    def is_valid_value_node(self, node: ValueNode, input_type: GraphQLInputType | None) -> VisitorAction:
        if input_type:

            def on_error(error: GraphQLError, path: list[str | int]) -> None:
                where = ".".join(str(step) for step in (self._where, *path))
                self.report_error(
                    GraphQLError(
                        f"Invalid value at '{where}': {plain_wording(error.message)}",
                        error.nodes or _node_at(node, path),
                        original_error=error.original_error,
                        extensions=error.extensions,
                    )
                )

            validate_input_literal(node, input_type, on_error, None, None, self.context.hide_suggestions)
        return SKIP


def _node_at(node: Node, path: list[str | int]) -> Node:
    """The value node `path` leads to inside `node` (an object's field by name, a list's item by index), or the last
    node on the way that has it."""
    for step in path:
        if isinstance(node, ObjectValueNode) and isinstance(step, str):
            found = next((field.value for field in node.fields if field.name.value == step), None)
        elif isinstance(node, ListValueNode) and isinstance(step, int) and 0 <= step < len(node.values):
            found = node.values[step]
        else:
            found = None
        if found is None:
            return node
        node = found
    return node


def with_located_values(rules: tuple[type[Any], ...]) -> tuple[type[Any], ...]:
    """`rules` with graphql-core's `ValuesOfCorrectTypeRule` replaced by `LocatedValuesRule`."""
    return tuple(LocatedValuesRule if rule is ValuesOfCorrectTypeRule else rule for rule in rules)


#: graphql-core's "..., found: {...}." / "... Found: {...}." tail, which repeats a whole object or list the caller sent.
_ECHO = re.compile(r"(?:, found|\s+Found): [\[{].*\.\Z", re.DOTALL)
#: A scalar's refusal of a variable's value, ending in the value as Python prints it (`ID cannot represent value:
#: True`, `String cannot represent a non string value: {'name': 'Ada'}`).
_PYTHON_VALUE = re.compile(r"(?P<head>cannot represent [^:]*value): (?P<value>.*)\Z", re.DOTALL)


def plain_wording(message: str) -> str:
    """`message` without a copy of the object or list it was given and without Python's spelling of values (module
    docstring); the path and the fault stay, and so does a scalar found: it is the fault."""
    message = _ECHO.sub(lambda m: "." if m.group().startswith(",") else "", message)
    message = message.replace("not to be None.", "not to be null.")
    return _PYTHON_VALUE.sub(_json_value, message)


def _json_value(match: re.Match[str]) -> str:
    head, text = match.group("head"), match.group("value")
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return match.group()  # not Python's spelling (a literal printed as GraphQL): already the caller's own
    if isinstance(value, dict):
        return f"{head}: an object"
    if isinstance(value, list | tuple | set):
        return f"{head}: a list"
    return f"{head}: {json.dumps(value, ensure_ascii=False)}"
