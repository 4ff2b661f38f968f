"""GraphQL over HTTP: the response media type a client accepts, and which results are request errors.

# Docs: https://graphql.github.io/graphql-over-http/draft/#sec-Accept
"""

from __future__ import annotations

from graphql import GraphQLError, OperationDefinitionNode, OperationType, parse
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError

JSON = "application/json"
GRAPHQL_RESPONSE_JSON = "application/graphql-response+json"
#: Server-sent events: subscriptions over plain HTTP (GraphQL over SSE, "distinct connections mode").
EVENT_STREAM = "text/event-stream"


def _ranges(accept: str) -> list[tuple[str, float]]:
    """The media ranges of an Accept header with their weights (`q`), lower-cased, parameters other than q dropped."""
    ranges = []
    for item in accept.split(","):
        media_range, *parameters = item.split(";")
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = 0.0
        if media_range.strip():
            ranges.append((media_range.strip().lower(), weight))
    return ranges


def _weight(ranges: list[tuple[str, float]], media_type: str) -> tuple[float, bool]:
    """The weight the most specific matching range gives a media type, and whether that range names it exactly."""
    top = media_type.split("/", 1)[0]
    best: tuple[int, float] = (-1, 0.0)
    for media_range, weight in ranges:
        specificity = {media_type: 2, f"{top}/*": 1, "*/*": 0}.get(media_range, -1)
        if specificity > best[0]:
            best = (specificity, weight)
    return best[1], best[0] == 2


def response_media_type(accept: str | None) -> str | None:
    """The media type to answer in: GraphQL's own when the client prefers it, else JSON; None when it takes neither.

    No Accept header means `application/json` (the spec's legacy default), and so do wildcards: a client must name
    `application/graphql-response+json` to get it (with its 4xx status codes for request errors).
    """
    if accept is None or not accept.strip():
        return JSON
    ranges = _ranges(accept)
    graphql_weight, named = _weight(ranges, GRAPHQL_RESPONSE_JSON)
    json_weight, _ = _weight(ranges, JSON)
    if graphql_weight <= 0 and json_weight <= 0:
        return None
    if graphql_weight > json_weight or (graphql_weight == json_weight and named):
        return GRAPHQL_RESPONSE_JSON
    return JSON


def accepts_event_stream(accept: str | None) -> bool:
    """The Accept header names `text/event-stream` with a weight above 0 (a wildcard does not count)."""
    if not accept:
        return False
    weight, named = _weight(_ranges(accept), EVENT_STREAM)
    return named and weight > 0


def is_subscription(query: object, operation_name: object, *, max_tokens: int | None = None) -> bool | None:
    """Whether the operation a request would run is a subscription; None when the document does not parse or has
    no such operation (execution reports that itself). Parsed only when the word `subscription` is in it."""
    if not isinstance(query, str) or "subscription" not in query:
        return False
    try:
        document = parse(query, no_location=True, max_tokens=max_tokens)
    except (GraphQLError, RecursionError):  # a hostile nesting depth: execution refuses it with its own error
        return None
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is not None:
        operations = [o for o in operations if o.name is not None and o.name.value == operation_name]
    if len(operations) != 1:
        return None
    return operations[0].operation is OperationType.SUBSCRIPTION


def is_request_error(result: ExecutionResult) -> bool:
    """True when the operation failed before execution began: parsing, validation or variable coercion.

    Such a result gets no `data` entry (GraphQL spec, "Response"). Field errors always carry a path; an unexpected
    exception outside any field comes back as a `PreExecutionError` wrapping a non-GraphQL cause: neither counts.
    """
    if result.data is not None or not result.errors or any(error.path is not None for error in result.errors):
        return False
    if isinstance(result, PreExecutionError):
        return all(
            error.original_error is None or isinstance(error.original_error, GraphQLError) for error in result.errors
        )
    return True
