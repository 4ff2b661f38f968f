"""GraphQL execution with a short path for plain leaf fields.

graphql-core executes every field the same way: it builds a `GraphQLResolveInfo`, calls the resolver, checks for
an awaitable, then walks `complete_value` (non-null, list, leaf) to coerce the result. For a field strawberry
resolves by reading an attribute (a "basic" field: no resolver, no arguments, no field extension, no permission)
whose type is a scalar or an enum, that is ~15 µs here to read one attribute; a page of 100 contacts has about
2,000 of them and spent most of its time there (bench/README.md).

`GatewayExecutionContext.execute_field` reads such a field directly: the same resolver strawberry built
(`_get_basic_result`, which ignores the info), the same `coerce_output_value`. Anything else, and any value that
is not plainly good (None for a non-null field, an exception, an awaitable, a coercion that fails or gives
nothing), goes to graphql-core's own `execute_field`, which resolves the field again and reports what it finds
exactly as before. Schema extensions with a `resolve` hook run as graphql-core middleware: with any middleware
every field takes graphql-core's path.
"""

from __future__ import annotations

from typing import Any

from graphql import GraphQLField, GraphQLLeafType, GraphQLObjectType, Undefined, is_leaf_type, is_non_null_type
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

#: (resolver, leaf type, non-null) when a field takes the short path, else None.
_Plan = tuple[Any, GraphQLLeafType, bool] | None
#: Where a field definition (a `GraphQLField`, which takes attributes) keeps its plan.
_PLAN_ATTRIBUTE = "_contact_gateway_plan"
_UNPLANNED: Any = object()


def _plan(field: GraphQLField) -> _Plan:
    resolve = field.resolve
    if resolve is None or not getattr(resolve, "_is_default", False) or field.args:
        return None
    field_type: Any = field.type
    non_null = is_non_null_type(field_type)
    if non_null:
        field_type = field_type.of_type
    if not is_leaf_type(field_type):
        return None
    return resolve, field_type, non_null


class GatewayExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """Strawberry's execution context; plain scalar and enum fields are read without graphql-core's per-field
    machinery (module docstring)."""

    def execute_field(
        self,
        parent_type: GraphQLObjectType,
        source: Any,
        field_details_list: Any,
        path: Any,
        position_context: Any,
    ) -> Any:
        manager = self.middleware_manager  # strawberry passes one always, empty without `resolve` hooks
        if manager is None or not manager.middlewares:
            field = self.schema.get_field(parent_type, field_details_list[0].node.name.value)
            if field is not None:
                # The plan lives on the field definition itself: made once, gone with its schema.
                found = getattr(field, _PLAN_ATTRIBUTE, _UNPLANNED)
                if found is _UNPLANNED:
                    plan = _plan(field)
                    setattr(field, _PLAN_ATTRIBUTE, plan)
                else:
                    plan = found
                if plan is not None:
                    resolve, leaf, non_null = plan
                    try:
                        value = resolve(source, None)
                        if value is None:
                            if not non_null:
                                return None
                        elif not isinstance(value, Exception) and not self.is_awaitable(value):
                            coerced = leaf.coerce_output_value(value)
                            if coerced is not None and coerced is not Undefined:
                                return coerced
                    except Exception:  # graphql-core's path below meets it again and reports it
                        pass
        return super().execute_field(parent_type, source, field_details_list, path, position_context)
