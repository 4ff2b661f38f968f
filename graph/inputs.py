"""Input objects built from their GraphQL values with a plan made once per type, not strawberry's generic walk.

Strawberry converts an input value field by field through `convert_argument`, resolving every field's type on
every request: a `ContactInput` like the README's took ~220 us here, more than the rest of the mutation's
argument handling. `compiled` sets a type's `from_input` hook (strawberry's own extension point for types that
build their own value, see `StrawberryObjectDefinition.from_input`) to a builder that makes, the first time, a
plan of each field (GraphQL name, Python name, how to convert it) and then only follows it. It builds what
strawberry builds: the same classes, the same implicit `None` for fields without a default, defaults left to the
dataclass, lists copied; a type it has no rule for is converted by strawberry itself. A test holds the two equal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from strawberry.relay.types import GlobalID
from strawberry.scalars import is_scalar
from strawberry.types.arguments import InputContext, convert_argument
from strawberry.types.base import (
    StrawberryList,
    StrawberryMaybe,
    StrawberryOptional,
    StrawberryType,
    has_object_definition,
)
from strawberry.types.enum import StrawberryEnumDefinition, has_enum_definition

T = TypeVar("T")

#: How one field's value is converted, given the request's context (a null reaches it only for a `Maybe`).
Converter = Callable[[Any, InputContext], Any]


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    #: Fields without a default: None unless given (strawberry's implicit default for input types).
    implicit: dict[str, None]
    #: (GraphQL name, Python name, converter or None when the value is taken as it is, whether the converter
    #: takes a null too: a `Maybe` makes `Some(None)` of one, every other type keeps it None)
    steps: tuple[tuple[str, str, Converter | None, bool], ...]
    #: What the plan was made for (names and leaves depend on them); held, so that their ids stay theirs.
    config: object
    registry: object


#: Plans by input class and configuration (checked by identity on use: an id may be reused once freed).
_plans: dict[tuple[type, int], _Plan] = {}


def compiled(cls: type[T]) -> type[T]:
    """Class decorator for a `@strawberry.input`: build it (and the inputs nested in it) from a plan."""
    cls.__strawberry_definition__.from_input = _build  # type: ignore[attr-defined]
    return cls


def _build(cls: type, value: Mapping[str, Any], context: InputContext) -> Any:
    key = (cls, id(context.config))
    plan = _plans.get(key)
    if plan is None or plan.config is not context.config or plan.registry is not context.scalar_registry:
        plan = _plans[key] = _plan(cls, context)
    kwargs: dict[str, Any] = dict(plan.implicit)
    for graphql_name, python_name, convert, takes_null in plan.steps:
        if graphql_name in value:
            item = value[graphql_name]
            if convert is None or (item is None and not takes_null):
                kwargs[python_name] = item
            else:
                kwargs[python_name] = convert(item, context)
    return cls(**kwargs)


def _plan(cls: type, context: InputContext) -> _Plan:
    definition = cls.__strawberry_definition__  # type: ignore[attr-defined]
    implicit = {
        field.python_name: None
        for field in definition.fields
        if field.default_value is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    }
    steps = tuple(
        (
            context.config.name_converter.from_field(field),
            field.python_name,
            _converter(type_, context),
            isinstance(type_, StrawberryMaybe),
        )
        for field in definition.fields
        for type_ in [field.resolve_type(type_definition=definition)]
    )
    return _Plan(implicit, steps, context.config, context.scalar_registry)


def _copy(items: list[Any], _: InputContext) -> list[Any]:
    return list(items)  # leaves need no converting, but the list is copied: graphql-core shares defaults


def _strawberry(type_: StrawberryType | type) -> Converter:
    """Strawberry's own conversion of a value of `type_` (the argument's path for its errors, not the field's)."""
    return lambda item, ctx: convert_argument(item, type_, ctx.scalar_registry, ctx.config, ctx.info, path=ctx.path)


def _converter(type_: StrawberryType | type, context: InputContext) -> Converter | None:
    """How a value of `type_` becomes its Python value (None: as it is), by strawberry's rules. The plan is made
    with the first request's context; converters take each request's own. What the plan has no rule of its own for
    is converted by strawberry: a `Maybe` (its `Some` wrapper and null rule), a `GlobalID` (a registered scalar
    that strawberry still decodes), an input type with its own `from_input` (e.g. `strawberry.pydantic`), a
    `LazyType`."""
    if isinstance(type_, StrawberryMaybe) or type_ is GlobalID:
        return _strawberry(type_)
    if isinstance(type_, StrawberryOptional):
        return _converter(type_.of_type, context)
    if isinstance(type_, StrawberryList):
        inner = _converter(type_.of_type, context)
        if inner is None:
            return _copy
        return lambda items, ctx: [None if item is None else inner(item, ctx) for item in items]
    leaf = isinstance(type_, StrawberryEnumDefinition) or has_enum_definition(type_)
    if leaf or is_scalar(type_, context.scalar_registry):
        return None  # graphql-core has parsed it already
    if has_object_definition(type_):
        definition = type_.__strawberry_definition__
        if definition.is_input and definition.from_input in (None, _build):
            nested: type = type_
            return lambda item, ctx: _build(nested, item, ctx)
    return _strawberry(type_)
