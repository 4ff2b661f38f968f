"""Query, Mutation and the federation schema (`strawberry export-schema graph.schema:schema`)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import logging
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence
from typing import Annotated, Any, ClassVar

import strawberry
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLScalarType,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    parse,
    validate,
)
from graphql.type.scalars import coerce_id
from graphql.validation import ASTValidationRule, NoSchemaIntrospectionCustomRule, specified_rules
from strawberry.extensions import MaskErrors, SchemaExtension
from strawberry.extensions.max_aliases import create_validator as alias_rule
from strawberry.extensions.query_depth_limiter import IgnoreContext
from strawberry.extensions.query_depth_limiter import create_validator as depth_rule
from strawberry.federation.schema import FederationAny
from strawberry.schema.config import StrawberryConfig
from strawberry.schema.exceptions import CannotGetOperationTypeError
from strawberry.schema.validation_rules.maybe_null import MaybeNullValidationRule
from strawberry.schema.validation_rules.one_of import OneOfInputValidationRule
from strawberry.types import ExecutionContext, Info

from graph import convert, types
from graph.auth import READ, CanAdmin, CanRead, CanWrite, audit, service_sdl_refusal
from graph.context import Context
from graph.execution import GatewayExecutionContext, QuietExecutionContext
from graph.literals import with_located_values
from graph.observability import OperationObserver
from resolvers import observe
from resolvers.config import ServerConfig
from resolvers.errors import BeyondAllowList
from resolvers.events import DeliveryEvent, TooManySubscribers, current_state
from resolvers.fanout import Outcome, Readback
from resolvers.idempotency import MAX_KEY_LENGTH, Answer, Claim, request_hash
from resolvers.model import parse_contact
from resolvers.outbox import Delivery, DeliveryStatus
from resolvers.results import ErrorCode, FieldError, UpsertStatus, Vendor, VendorResult, VendorStatus

log = logging.getLogger(__name__)

#: Page size when `first` is not given.
DEFAULT_PAGE = 20
#: Largest page `contacts(first:)` serves.
MAX_PAGE = 100
#: Contacts of one `upsertContacts` in flight at once (each fans out to every vendor).
BATCH_CONCURRENCY = 8
_CURSOR_PREFIX = "contact:"
_DELIVERY_PREFIX = "delivery:"


def bad_input(message: str, argument: str) -> GraphQLError:
    """A request error naming the argument at fault."""
    return GraphQLError(message, extensions={"code": "BAD_USER_INPUT", "argument": argument})


def encode_cursor(value: str, prefix: str = _CURSOR_PREFIX) -> str:
    """An opaque cursor for a contact id (or, with another prefix, a delivery id)."""
    return base64.urlsafe_b64encode((prefix + value).encode()).decode()


def decode_cursor(cursor: str, prefix: str = _CURSOR_PREFIX) -> str:
    """The value behind a cursor; a foreign cursor is a BAD_USER_INPUT error naming `after`."""
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    if not text.startswith(prefix) or "\x00" in text:
        # NUL: no id holds one (PostgreSQL text cannot), and a query with one fails in the driver.
        raise bad_input("after: not a cursor this API issued", "after")
    return text.removeprefix(prefix)


def _delivery_id(value: str, argument: str = "id") -> int:
    """A delivery id as its number (ASCII digits only: `int` also reads other scripts' digits, "١٢" as 12)."""
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        if argument == "after":
            raise bad_input("after: not a cursor this API issued", "after")
        raise bad_input(f"{argument}: not a delivery id", argument)
    return int(value)


def _vendors(vendors: list[Vendor] | None) -> list[Vendor] | None:
    if vendors is not None and not vendors:
        raise bad_input("vendors: name at least one vendor, or omit the argument for all of them", "vendors")
    return vendors


def field_errors_of_id(value: str) -> str | None:
    """Why `value` cannot be a contact id (the canonical model's rule), or None when it can."""
    parsed = parse_contact({"id": value})
    if isinstance(parsed, list):
        return "; ".join(e.message for e in parsed if e.field == "id") or None
    return None


def forbidden(message: str, argument: str | None = None) -> GraphQLError:
    """A refusal for lack of rights (the token's scopes or its vendor allow-list)."""
    extensions = {"code": "FORBIDDEN"} | ({"argument": argument} if argument else {})
    return GraphQLError(message, extensions=extensions)


def _targets(info: Info[Context, None], vendors: list[Vendor] | None) -> list[Vendor] | None:
    """The vendors a write addresses, within the token's vendor allow-list (if it has one).

    Omitting `vendors` means every configured vendor the token may write to; naming one it may not is FORBIDDEN.
    """
    vendors = _vendors(vendors)
    principal = info.context.principal
    if principal is None or principal.vendors is None:
        return vendors
    if vendors is None:
        configured = info.context.runtime.fanout.connectors
        allowed = [v for v in Vendor if v in principal.vendors and v in configured]
        if not allowed:
            raise forbidden("vendors: this token may not write to any vendor", "vendors")
        return allowed
    refused = [v.name for v in vendors if v not in principal.vendors]
    if refused:
        raise forbidden(f"vendors: this token may not write to {', '.join(refused)}", "vendors")
    return vendors


#: A refusal's GraphQL code -> the code of the per-vendor errors of the input it refused in `upsertContacts`.
_REFUSAL_CODES = {"CONFLICT": ErrorCode.CONFLICT, "FORBIDDEN": ErrorCode.AUTH_FAILED}


def _unanswered(
    info: Info[Context, None], value: types.ContactInput, targets: list[Vendor] | None, refusal: GraphQLError | None
) -> Outcome:
    """The outcome of one `upsertContacts` input that has no outcome of its own: FAILED, with every targeted vendor
    saying why. A refusal (`refusal`: its key CONFLICTs with another request's, or the token may not write where a
    delivery of the contact waits) sent nothing: SKIPPED, with its code and words. An unexpected failure (logged)
    leaves unknown what was accepted: UNAVAILABLE, pointing at the deliveries, where anything accepted shows."""
    if refusal is not None:
        argument = str((refusal.extensions or {}).get("argument", ""))
        error = FieldError(
            field=argument.removeprefix("input.") if argument.startswith("input.") else "",
            code=_REFUSAL_CODES.get(str((refusal.extensions or {}).get("code")), ErrorCode.VENDOR_ERROR),
            message=refusal.message,
        )
        status = VendorStatus.SKIPPED
    else:
        error = FieldError(
            field="",
            code=ErrorCode.VENDOR_ERROR,
            message=f"the gateway failed on this input (logged): whatever of it was accepted is delivered in the "
            f"background, and deliveries(contactId: {str(value.id)!r}) shows it",
        )
        status = VendorStatus.UNAVAILABLE
    results = [
        VendorResult(vendor=vendor, status=status, errors=[error])
        for vendor in info.context.runtime.fanout.targets(targets)
    ]
    return Outcome(status=UpsertStatus.FAILED, contact_id=str(value.id), results=results, stored=False)


def _allowed_vendor(info: Info[Context, None], vendor: Vendor) -> None:
    principal = info.context.principal
    if principal is not None and principal.vendors is not None and vendor not in principal.vendors:
        raise forbidden(f"id: this token may not write to {vendor.name}", "id")


def _audit_outcome(info: Info[Context, None], operation: str, contact_id: str, outcome: Outcome, **extra: Any) -> None:
    principal = info.context.principal
    audit(
        "write",
        principal=principal.name if principal else None,
        operation=operation,
        contact_id=contact_id,
        vendors=[r.vendor.name for r in outcome.results],
        status=outcome.status.value,
        results={r.vendor.name: r.status.value for r in outcome.results},
        **extra,
    )


#: An operation's outcome, with the contact read back in its last transaction when the engine did (see `FanOut.write`).
Written = tuple[Outcome, Readback | None]


async def _upsert(
    ctx: Context, value: types.ContactInput, vendors: list[Vendor] | None, force: bool, wants_contact: bool = True
) -> Written:
    parsed = parse_contact(convert.contact_data(value))
    if isinstance(parsed, list):
        refused = ctx.runtime.fanout.invalid(parsed, vendors)
        if not any(e.field == "id" for e in parsed):
            # Nothing was stored, but the contact may be from an earlier write: `contact` shows it as it stands.
            refused.contact_id = str(value.id)
        return refused, None
    allowed = ctx.principal.vendors if ctx.principal is not None else None
    try:
        return await ctx.runtime.fanout.write(parsed, vendors, force=force, read_back=wants_contact, allowed=allowed)
    except BeyondAllowList as exc:
        raise forbidden(f"input.id: {exc}", "input.id") from None


async def _answer(ctx: Context, written: Written, wants_contact: bool = True) -> tuple[Answer, Readback | None]:
    """The answer to a write: its outcome and (when the caller selected `contact`) the contact as now stored."""
    outcome, readback = written
    if readback is not None:
        return Answer(outcome=outcome, contact=readback.contact), readback
    if not wants_contact:
        return Answer(outcome=outcome, contact=None), None
    stored = await ctx.runtime.store.get_contact(outcome.contact_id) if outcome.contact_id else None
    return Answer(outcome=outcome, contact=stored), None


def selects_contact(info: Info[Context, None]) -> bool:
    """Whether the operation selects `contact` under this field (through fragments too). Reading the contact back
    costs three queries a write; a caller that asks only for statuses does not pay for it. Unsure means yes."""
    return _selects(info, _CONTACT_FIELD, deep=False)


def reads_back(info: Info[Context, None]) -> bool:
    """Whether a write reads its contact back: the operation selects `contact` and the token may see it (without
    `contacts:read` the field answers FORBIDDEN: `UpsertContactPayload.contact`)."""
    principal = info.context.principal
    return principal is not None and READ in principal.scopes and selects_contact(info)


#: The field a write's answer reads the contact back for.
_CONTACT_FIELD = frozenset({"contact"})
#: The `VendorLink` fields whose answer needs the contacts' open deliveries read.
_DELIVERY_FIELDS = frozenset({"pendingDeliveries", "failedDeliveries"})


def selects_deliveries(info: Info[Context, None]) -> bool:
    """Whether the operation selects a link's `pendingDeliveries` or `failedDeliveries` anywhere under this field
    (through fragments too): a page of contacts then reads its open deliveries (one more query, ~4 ms a page of
    100 on this machine), otherwise not. Unsure means yes."""
    return _selects(info, _DELIVERY_FIELDS, deep=True)


def _selects(info: Info[Context, None], names: frozenset[str], *, deep: bool) -> bool:
    """Whether a field named in `names` is selected directly under this field (`deep`: at any depth).

    Walks graphql-core's syntax tree of the field (`Info._raw_info`: its field nodes and the document's fragments),
    not strawberry's `Info.selected_fields`, which converts every argument of the field on the way (the whole
    `input` variable of a write) and was a fifth of a write's HTTP and GraphQL time (bench/README.md)."""
    try:
        raw = info._raw_info
        fragments = raw.fragments
        field_nodes = raw.field_nodes
    except AttributeError:
        return True
    seen: set[str] = set()
    return any(_selects_in(node.selection_set, fragments, seen, names, deep) for node in field_nodes)


def _selects_in(
    selection_set: SelectionSetNode | None,
    fragments: dict[str, FragmentDefinitionNode],
    seen: set[str],
    names: frozenset[str],
    deep: bool,
) -> bool:
    # A module function, not a closure calling itself: that would be a reference cycle every operation.
    for selection in selection_set.selections if selection_set is not None else ():
        if isinstance(selection, FieldNode):
            if selection.name.value in names:
                return True
            if deep and _selects_in(selection.selection_set, fragments, seen, names, deep):
                return True
        elif isinstance(selection, InlineFragmentNode):
            if _selects_in(selection.selection_set, fragments, seen, names, deep):
                return True
        elif isinstance(selection, FragmentSpreadNode):
            name = selection.name.value
            if name in seen:
                continue
            seen.add(name)
            fragment = fragments.get(name)
            if fragment is None or _selects_in(fragment.selection_set, fragments, seen, names, deep):
                return True
        else:
            return True  # something unknown: assume it may select the field
    return False


async def _payload(ctx: Context, answered: tuple[Answer, Readback | None]) -> types.UpsertContactPayload:
    answer, readback = answered
    if readback is not None:
        open_deliveries = readback.open_deliveries
    elif answer.contact:
        open_deliveries = await ctx.runtime.fanout.outbox.open_for([answer.contact.contact.id])
    else:
        open_deliveries = {}
    return convert.payload(answer.outcome, answer.contact, open_deliveries)


def _idempotency_key(info: Info[Context, None], argument: str | None) -> str | None:
    """The key for this field: the argument, else the `Idempotency-Key` header plus the field's response key."""
    if argument is not None:
        key = argument
    else:
        header = info.context.request.headers.get("idempotency-key")
        if header is None:
            return None
        if not header.strip():  # sent empty (or blank): a write the caller believes keyed would not be
            raise bad_input(
                "Idempotency-Key: the header is empty; send a key of printable characters, or no header",
                "Idempotency-Key",
            )
        _checked_key(header, "Idempotency-Key")
        return _derived_key(f"{header}:{info.path.key}")
    return _checked_key(key, _key_source(argument))


def _key_source(argument: str | None) -> str:
    """What an error about the key names: the argument, or the header the key came in."""
    return "idempotencyKey" if argument is not None else "Idempotency-Key"


def _derived_key(key: str) -> str:
    """A key the header makes for a field (`<header>:<field>[:<index>]`): past the stored limit, its SHA-256, so the
    limit the caller is told (the header's) is the one that holds, whatever the alias or index adds."""
    if len(key) <= MAX_KEY_LENGTH:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _checked_key(key: str, source: str = "idempotencyKey") -> str:
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable() or not key.strip():
        raise bad_input(f"{source}: must be 1-{MAX_KEY_LENGTH} printable characters, not only spaces", source)
    return key


async def _keyed_upsert(
    info: Info[Context, None],
    key: str,
    value: types.ContactInput,
    vendors: list[Vendor] | None,
    force: bool,
    source: str,
) -> tuple[Answer, Readback | None]:
    """Run a keyed upsert once; repeats with the same input get the first answer, a different input CONFLICT
    (naming `source`: the `idempotencyKey` argument or the `Idempotency-Key` header the key came in)."""
    ctx = info.context
    idempotency = ctx.runtime.idempotency
    principal = ctx.principal.name if ctx.principal else ""
    asked = request_hash(
        "upsertContact",
        {"input": convert.contact_data(value), "vendors": [v.value for v in vendors or []], "force": force},
    )
    longest = max((c.settings.timeout_s for c in ctx.runtime.connectors.values()), default=10.0)
    begun = await idempotency.wait(principal, key, asked, timeout_s=longest + 5)
    if begun.claim is Claim.REPLAY and begun.answer is not None:
        return begun.answer, None
    if begun.claim is Claim.CONFLICT:
        raise GraphQLError(
            f"{source}: already used for a different input; use a new key for a new write",
            extensions={"code": "CONFLICT", "argument": source},
        )
    if begun.claim is Claim.BUSY:
        raise GraphQLError(
            f"{source}: the first request with this key is still running; repeat it later",
            extensions={"code": "CONFLICT", "argument": source},
        )
    try:
        answered = await _answer(ctx, await _upsert(ctx, value, vendors, force))
    except BaseException:
        await idempotency.abandon(principal, key)
        raise
    await idempotency.finish(principal, key, answered[0])
    return answered


@strawberry.type
class Query:
    """Reads, and the dry-run validation front ends call as the user types."""

    @strawberry.field(
        permission_classes=[CanRead],
        description=(
            "One contact by the caller's id; null when none is stored. An id no contact can have (empty, spaces "
            "around it, past 50 characters) is BAD_USER_INPUT, as for deleteContact."
        ),
    )
    async def contact(self, info: Info[Context, None], id: strawberry.ID) -> types.Contact | None:
        problems = field_errors_of_id(str(id))
        if problems:
            raise bad_input(f"id: {problems}", "id")
        return await info.context.contact_loader.load(str(id))

    @strawberry.field(permission_classes=[CanRead], description="Contacts ordered by id, a page at a time.")
    async def contacts(
        self, info: Info[Context, None], first: int | None = DEFAULT_PAGE, after: str | None = None
    ) -> types.ContactConnection:
        first = DEFAULT_PAGE if first is None else first
        if not 0 <= first <= MAX_PAGE:
            raise bad_input(f"first: must be between 0 and {MAX_PAGE}", "first")
        after_id = decode_cursor(after) if after is not None else None
        store = info.context.runtime.store
        page, has_next = await store.list_contacts(first, after_id)
        # Each link's pending and failed deliveries, as `contact(id)` shows them: one read for the page, when asked.
        open_deliveries = (
            await info.context.runtime.fanout.outbox.open_for([s.contact.id for s in page])
            if page and selects_deliveries(info)
            else {}
        )
        edges = [
            types.ContactEdge(cursor=encode_cursor(s.contact.id), node=convert.contact(s, open_deliveries))
            for s in page
        ]
        return types.ContactConnection(
            edges=edges,
            page_info=types.PageInfo(
                has_next_page=has_next,
                has_previous_page=after_id is not None,
                start_cursor=edges[0].cursor if edges else None,
                end_cursor=edges[-1].cursor if edges else None,
            ),
            count=store.count_contacts,
        )

    @strawberry.field(
        permission_classes=[CanRead],
        description=(
            "Dry run: each vendor's verdict on the input (VALID or INVALID with every rule it breaks). Calls no "
            "vendor. Input that breaks a universal rule gets those errors alone, the same for every vendor: a "
            "vendor's own rules are checked on a valid contact."
        ),
    )
    def validate_contact(
        self, info: Info[Context, None], input: types.ContactInput, vendors: types.VendorList = None
    ) -> list[types.VendorResult]:
        fanout = info.context.runtime.fanout
        parsed = parse_contact(convert.contact_data(input))
        if isinstance(parsed, list):
            results = fanout.invalid(parsed, _vendors(vendors)).results
        else:
            results = fanout.validate(parsed, _vendors(vendors))
        return [convert.vendor_result(r) for r in results]

    @strawberry.field(
        permission_classes=[CanAdmin], description="Outbox deliveries, newest first, optionally by status and vendor."
    )
    async def deliveries(
        self,
        info: Info[Context, None],
        status: types.DeliveryStatus | None = None,
        vendor: types.Vendor | None = None,
        contact_id: strawberry.ID | None = None,
        first: int | None = DEFAULT_PAGE,
        after: str | None = None,
    ) -> types.DeliveryConnection:
        first = DEFAULT_PAGE if first is None else first
        if not 0 <= first <= MAX_PAGE:
            raise bad_input(f"first: must be between 0 and {MAX_PAGE}", "first")
        before = _delivery_id(decode_cursor(after, _DELIVERY_PREFIX), "after") if after is not None else None
        outbox = info.context.runtime.fanout.outbox
        rows, has_next = await outbox.page(
            status=status,
            vendor=vendor,
            first=first,
            before_id=before,
            contact_id=None if contact_id is None else str(contact_id),
        )
        edges = [
            types.DeliveryEdge(cursor=encode_cursor(str(d.id), _DELIVERY_PREFIX), node=convert.delivery(d))
            for d in rows
        ]
        return types.DeliveryConnection(
            edges=edges,
            page_info=types.PageInfo(
                has_next_page=has_next,
                has_previous_page=before is not None,
                start_cursor=edges[0].cursor if edges else None,
                end_cursor=edges[-1].cursor if edges else None,
            ),
            total_count=await outbox.total(
                status=status, vendor=vendor, contact_id=None if contact_id is None else str(contact_id)
            ),
        )

    @strawberry.field(permission_classes=[CanRead], description="Configured vendors, capabilities, field coverage.")
    async def vendors(self, info: Info[Context, None]) -> list[types.VendorInfo]:
        out = []
        fanout = info.context.runtime.fanout
        for vendor, connector in info.context.runtime.connectors.items():
            caps = connector.capabilities
            out.append(
                types.VendorInfo(
                    vendor=vendor,
                    capabilities=types.VendorCapabilities(
                        create=caps.create,
                        update=caps.update,
                        delete=caps.delete,
                        read=caps.read,
                        native_upsert=caps.native_upsert,
                    ),
                    coverage=[
                        types.FieldCoverage(field=row.canonical, vendor_field=row.vendor_field)
                        for row in connector.coverage()
                    ],
                    circuit=fanout.breakers[vendor].state,
                    queued_deliveries=await fanout.outbox.total(status=DeliveryStatus.PENDING, vendor=vendor),
                    reachable=fanout.health[vendor].reachable,
                    last_success_at=fanout.health[vendor].last_success_at,
                    last_failure_at=fanout.health[vendor].last_failure_at,
                    last_failure_code=fanout.health[vendor].last_failure_code,
                )
            )
        return out


@strawberry.type
class Mutation:
    """Writes: each answers with one result per vendor; vendor failures are data, not GraphQL errors."""

    @strawberry.mutation(
        permission_classes=[CanWrite],
        description="Write one contact to every targeted vendor at once. `force` sends even unchanged contacts.",
    )
    async def upsert_contact(
        self,
        info: Info[Context, None],
        input: types.ContactInput,
        vendors: types.VendorList = None,
        force: bool = False,
        idempotency_key: Annotated[
            str | None,
            strawberry.argument(
                description="Repeats with this key and the same input get the first answer and call no vendor; "
                "the same key with another input is a CONFLICT error. The `Idempotency-Key` header does the same."
            ),
        ] = None,
    ) -> types.UpsertContactPayload:
        targets = _targets(info, vendors)
        key = _idempotency_key(info, idempotency_key)
        if key is None:
            wants = reads_back(info)
            answered = await _answer(info.context, await _upsert(info.context, input, targets, force, wants), wants)
        else:
            answered = await _keyed_upsert(info, key, input, targets, force, _key_source(idempotency_key))
        _audit_outcome(
            info, "upsertContact", str(input.id), answered[0].outcome, **({"idempotency_key": True} if key else {})
        )
        return await _payload(info.context, answered)

    @strawberry.mutation(
        permission_classes=[CanWrite],
        description=(
            "Write many contacts; each answers as `upsertContact` would, in input order, never null. An input "
            "refused on its own (its idempotency key CONFLICTs, or the token may not write where it would go) "
            "answers FAILED with every vendor SKIPPED and that error (CONFLICT, AUTH_FAILED); one that fails "
            "unexpectedly answers FAILED with every vendor UNAVAILABLE (VENDOR_ERROR); the others answer as usual. "
            "An input waits for an earlier one with the same id, so the later one wins. The `Idempotency-Key` "
            "header keys each input as `<header>:<field>:<index>`."
        ),
    )
    async def upsert_contacts(
        self,
        info: Info[Context, None],
        inputs: list[types.ContactInput],
        vendors: types.VendorList = None,
        force: bool = False,
    ) -> list[types.UpsertContactPayload]:
        most = info.context.runtime.config.server.max_batch_contacts
        if len(inputs) > most:
            raise bad_input(
                f"inputs: at most {most} contacts per upsertContacts (got {len(inputs)}); split the batch", "inputs"
            )
        targets = _targets(info, vendors)
        wants = reads_back(info)
        header = _idempotency_key(info, None)  # `<header>:<field>`, checked once for the whole batch
        slots = asyncio.Semaphore(BATCH_CONCURRENCY)

        async def one(
            index: int, value: types.ContactInput, before: asyncio.Future[Any] | None
        ) -> types.UpsertContactPayload:
            try:
                return await write(index, value, before)
            except GraphQLError as exc:  # this input's own refusal: its key CONFLICTs, or it is beyond the allow-list
                failed = _unanswered(info, value, targets, exc)
            except Exception:
                log.exception("upsertContacts: input %d (%r) failed", index, str(value.id))
                failed = _unanswered(info, value, targets, None)
            _audit_outcome(info, "upsertContacts", str(value.id), failed)
            return await _payload(info.context, (Answer(outcome=failed, contact=None), None))

        async def write(
            index: int, value: types.ContactInput, before: asyncio.Future[Any] | None
        ) -> types.UpsertContactPayload:
            if before is not None:
                # The same contact earlier in the batch: written first, whatever its outcome, so the later input is
                # an ordinary update after it (and wins), never queued behind it mid-flight.
                await asyncio.wait([before])
            async with slots:
                if header is None:
                    answered = await _answer(
                        info.context, await _upsert(info.context, value, targets, force, wants), wants
                    )
                else:
                    key = _derived_key(f"{header}:{index}")
                    answered = await _keyed_upsert(info, key, value, targets, force, _key_source(None))
                _audit_outcome(
                    info,
                    "upsertContacts",
                    str(value.id),
                    answered[0].outcome,
                    **({"idempotency_key": True} if header else {}),
                )
                return await _payload(info.context, answered)

        # Every input runs to its end before the answer: one input's failure is that input's payload (`_unanswered`),
        # never the whole batch's while the others go on unreported.
        runs: list[asyncio.Future[Any]] = []
        last: dict[str, asyncio.Future[Any]] = {}
        for i, v in enumerate(inputs):
            run = asyncio.ensure_future(one(i, v, last.get(str(v.id))))
            last[str(v.id)] = run
            runs.append(run)
        return list(await asyncio.gather(*runs))

    @strawberry.mutation(
        permission_classes=[CanWrite],
        description=(
            "Delete a contact at every targeted vendor that can delete; the others report SKIPPED. An id the "
            "gateway never stored is sent nowhere: every vendor reports SKIPPED (NOT_FOUND on id), status FAILED."
        ),
    )
    async def delete_contact(
        self, info: Info[Context, None], id: strawberry.ID, vendors: types.VendorList = None
    ) -> types.UpsertContactPayload:
        problems = field_errors_of_id(str(id))
        if problems:
            raise bad_input(f"id: {problems}", "id")
        outcome = await info.context.runtime.fanout.delete(str(id), _targets(info, vendors))
        _audit_outcome(info, "deleteContact", str(id), outcome)
        return await _payload(info.context, await _answer(info.context, (outcome, None)))

    @strawberry.mutation(
        permission_classes=[CanAdmin],
        description=(
            "Send a failed, cancelled or waiting delivery again now (the contact as stored now). Refused for a "
            "delivery being sent, and for one with a newer delivery of the same contact to the same vendor."
        ),
    )
    async def retry_delivery(self, info: Info[Context, None], id: strawberry.ID) -> types.Delivery:
        outbox = info.context.runtime.fanout.outbox
        found = await _operator_action(info, id, "retryDelivery", outbox.retry, "FAILED, CANCELLED or PENDING")
        info.context.runtime.fanout.wakeup.set()
        return found

    @strawberry.mutation(
        permission_classes=[CanAdmin],
        description="Stop a pending or failed delivery from being sent (again). Refused while it is being sent.",
    )
    async def cancel_delivery(self, info: Info[Context, None], id: strawberry.ID) -> types.Delivery:
        outbox = info.context.runtime.fanout.outbox
        return await _operator_action(info, id, "cancelDelivery", outbox.cancel, "PENDING or FAILED")


async def _operator_action(
    info: Info[Context, None],
    id: strawberry.ID,
    operation: str,
    action: Callable[[int], Awaitable[Delivery | str | None]],
    allowed: str,
) -> types.Delivery:
    """retryDelivery / cancelDelivery: within the token's vendor allow-list, audited, BAD_USER_INPUT when the
    delivery is missing, not in one of the `allowed` states, or refused (the outbox's reason)."""
    delivery_id = _delivery_id(id)
    existing = await info.context.runtime.fanout.outbox.get(delivery_id)
    if existing is not None:
        _allowed_vendor(info, existing.vendor)
    found = await action(delivery_id)
    _audit_delivery(info, operation, id, found if not isinstance(found, str) else None)
    if found is None:
        raise bad_input(f"id: no {allowed} delivery has this id", "id")
    if isinstance(found, str):
        raise bad_input(f"id: {found}", "id")
    return convert.delivery(found)


def _update(event: DeliveryEvent) -> types.DeliveryUpdate:
    return types.DeliveryUpdate(
        contact_id=strawberry.ID(event.contact_id),
        vendor=event.vendor,
        status=event.status,
        delivery_id=strawberry.ID(str(event.delivery_id)) if event.delivery_id is not None else None,
        attempts=event.attempts,
        error=event.error,
        at=event.at,
        next_attempt_at=event.next_attempt_at,
        remote_id=event.remote_id,
        snapshot=event.snapshot,
        missed=event.missed,
    )


@strawberry.type
class Subscription:
    """Live delivery status, over graphql-transport-ws (WebSocket) or SSE (POST with `Accept: text/event-stream`)."""

    @strawberry.subscription(
        permission_classes=[CanRead],
        description="Each vendor's delivery status for a contact: first where every vendor stands now (from the "
        "store), then each change as this process records it (write answers, QUEUED, background redeliveries). "
        "Per process: with several workers or hosts, changes made by another process are not seen live.",
    )
    async def delivery_updates(
        self, info: Info[Context, None], contact_id: strawberry.ID
    ) -> AsyncGenerator[types.DeliveryUpdate, None]:
        runtime = info.context.runtime
        key = str(contact_id)
        problems = field_errors_of_id(key)
        if problems:  # no contact can have it: a silent stream that never fires would hide the typo
            raise bad_input(f"contactId: {problems}", "contactId")
        try:
            feed = runtime.events.subscribe(key)  # before the snapshot read: no change can fall in between
        except TooManySubscribers as exc:
            raise GraphQLError(str(exc), extensions={"code": "RATE_LIMITED"}) from None
        with feed:
            links = await runtime.store.links(key)
            open_deliveries = await runtime.fanout.outbox.open_for([key])
            for event in current_state(key, links, open_deliveries):
                yield _update(event)
            async for event in feed:
                yield _update(event)


def _audit_delivery(info: Info[Context, None], operation: str, id: str, found: Delivery | None) -> None:
    principal = info.context.principal
    audit(
        "write",
        principal=principal.name if principal else None,
        operation=operation,
        delivery_id=str(id),
        contact_id=found.contact_id if found else None,
        vendors=[found.vendor.name] if found else [],
        status=found.status.value if found else "REFUSED",
    )


def _introspection_field(ignore: IgnoreContext) -> bool:
    # Introspection is allowed or refused as a whole (`server.introspection`); GraphiQL's own query is 13 deep.
    return ignore.field_name.startswith("__")


def _unexpected(error: GraphQLError) -> bool:
    """Mask errors nobody meant to show: an exception from inside a resolver that is not a GraphQL error (database,
    bug, anything unexpected), logged with a reference the answer carries.

    Request errors (syntax, validation, variables, limits) and the API's own errors (BAD_USER_INPUT, FORBIDDEN,
    CONFLICT, ...) keep their message and code.
    """
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
        return False  # graphql-core's request errors and the API's own (with their codes) are meant to be read
    reference = uuid.uuid4().hex[:12]
    log.error(
        "unexpected error in %s (reference %s)",
        ".".join(str(p) for p in error.path or []),
        reference,
        exc_info=(type(original), original, original.__traceback__),
    )
    error.extensions = {**(error.extensions or {}), "reference": reference}
    return True


#: Parsed documents by query text and parse options (strawberry's `ParserCache` function: graphql-core's `parse`
#: under an `lru_cache`), shared by every operation of the process.
_parse = functools.lru_cache(maxsize=512)(parse)
#: The rules strawberry's `validate_document` adds to an operation's.
_STRAWBERRY_RULES = (MaybeNullValidationRule, OneOfInputValidationRule)


class DocumentCache(SchemaExtension):
    """Each query text parsed once and each document validated once, then the federation rule on `_service`.

    One extension instead of strawberry's ParserCache and ValidationCache plus the `_service` guard: strawberry
    makes every extension afresh for each operation and wraps each of its hooks in a context manager, which cost
    more than the work of these three (bench/README.md).

    Parsing: graphql-core's `parse` under an `lru_cache` of 512 texts (with the operation's parse options: the token
    limit), as ParserCache does; a syntax error raises from the hook as it does from ParserCache's.

    Validation is keyed by the identity of the parsed document rather than its hash: graphql-core 3.3's syntax nodes
    are frozen dataclasses whose generated `__hash__` walks the whole tree on every call, and ValidationCache's
    `lru_cache` hashed the document on every operation (~9 us for the benchmark's write, more for a front end's
    larger queries). The parse cache hands back the same object for the same text, so the object identifies it;
    each entry holds its schema and document, so an id is never taken for another object's while the entry lives,
    and a hit checks both by identity. The rules are part of the key by value (a tuple of classes, cheap to hash).
    At most `maxsize` entries, least recently used first out. Only the event loop's thread validates, so no lock.

    Then `graph.auth.service_sdl_refusal` adds its refusal to the document's errors when the caller may not read the
    SDL (a validation error: the same answer shape as any invalid document, before execution).
    """

    def __init__(
        self, maxsize: int = 512, router_addresses: frozenset[str] = frozenset(), hide_suggestions: bool = False
    ) -> None:
        self.maxsize = maxsize
        self.router_addresses = router_addresses
        #: No "Did you mean ...?" in validation errors (`[server] introspection = false`: they would name the
        #: schema's fields, types and enum values to whoever guesses near them).
        self.hide_suggestions = hide_suggestions

    #: (id(schema), id(document), rules) -> (schema, document, errors); shared by every operation of the process.
    entries: ClassVar[OrderedDict[tuple[int, int, tuple[type[ASTValidationRule], ...]], tuple[Any, Any, Any]]] = (
        OrderedDict()
    )
    #: Operations validated (misses) and answered from an entry (hits), for tests and curiosity.
    hits: ClassVar[int] = 0
    misses: ClassVar[int] = 0

    def on_parse(self) -> Iterator[None]:
        execution = self.execution_context
        try:
            execution.graphql_document = _parse(execution.query, **execution.parse_options)
        except GraphQLError as error:  # a syntax error, or past the token limit
            error.extensions = {"code": "GRAPHQL_PARSE_FAILED", **(error.extensions or {})}
            raise
        if execution._provided_operation_name is None:  # the name the request gave (strawberry keeps it private)
            # strawberry runs the first named operation of a document that has several when no operationName picks
            # one; the spec (GetOperation) asks for an error, or a forgotten operationName could run a mutation.
            named = sum(isinstance(d, OperationDefinitionNode) for d in execution.graphql_document.definitions)
            if named > 1:
                raise OperationNameRequired
        yield

    def on_validate(self) -> Iterator[None]:
        execution = self.execution_context
        schema = execution.schema._schema
        document = execution.graphql_document
        assert document is not None  # on_parse set it, or raised
        rules = tuple(execution.validation_rules)
        key = (id(schema), id(document), rules)
        entries = DocumentCache.entries
        entry = entries.get(key)
        if entry is not None and entry[0] is schema and entry[1] is document:
            entries.move_to_end(key)
            DocumentCache.hits += 1
            errors = entry[2]
        else:
            DocumentCache.misses += 1
            # strawberry's `validate_document`, with graphql-core's `hide_suggestions` (strawberry does not pass it).
            errors = validate(schema, document, (*rules, *_STRAWBERRY_RULES), hide_suggestions=self.hide_suggestions)
            for error in errors:  # the code Apollo's servers and routers give an invalid document
                error.extensions = {"code": "GRAPHQL_VALIDATION_FAILED", **(error.extensions or {})}
            entries[key] = (schema, document, errors)
            while len(entries) > self.maxsize:
                entries.popitem(last=False)
        refusal = service_sdl_refusal(execution, self.router_addresses)
        execution.pre_execution_errors = errors if refusal is None else [*errors, refusal]
        yield


class OperationNameRequired(CannotGetOperationTypeError):
    """A document with several operations and no operationName: refused like an unknown operation name (HTTP 400,
    `BAD_REQUEST`), with graphql-core's words."""

    def __init__(self) -> None:
        super().__init__(None)

    def as_http_error_reason(self) -> str:
        return "Must provide operation name if query contains multiple operations."


def _entity(info: Info, index: int, representation: Any) -> Any:
    """One `_entities` representation resolved (an awaitable), or the error that is its answer."""
    at = f"representations[{index}]"
    if not isinstance(representation, dict):
        return bad_input(f'{at}: must be an object such as {{__typename: "Contact", id: ...}}', "representations")
    typename = representation.get("__typename")
    if typename != "Contact":
        return bad_input(f"{at}.__typename: this subgraph resolves Contact only, not {typename!r}", "representations")
    extra = sorted(set(representation) - {"__typename", "id"})
    if extra:
        return bad_input(f"{at}: a Contact is referenced by id alone, not {extra[0]!r}", "representations")
    id_ = representation.get("id")
    if isinstance(id_, bool) or not isinstance(id_, str | int):
        return bad_input(f"{at}.id: must be a contact id (a string)", "representations")
    return types.Contact.resolve_reference(info, strawberry.ID(str(id_)))


#: strawberry's own logger of operation errors (`StrawberryLogger`), kept so log filters and levels still apply.
_execution_log = logging.getLogger("strawberry.execution")


def _unquoted(message: str) -> str:
    """`message` up to its first quote: graphql-core and Python quote the values they refuse (`"x"`, `'x'`)."""
    cut = min((i for i in (message.find('"'), message.find("'")) if i >= 0), default=-1)
    return message if cut < 0 else message[:cut] + "…"


class GatewaySchema(strawberry.federation.Schema):
    """The federation schema with the token limit and the extra validation rules set on each operation's execution
    context when it is made, instead of by strawberry's MaxTokensLimiter and AddValidationRules extensions (which
    set the same two fields in an `on_operation` hook, at the price of two more extensions per operation). Its
    rules locate a scalar's refusal of a value written in the document (`graph/literals.py`)."""

    def __init__(
        self, *args: Any, max_tokens: int, validation_rules: Sequence[type[ASTValidationRule]], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.max_tokens = max_tokens
        #: Every operation's rules, made once: graphql-core's, with its rule for the values written in a document
        #: replaced by one that locates a scalar's refusal (`graph/literals.py`), then the extra rules.
        self.validation_rules = (*with_located_values(tuple(specified_rules)), *validation_rules)

    def entities_resolver(  # the annotations make the `_entities` field: strawberry's own
        self, info: Info, representations: list[FederationAny]
    ) -> list[FederationAny]:
        """Federation's `_entities`: behind the `contacts:read` scope, as `contact(id)` is, and each representation
        checked before it is resolved. A representation that is not a Contact reference answers null at its index
        with a BAD_USER_INPUT error naming `representations[i]` (strawberry's own resolver raised a KeyError or a
        TypeError for those, masked as INTERNAL, and an unknown `__typename` failed the whole batch)."""
        principal = info.context.principal
        if principal is None or READ not in principal.scopes:
            raise forbidden(f"this token lacks the {READ} scope")
        return [_entity(info, index, representation) for index, representation in enumerate(representations)]

    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        """Each error of an operation logged on `strawberry.execution`, as strawberry does, but without personal data
        unless `[logging] personal_data`: strawberry logs the error as printed, with the lines of the request around
        it (a syntax error in a mutation shows the names and e-mails near it) and the values graphql-core quotes in
        its messages (a variable's refused value, in single or double quotes). Without the setting the line has the
        code, the path, the location and the message up to its first quote (then `…`); an unexpected exception keeps
        its traceback."""
        if observe.personal_data:
            super().process_errors(errors, execution_context)
            return
        for error in errors:
            _execution_log.error(
                "%s%s%s: %s",
                (error.extensions or {}).get("code", "GRAPHQL_ERROR"),
                f" at {'.'.join(str(p) for p in error.path)}" if error.path else "",
                "".join(f" ({loc.line}:{loc.column})" for loc in error.locations or []),
                _unquoted(error.message),
                exc_info=error.original_error if not isinstance(error.original_error, GraphQLError) else None,
            )

    def _create_execution_context(self, *args: Any, **kwargs: Any) -> ExecutionContext:
        execution = super()._create_execution_context(*args, **kwargs)
        execution.parse_options["max_tokens"] = self.max_tokens
        execution.validation_rules = self.validation_rules
        return execution


class _MaskErrors(MaskErrors):
    """Strawberry's MaskErrors, keeping the log reference and the INTERNAL code on a masked error."""

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        masked = super().anonymise_error(error)
        masked.extensions = {"code": "INTERNAL", "reference": (error.extensions or {}).get("reference")}
        return masked

    def _process_result(self, result: object) -> None:
        # strawberry's, without its isinstance check against a runtime-checkable Protocol (an object with `errors`):
        # typing inspects the protocol on every call, ~30 us an operation here, more than the rest of the extension.
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = self._process_errors(errors)  # type: ignore[attr-defined]


def build_schema(server: ServerConfig | None = None) -> GatewaySchema:
    """The federation schema with the refusals `[server]` configures (depth, tokens, aliases, introspection, batching)
    and unexpected errors masked. Extensions are factories, not instances: a fresh one per operation."""
    server = server or ServerConfig()
    # The validation rules are built once, here: strawberry's limiter extensions build a new rule class per instance,
    # and a new class per operation would make every operation miss the validation cache (validation is most of an
    # operation's cost). GatewaySchema adds them to each operation's rules.
    rules: list[type[ASTValidationRule]] = [
        depth_rule(server.max_depth, _introspection_field),
        alias_rule(server.max_aliases),
    ]
    if not server.introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    extensions: list[Any] = [
        OperationObserver,
        functools.partial(
            DocumentCache,
            maxsize=512,
            router_addresses=frozenset(server.router_addresses),
            hide_suggestions=not server.introspection,
        ),
        functools.partial(_MaskErrors, should_mask_error=_unexpected),
    ]
    config = StrawberryConfig(
        batching_config={"max_operations": server.batch_max_operations} if server.batch_max_operations else None
    )
    built = GatewaySchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        types=[types.Contact],
        federation_version="2.9",
        extensions=extensions,
        config=config,
        execution_context_class=GatewayExecutionContext if server.introspection else QuietExecutionContext,
        max_tokens=server.max_tokens,
        validation_rules=rules,
    )
    # strawberry refuses to override a built-in scalar (`scalar_overrides`: "Redefinition of reserved type"), and
    # its `ID` is graphql-core's `GraphQLID` itself: that type's variable parser is replaced, so for the whole
    # process (the gateway's schema is the process's only one). Literals keep graphql-core's rule, which already
    # refuses `1.0` written in a document.
    id_type = built._schema.type_map["ID"]
    assert isinstance(id_type, GraphQLScalarType)
    id_type.coerce_input_value = id_type.parse_value = _parse_id  # type: ignore[method-assign]
    return built


def _parse_id(value: object) -> str:
    """`ID` from a variable: a string or an integer, as the GraphQL spec says. graphql-core also takes a whole
    float (JSON `1.0`, `1e3`, `12345678901234567.0`) and prints it as an integer: past 2**53 that is another number
    than the one sent (`12345678901234567.0` became the id `12345678901234568`, and a write landed on that
    contact), so a number with a fraction or an exponent is refused."""
    if isinstance(value, float):
        raise GraphQLError(
            f"ID takes a string or an integer, not a number with a decimal point or exponent (read as {value!r}): "
            "send the id as a string"
        )
    return coerce_id(value)


#: The schema with default limits and introspection on (what `strawberry export-schema` prints; the app builds its
#: own from the configuration).
schema = build_schema(ServerConfig(introspection=True))
