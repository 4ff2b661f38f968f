"""Query, Mutation and the federation schema (`strawberry export-schema graph.schema:schema`)."""

from __future__ import annotations

import asyncio
import base64
import binascii
from functools import partial

import strawberry
from graphql import GraphQLError
from strawberry.extensions import ParserCache, ValidationCache
from strawberry.types import Info

from graph import convert, types
from graph.auth import CanRead, CanWrite
from graph.context import Context
from resolvers.fanout import Outcome
from resolvers.model import parse_contact
from resolvers.results import Vendor

#: Page size when `first` is not given.
DEFAULT_PAGE = 20
#: Largest page `contacts(first:)` serves.
MAX_PAGE = 100
#: Contacts of one `upsertContacts` in flight at once (each fans out to every vendor).
BATCH_CONCURRENCY = 8
_CURSOR_PREFIX = "contact:"


def bad_input(message: str, argument: str) -> GraphQLError:
    """A request error naming the argument at fault."""
    return GraphQLError(message, extensions={"code": "BAD_USER_INPUT", "argument": argument})


def encode_cursor(contact_id: str) -> str:
    """An opaque cursor for a contact id."""
    return base64.urlsafe_b64encode((_CURSOR_PREFIX + contact_id).encode()).decode()


def decode_cursor(cursor: str) -> str:
    """The contact id behind a cursor; a foreign cursor is a BAD_USER_INPUT error naming `after`."""
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    if not text.startswith(_CURSOR_PREFIX):
        raise bad_input("after: not a cursor this API issued", "after")
    return text.removeprefix(_CURSOR_PREFIX)


def _vendors(vendors: list[Vendor] | None) -> list[Vendor] | None:
    if vendors is not None and not vendors:
        raise bad_input("vendors: name at least one vendor, or omit the argument for all of them", "vendors")
    return vendors


async def _upsert(ctx: Context, value: types.ContactInput, vendors: list[Vendor] | None, force: bool) -> Outcome:
    parsed = parse_contact(convert.contact_data(value))
    if isinstance(parsed, list):
        return ctx.runtime.fanout.invalid(parsed, vendors)
    return await ctx.runtime.fanout.upsert(parsed, vendors, force=force)


async def _payload(ctx: Context, outcome: Outcome) -> types.UpsertContactPayload:
    stored = await ctx.runtime.store.get_contact(outcome.contact_id) if outcome.contact_id else None
    return convert.payload(outcome, stored)


@strawberry.type
class Query:
    """Reads, and the dry-run validation front ends call as the user types."""

    @strawberry.field(permission_classes=[CanRead], description="One contact by the caller's id.")
    async def contact(self, info: Info[Context, None], id: strawberry.ID) -> types.Contact | None:
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
        edges = [types.ContactEdge(cursor=encode_cursor(s.contact.id), node=convert.contact(s)) for s in page]
        return types.ContactConnection(
            edges=edges,
            page_info=types.PageInfo(
                has_next_page=has_next,
                has_previous_page=after_id is not None,
                start_cursor=edges[0].cursor if edges else None,
                end_cursor=edges[-1].cursor if edges else None,
            ),
            total_count=await store.count_contacts(),
        )

    @strawberry.field(
        permission_classes=[CanRead],
        description="Dry run: each vendor's verdict on the input (VALID or INVALID with every rule). Calls no vendor.",
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

    @strawberry.field(permission_classes=[CanRead], description="Configured vendors, capabilities, field coverage.")
    def vendors(self, info: Info[Context, None]) -> list[types.VendorInfo]:
        out = []
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
    ) -> types.UpsertContactPayload:
        outcome = await _upsert(info.context, input, _vendors(vendors), force)
        return await _payload(info.context, outcome)

    @strawberry.mutation(
        permission_classes=[CanWrite],
        description="Write many contacts; each answers as `upsertContact` would, in input order.",
    )
    async def upsert_contacts(
        self,
        info: Info[Context, None],
        inputs: list[types.ContactInput],
        vendors: types.VendorList = None,
        force: bool = False,
    ) -> list[types.UpsertContactPayload]:
        targets = _vendors(vendors)
        slots = asyncio.Semaphore(BATCH_CONCURRENCY)

        async def one(value: types.ContactInput) -> types.UpsertContactPayload:
            async with slots:
                return await _payload(info.context, await _upsert(info.context, value, targets, force))

        return list(await asyncio.gather(*(one(v) for v in inputs)))

    @strawberry.mutation(
        permission_classes=[CanWrite],
        description="Delete a contact at every targeted vendor that can delete; the others report SKIPPED.",
    )
    async def delete_contact(
        self, info: Info[Context, None], id: strawberry.ID, vendors: types.VendorList = None
    ) -> types.UpsertContactPayload:
        outcome = await info.context.runtime.fanout.delete(str(id), _vendors(vendors))
        return await _payload(info.context, outcome)


schema = strawberry.federation.Schema(
    query=Query,
    mutation=Mutation,
    types=[types.Contact],
    federation_version="2.9",
    # Factories, not instances: a fresh extension per operation, the LRU caches shared at module level.
    extensions=[partial(ParserCache, maxsize=512), partial(ValidationCache, maxsize=512)],
)
