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

from strawberry.scalars import is_scalar
from strawberry.types.arguments import InputContext, convert_argument
from strawberry.types.base import StrawberryList, StrawberryOptional, StrawberryType, has_object_definition
from strawberry.types.enum import StrawberryEnumDefinition, has_enum_definition

T = TypeVar("T")

#: How one field's value is converted, given the request's context (a None value is passed through before it).
Converter = Callable[[Any, InputContext], Any]


@dataclasses.dataclass(frozen=True, slots=True)
class _Plan:
    #: Fields without a default: None unless given (strawberry's implicit default for input types).
    implicit: dict[str, None]
    #: (GraphQL name, Python name, converter or None when the value is taken as it is)
    steps: tuple[tuple[str, str, Converter | None], ...]


_plans: dict[tuple[type, int], _Plan] = {}


def compiled(cls: type[T]) -> type[T]:
    """Class decorator for a `@strawberry.input`: build it (and the inputs nested in it) from a plan."""
    cls.__strawberry_definition__.from_input = _build  # type: ignore[attr-defined]
    return cls


def _build(cls: type, value: Mapping[str, Any], context: InputContext) -> Any:
    plan = _plans.get((cls, id(context.config)))
    if plan is None:
        plan = _plans[(cls, id(context.config))] = _plan(cls, context)
    kwargs: dict[str, Any] = dict(plan.implicit)
    for graphql_name, python_name, convert in plan.steps:
        if graphql_name in value:
            item = value[graphql_name]
            kwargs[python_name] = item if convert is None or item is None else convert(item, context)
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
            _converter(field.resolve_type(type_definition=definition), context),
        )
        for field in definition.fields
    )
    return _Plan(implicit, steps)


def _copy(items: list[Any], _: InputContext) -> list[Any]:
    return list(items)  # leaves need no converting, but the list is copied: graphql-core shares defaults


def _converter(type_: StrawberryType | type, context: InputContext) -> Converter | None:
    """How a value of `type_` becomes its Python value (None: as it is), by strawberry's rules. The plan is made
    with the first request's context; converters take each request's own."""
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
    if has_object_definition(type_) and type_.__strawberry_definition__.is_input:
        nested: type = type_
        return lambda item, ctx: _build(nested, item, ctx)
    # Anything else (a LazyType, a Maybe, a GlobalID...): strawberry's own conversion.
    return lambda item, ctx: convert_argument(item, type_, ctx.scalar_registry, ctx.config, ctx.info)
