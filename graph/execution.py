"""GraphQL execution with a short path for plain selections.

graphql-core executes every field the same way: it builds a `GraphQLResolveInfo`, calls the resolver, checks for
an awaitable, then walks `complete_value` (non-null, list, object, leaf) to coerce the result; an object in a list
goes through seven calls before its fields are even looked at. For a field strawberry resolves by reading an
attribute (a "basic" field: no resolver, no arguments, no field extension, no permission) that is ~15 µs here to
read one attribute; a page of 100 contacts has about 2,000 such fields and 700 objects, and spent most of its time
there (bench/README.md).

`GatewayExecutionContext.execute_fields` completes a selection directly where it can: a *plain* field is a basic
field (or `__typename`) whose type is a scalar, an enum, an object type without `is_type_of`, or a list of these
(nullable or not), and whose sub-selection, for an object, is plain in turn. Its value is read as strawberry's
resolver for it reads it (an `operator.attrgetter` of the Python name under the default `getattr` resolver, else
the schema's configured one) and coerced with the type's own `coerce_output_value`, the whole subtree at once.
Reading is free of side effects, so the moment anything is not plainly good (None where the type is non-null, an
exception, an awaitable, something that is not a list where a list belongs, a coercion that fails or gives
nothing) the subtree's partial answer is dropped and that one field goes to graphql-core's own `execute_field`,
which resolves it again and reports what it finds exactly as before (its own sub-selections again take the short
path where they can). Fields with resolvers, arguments, directives other than `@include`/`@skip`, `@defer` or
`@stream` take graphql-core's path. Schema extensions with a `resolve` hook run as graphql-core middleware: with
any middleware every field takes graphql-core's path.

The plans are per operation (a selection's grouped field set is made per execution) and kept on the execution
context; each field definition keeps how it is read (`_contact_gateway_reader`), made once and gone with its schema;
the shape of each scalar or enum type (an enum's names by member) is made once per type (`_leaf`, cached).

The execution context is also freed by reference counting when its operation ends: graphql-core gives it helpers
(`async_helpers`) holding its own bound methods, a reference cycle that left every operation's context, and the
~140 objects it reaches (field plans, the request, strawberry's context), to the cyclic garbage collector; a young
collection then freed ~48,000 of them at once (22-58 ms, ~0.15 ms an operation). Here the helpers reach the context
through a weak reference.
"""

from __future__ import annotations

import builtins
import functools
import operator
import weakref
from collections.abc import Awaitable, Sequence
from enum import EnumMeta
from types import CoroutineType, GeneratorType
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLField,
    GraphQLID,
    GraphQLLeafType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLResolveInfoHelpers,
    GraphQLString,
    Undefined,
    VariableDefinitionNode,
    is_leaf_type,
    is_object_type,
)
from graphql.pyutils import Path, gather_with_cancel
from graphql.type.introspection import TypeNameMetaFieldDef
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

from graph.literals import plain_wording

_LEAF, _OBJECT, _LIST = 0, 1, 2
#: Directives collection has already applied; any other on a field keeps it on graphql-core's path.
_APPLIED = frozenset({"include", "skip"})
#: Where a field definition (a `GraphQLField`, which takes attributes) keeps its reader (`_reader`).
_READER_ATTRIBUTE = "_contact_gateway_reader"
_UNSET: Any = object()


class _NotPlain(Exception):
    """A value the short path does not complete: graphql-core's path takes the field."""


#: Value classes known to be neither exceptions nor awaitables (checked once per class: both are class-level).
_PLAIN_CLASSES: set[type] = {str, int, float, bool}


def _plain_class(value: Any) -> bool:
    cls = value.__class__
    if cls in _PLAIN_CLASSES:
        return True
    if isinstance(value, BaseException | CoroutineType | GeneratorType) or hasattr(cls, "__await__"):
        return False
    _PLAIN_CLASSES.add(cls)
    return True


class _Type:
    """What a field's type is, unwrapped: a leaf, an object (with the selection's plan) or a list of one."""

    __slots__ = ("fields", "item", "kind", "leaf", "names", "non_null", "plain")

    def __init__(self, kind: int, non_null: bool) -> None:
        self.kind = kind
        self.non_null = non_null
        self.leaf: GraphQLLeafType | None = None
        #: A leaf's one value class whose output is known without a call: itself (`str` of String and ID) or by
        #: `names` (an enum's members, each with the name the type's own `coerce_output_value` gives it).
        self.plain: type | None = None
        self.names: dict[Any, str] | None = None
        self.item: _Type | None = None
        self.fields: list[_Field] = []


@functools.cache
def _leaf(leaf: GraphQLLeafType, non_null: bool) -> _Type:
    """The shape of a scalar or enum field, made once per schema type: an enum's names are read off its members by
    `coerce_output_value`, which every write's answer (`vendor`, `status`) paid again before (bench/README.md).
    Types are hashed by identity; a shape is never changed once made."""
    shape = _Type(_LEAF, non_null)
    shape.leaf = leaf
    if leaf is GraphQLString or leaf is GraphQLID:
        shape.plain = str  # both give a str back as it is
    elif isinstance(leaf, GraphQLEnumType) and isinstance(members := getattr(leaf, "wrapped_cls", None), EnumMeta):
        # strawberry's enum types: `wrapped_cls` is the Python enum they stand for
        names: dict[Any, str] = {}
        member: Any
        for member in members:
            try:
                name = leaf.coerce_output_value(member)
            except Exception:  # left out: such a member takes the call, which raises again
                continue
            if isinstance(name, str):
                names[member] = name
        shape.plain, shape.names = members, names
    return shape


class _Field:
    """One response key of a plain selection: how to read it (`resolve`, a function of the source; or the constant
    `__typename`) and its type."""

    __slots__ = ("name", "resolve", "type", "typename")

    def __init__(self, name: str, resolve: Any, field_type: _Type | None, typename: str | None = None) -> None:
        self.name = name
        self.resolve = resolve
        self.type = field_type
        self.typename = typename


def _reader(field: GraphQLField) -> Any:
    """How to read a basic field without arguments from its source (a function of the source); else None.

    Strawberry's resolver of a basic field calls its `default_resolver` with the field's Python name; with the
    default (`getattr`) that is an `operator.attrgetter`, without strawberry's three calls around it.
    """
    found = getattr(field, _READER_ATTRIBUTE, _UNSET)
    if found is _UNSET:
        found = None
        resolve = field.resolve
        definition = field.extensions.get("strawberry-definition")
        # strawberry marks a field without a resolver `_is_default` even when it has field extensions (a permission
        # class is one): such a field must go through them, on graphql-core's path.
        extended = bool(getattr(definition, "extensions", None))
        if resolve is not None and getattr(resolve, "_is_default", False) and not field.args and not extended:
            name = getattr(definition, "python_name", None)
            if getattr(definition, "default_resolver", None) is builtins.getattr and isinstance(name, str):
                found = operator.attrgetter(name)
            else:
                found = lambda source: resolve(source, None)  # noqa: E731
        setattr(field, _READER_ATTRIBUTE, found)
    return found


def _complete(shape: _Type, value: Any) -> Any:
    """The completed value of a plain field (raises `_NotPlain` for anything graphql-core must see)."""
    if value is None:
        if shape.non_null:
            raise _NotPlain
        return None
    if not _plain_class(value):
        raise _NotPlain
    kind = shape.kind
    if kind == _LEAF:
        if value.__class__ is shape.plain:
            return value if shape.names is None else shape.names[value]
        coerced = shape.leaf.coerce_output_value(value)  # type: ignore[union-attr]
        if coerced is None or coerced is Undefined:
            raise _NotPlain
        return coerced
    if kind == _OBJECT:
        return _complete_object(shape.fields, value)
    if value.__class__ is not list and value.__class__ is not tuple:
        raise _NotPlain
    item: _Type = shape.item  # type: ignore[assignment]
    if item.kind == _OBJECT and item.non_null:  # the common case, unrolled: a list of objects
        fields = item.fields
        out = []
        for element in value:
            if element is None or not _plain_class(element):
                raise _NotPlain
            out.append(_complete_object(fields, element))
        return out
    return [_complete(item, element) for element in value]


def _complete_object(fields: list[_Field], source: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field in fields:
        if field.typename is not None:
            out[field.name] = field.typename
            continue
        value = field.resolve(source)
        shape: _Type = field.type  # type: ignore[assignment]
        if value.__class__ is shape.plain:  # unrolled: the common leaf
            out[field.name] = value if shape.names is None else shape.names[value]
        else:
            out[field.name] = _complete(shape, value)
    return out


def _weak_helpers(executor: Any) -> GraphQLResolveInfoHelpers:
    """graphql-core's resolver helpers for `executor` (gather and track asynchronous work), reaching it through a weak
    reference instead of its bound methods (module docstring). Once it is gone, nothing is left to track work for,
    and gathering needs nothing of it."""
    ref = weakref.ref(executor)

    def gather(values: Sequence[Awaitable[Any]]) -> Awaitable[list[Any]]:
        alive = ref()
        return alive.gather_async_work(values) if alive is not None else gather_with_cancel(*values)

    def track(values: Sequence[Any]) -> None:
        alive = ref()
        if alive is not None:
            alive.track_async_work(values)

    return GraphQLResolveInfoHelpers(gather=gather, track=track)


class GatewayExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context; plain selections are completed without graphql-core's per-field machinery
    (module docstring)."""

    @classmethod
    def build(cls, *args: Any, **kwargs: Any) -> Any:
        """graphql-core's `build`; a variable's value the schema refuses (the message names the variable and the
        path inside it) gets the code Apollo's servers and routers give it, `BAD_USER_INPUT`. (An operation name
        that picks no operation never gets here: the HTTP layer refuses it first, 400 `BAD_REQUEST`.)"""
        built = super().build(*args, **kwargs)
        if isinstance(built, list):
            for error in built:
                if any(isinstance(node, VariableDefinitionNode) for node in error.nodes or ()):
                    error.extensions = {"code": "BAD_USER_INPUT", **(error.extensions or {})}
                    error.message = plain_wording(error.message)
        return built

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: (parent type, id of a grouped field set) -> (that field set, kept alive so its id stays its own; plan)
        self._plans: dict[tuple[GraphQLObjectType, int], tuple[Any, list[tuple[str, Any, _Field | None]]]] = {}
        self.async_helpers = _weak_helpers(self)

    def _selection_plan(self, parent_type: GraphQLObjectType, grouped_field_set: Any) -> list[Any]:
        key = (parent_type, id(grouped_field_set))
        found = self._plans.get(key)
        if found is not None:
            return found[1]
        plan = [
            (name, details, self._field_plan(parent_type, name, details)) for name, details in grouped_field_set.items()
        ]
        self._plans[key] = (grouped_field_set, plan)
        return plan

    def _field_plan(self, parent_type: GraphQLObjectType, name: str, details: Any) -> _Field | None:
        """How to complete one response key of `parent_type` directly, or None: graphql-core's path."""
        for detail in details:
            if detail.defer_usage is not None:
                return None
            if any(d.name.value not in _APPLIED for d in detail.node.directives or ()):
                return None
        field = self.schema.get_field(parent_type, details[0].node.name.value)
        if field is None:
            return None
        if field is TypeNameMetaFieldDef:
            return _Field(name, None, None, typename=parent_type.name)
        resolve = _reader(field)
        if resolve is None:
            return None
        shape = self._type_plan(field.type, details)
        return None if shape is None else _Field(name, resolve, shape)

    def _type_plan(self, graphql_type: Any, details: Any) -> _Type | None:
        non_null = isinstance(graphql_type, GraphQLNonNull)
        if non_null:
            graphql_type = graphql_type.of_type
        if is_leaf_type(graphql_type):
            return _leaf(graphql_type, non_null)
        if isinstance(graphql_type, GraphQLList):
            item = self._type_plan(graphql_type.of_type, details)
            if item is None or item.kind == _LIST:  # lists of lists: graphql-core's path
                return None
            shape = _Type(_LIST, non_null)
            shape.item = item
            return shape
        if not is_object_type(graphql_type) or graphql_type.is_type_of is not None:
            return None
        grouped, new_defer_usages, forbidden = self.collect_subfields(graphql_type, details)
        if new_defer_usages or forbidden:
            return None
        fields = []
        for name, sub_details in grouped.items():
            sub = self._field_plan(graphql_type, name, sub_details)
            if sub is None:
                return None
            fields.append(sub)
        shape = _Type(_OBJECT, non_null)
        shape.fields = fields
        return shape

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Any,
        grouped_field_set: Any,
        position_context: Any,
    ) -> Any:
        manager = self.middleware_manager  # strawberry passes one always, empty without `resolve` hooks
        if manager is not None and manager.middlewares:
            return super().execute_fields(parent_type, source_value, path, grouped_field_set, position_context)
        results: dict[str, Any] = {}
        is_awaitable = self.is_awaitable
        awaitable_fields: list[str] = []
        try:
            for name, details, plan in self._selection_plan(parent_type, grouped_field_set):
                if plan is not None:
                    try:
                        results[name] = (
                            plan.typename
                            if plan.typename is not None
                            else _complete(plan.type, plan.resolve(source_value))
                        )
                        continue
                    except Exception:  # not plain (or reading it raised): graphql-core's path meets it again
                        pass
                result = self.execute_field(
                    parent_type, source_value, details, Path(path, name, parent_type.name), position_context
                )
                if result is not Undefined:
                    results[name] = result
                    if is_awaitable(result):
                        awaitable_fields.append(name)
        except Exception:
            if awaitable_fields:  # as graphql-core: settle what other fields started, they may fail too
                self.settle_in_background([results[field] for field in awaitable_fields])
            raise
        if not awaitable_fields:
            return results

        async def get_results() -> dict[str, Any]:
            if len(awaitable_fields) == 1:
                results[awaitable_fields[0]] = await results[awaitable_fields[0]]
            else:
                awaited = await gather_with_cancel(*(results[field] for field in awaitable_fields))
                results.update(zip(awaitable_fields, awaited, strict=True))
            return results

        return get_results()


class QuietExecutionContext(GatewayExecutionContext):
    """`GatewayExecutionContext` without suggestions in its errors (a variable's enum value or input field: "Did you
    mean ...?"), for a schema whose introspection is off (`[server] introspection = false`): the suggestions would
    name what introspection hides to whoever guesses near it. strawberry does not pass graphql-core's
    `hide_suggestions`, so the context sets it itself."""

    @classmethod
    def build(cls, *args: Any, **kwargs: Any) -> Any:
        kwargs["hide_suggestions"] = True
        return super().build(*args, **kwargs)
