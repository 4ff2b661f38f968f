"""The GraphQL face of the contract (DESIGN.md names): output types, inputs and enums. No vendor wire formats here."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated

import strawberry
from strawberry.types import Info

from graph.auth import CanRead
from graph.inputs import compiled
from resolvers import outbox, results
from resolvers.breaker import BreakerState
from resolvers.model import DetailKind

if TYPE_CHECKING:
    from graph.context import Context

# The engine's enums are the GraphQL enums: registered with strawberry once, used under the same names.
strawberry.enum(results.Vendor, description="A vendor backend the gateway writes to.")
strawberry.enum(results.VendorStatus, description="What happened to one contact at one vendor.")
strawberry.enum(results.UpsertStatus, description="The overall outcome across every targeted vendor.")
strawberry.enum(DetailKind, name="ContactDetailKind", description="What kind of contact detail.")
Vendor = results.Vendor
VendorStatus = results.VendorStatus
UpsertStatus = results.UpsertStatus
ContactDetailKind = DetailKind
ErrorCode = results.ErrorCode


@strawberry.type(description="A phone number, e-mail address, web address or other way to reach the contact.")
class ContactDetail:
    kind: ContactDetailKind
    value: str
    label: str | None
    preferred: bool


@strawberry.type(description="A postal address.")
class Address:
    lines: list[str]
    city: str | None
    region: str | None
    post_code: str | None
    country: str | None = strawberry.field(description="ISO 3166-1 alpha-2 code.")
    latitude: float | None
    longitude: float | None


@strawberry.type(description="A site the contact is associated with.")
class Location:
    ref: str
    preferred: bool
    start_date: date | None
    end_date: date | None
    usage_type_id: int | None


@strawberry.type(description="Relay page information.")
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


strawberry.enum(outbox.DeliveryStatus, description="Where an outbox delivery stands.")
strawberry.enum(outbox.Operation, name="DeliveryOperation", description="What a delivery does at the vendor.")
DeliveryStatus = outbox.DeliveryStatus
DeliveryOperation = outbox.Operation


@strawberry.type(description="One write on its way to one vendor (the durable outbox).")
class Delivery:
    id: strawberry.ID
    contact_id: strawberry.ID
    vendor: Vendor
    operation: DeliveryOperation
    status: DeliveryStatus
    attempts: int = strawberry.field(description="Calls made so far, over every try.")
    next_attempt_at: datetime = strawberry.field(description="When a PENDING delivery is tried next.")
    expires_at: datetime = strawberry.field(description="A delivery still PENDING then becomes FAILED.")
    last_status: VendorStatus | None = strawberry.field(description="The vendor's answer to the last try.")
    last_error: str | None
    last_http_status: int | None
    created_at: datetime
    updated_at: datetime


@strawberry.type(description="A delivery in a page of deliveries.")
class DeliveryEdge:
    cursor: str
    node: Delivery


@strawberry.type(description="A page of deliveries, newest first.")
class DeliveryConnection:
    edges: list[DeliveryEdge]
    page_info: PageInfo
    total_count: int


@strawberry.type(description="What the gateway knows of the contact at one vendor (the cross-reference).")
class VendorLink:
    vendor: Vendor
    remote_id: str | None = strawberry.field(description="The vendor's own id for the contact.")
    status: VendorStatus | None = strawberry.field(
        description="The outcome of the last operation at this vendor (INVALID: the last write broke its rules and "
        "was not sent, so the vendor still holds what it last accepted)."
    )
    last_error: str | None = strawberry.field(description="Error codes of the last operation, when it failed.")
    synced_at: datetime | None = strawberry.field(description="When the last operation at this vendor ended.")
    deleted: bool = strawberry.field(description="The contact was deleted at this vendor.")
    pending_deliveries: list[Delivery] = strawberry.field(
        description="Writes of this contact queued for this vendor (PENDING), newest first."
    )
    failed_deliveries: list[Delivery] = strawberry.field(
        description="Writes of this contact this vendor never took (FAILED), newest first."
    )


@strawberry.federation.type(keys=["id"], description="A contact, as last accepted by the gateway.")
class Contact:
    id: strawberry.ID = strawberry.field(description="The caller's own stable reference.")
    title: str | None
    salutation: str | None
    first_name: str | None
    middle_name: str | None
    last_name: str | None
    display_name: str | None
    job_title: str | None
    department: str | None
    organisation: str | None
    birth_date: date | None
    notes: str | None
    considerations: str | None
    details: list[ContactDetail]
    address: Address | None
    locations: list[Location]
    vendor_links: list[VendorLink] = strawberry.field(description="Per vendor: remote id, last status, last sync.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    async def resolve_reference(cls, info: Info[Context, None], id: strawberry.ID) -> Contact | None:
        """Federation entity resolution, batched per request through a DataLoader."""
        return await info.context.contact_loader.load(str(id))


@strawberry.type(description="One violated rule or vendor error.")
class FieldError:
    field: str = strawberry.field(
        description="The canonical input path, such as `details[1].value`; empty: the whole contact."
    )
    vendor_field: str | None = strawberry.field(description="The vendor's own name for the field, such as `contact2`.")
    code: str = strawberry.field(
        description=("One of the documented codes: " + ", ".join(c.value for c in ErrorCode) + ".")
    )
    message: str
    vendor_code: str | None = strawberry.field(description="The vendor's own error code or message key.")


@strawberry.type(description="The outcome of one operation at one vendor.")
class VendorResult:
    vendor: Vendor
    status: VendorStatus
    remote_id: str | None
    errors: list[FieldError]
    warnings: list[str] = strawberry.field(description="What the vendor cannot hold and was not sent.")
    http_status: int | None
    attempts: int
    duration_ms: float
    matched_by: str | None = strawberry.field(
        description="How an existing vendor record was adopted when the gateway had no cross-reference for it."
    )
    delivery_id: strawberry.ID | None = strawberry.field(
        description="The outbox delivery of this write (a QUEUED result is redelivered under it)."
    )


@strawberry.type(
    description="One vendor's delivery status for a contact (`deliveryUpdates`): first the current state of each "
    "vendor (`snapshot: true`), then each change as it happens in the process the subscriber is connected to."
)
class DeliveryUpdate:
    contact_id: strawberry.ID
    vendor: Vendor
    status: VendorStatus = strawberry.field(
        description="QUEUED: waiting for a background redelivery; otherwise the vendor's answer (CREATED, UPDATED, "
        "UNCHANGED, DELETED, REJECTED, UNAVAILABLE, ...)."
    )
    delivery_id: strawberry.ID | None = strawberry.field(
        description="The outbox delivery that carries the write: null for UNCHANGED (nothing was sent), and in a "
        "snapshot of a vendor whose last write succeeded (a snapshot is read from the vendor's cross-reference; a "
        "QUEUED or failed one carries its delivery's id)."
    )
    attempts: int = strawberry.field(description="Calls made to the vendor for this delivery so far.")
    error: str | None = strawberry.field(description="Error codes and the first message, when it failed.")
    at: datetime = strawberry.field(description="When this status was recorded (UTC).")
    next_attempt_at: datetime | None = strawberry.field(description="For QUEUED: when the outbox tries again.")
    remote_id: str | None = strawberry.field(description="The vendor's own id for the contact, once it has one.")
    snapshot: bool = strawberry.field(
        description="True: the state when the subscription started (read from the store); false: a change."
    )
    missed: int = strawberry.field(
        description="Updates dropped just before this one because the subscriber read too slowly; when above 0, "
        "re-read `contact { vendorLinks }` or subscribe again."
    )


@strawberry.type(description="The answer to a write: overall status, the stored contact, one result per vendor.")
class UpsertContactPayload:
    status: UpsertStatus
    contact: Contact | None = strawberry.field(
        permission_classes=[CanRead],
        description="The contact as stored after the write (null when it is not stored). Needs the "
        "`contacts:read` scope, as `contact(id)` does: without it, null with a FORBIDDEN error at this path.",
    )
    results: list[VendorResult]


@strawberry.type(description="What a vendor's API lets the gateway do.")
class VendorCapabilities:
    create: bool
    update: bool
    delete: bool
    read: bool
    native_upsert: bool


@strawberry.type(description="Where one canonical field goes at a vendor.")
class FieldCoverage:
    field: str = strawberry.field(description="Canonical field, such as `details[].value`.")
    vendor_field: str | None = strawberry.field(description="The vendor's field(s); null: not supported.")


strawberry.enum(BreakerState, name="CircuitState", description="A vendor's circuit breaker in this process.")
CircuitState = BreakerState


@strawberry.type(description="A configured vendor, what it can do and which fields it holds.")
class VendorInfo:
    vendor: Vendor
    capabilities: VendorCapabilities
    coverage: list[FieldCoverage]
    circuit: CircuitState = strawberry.field(
        description="CLOSED: calls flow; OPEN: calls paused after repeated failures; HALF_OPEN: one probe decides."
    )
    queued_deliveries: int = strawberry.field(description="Writes waiting in the outbox for this vendor (PENDING).")
    reachable: bool | None = strawberry.field(
        description="Whether the vendor answered this process's last call to it (null: no call yet)."
    )
    last_success_at: datetime | None = strawberry.field(description="This process's last successful call.")
    last_failure_at: datetime | None = strawberry.field(description="This process's last failed call.")
    last_failure_code: str | None = strawberry.field(
        description="The error code of that failure (VENDOR_ERROR, TIMEOUT, AUTH_FAILED, RATE_LIMITED, ...)."
    )


@strawberry.type(description="A contact in a page of contacts.")
class ContactEdge:
    cursor: str
    node: Contact


@strawberry.type(description="A page of contacts, ordered by id (Relay cursor connection).")
class ContactConnection:
    edges: list[ContactEdge]
    page_info: PageInfo
    #: Counts the stored contacts; called only when `totalCount` is selected (a count scans the table).
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(description="How many contacts the gateway holds.")
    async def total_count(self) -> int:
        return await self.count()


# -- inputs ---------------------------------------------------------------------------------------------------------


@strawberry.input(description="A contact detail.")
class ContactDetailInput:
    kind: ContactDetailKind
    value: str
    label: str | None = None
    preferred: bool = False


@strawberry.input(description="A postal address.")
class AddressInput:
    lines: list[str] = strawberry.field(default_factory=list)
    city: str | None = None
    region: str | None = None
    post_code: str | None = None
    country: str | None = strawberry.field(default=None, description="ISO 3166-1 alpha-2 code, such as GB.")
    latitude: float | None = None
    longitude: float | None = None


@strawberry.input(description="A site the contact is associated with.")
class LocationInput:
    ref: str
    preferred: bool = False
    start_date: date | None = None
    end_date: date | None = None
    usage_type_id: int | None = None


@strawberry.input(description="Oneserve overrides.")
class OneserveOptionsInput:
    client_ref: str | None = strawberry.field(
        default=None,
        description=(
            "Overrides the configured client_ref. Part of Oneserve's key: a changed clientRef writes a new record "
            "under that client (CREATED, with a warning); the old one stays."
        ),
    )


@strawberry.input(description="Eros overrides.")
class ErosOptionsInput:
    contact_type_id: str | None = strawberry.field(default=None, description="ContactType GUID.")
    role_ids: list[str] | None = strawberry.field(default=None, description="ContactRoles RoleId GUIDs.")


@strawberry.input(description="Jim2 overrides.")
class Jim2OptionsInput:
    card_no: str | None = strawberry.field(
        default=None,
        description=(
            "The card file to write to (digits). A changed card writes a new record on that card (CREATED, with a "
            "warning); the old one stays."
        ),
    )


@strawberry.input(description="SuperOffice overrides.")
class SuperOfficeOptionsInput:
    category_id: int | None = strawberry.field(default=None, description="The contact's Category list item id.")
    business_id: int | None = strawberry.field(default=None, description="The contact's Business list item id.")


@strawberry.input(description="Valomnia overrides.")
class ValomniaOptionsInput:
    customer_id: str | None = strawberry.field(default=None, description="Overrides the configured customer_id.")
    image_file_name: str | None = strawberry.field(
        default=None, description="The photo's file name (jpg, jpeg, gif, png or bmp); goes with imageBase64."
    )
    image_base64: str | None = strawberry.field(
        default=None, description="The photo, base64-encoded, at most 2,000,000 bytes decoded; sent as multipart."
    )


@strawberry.input(description="Per-vendor overrides of configured defaults.")
class VendorOptionsInput:
    oneserve: OneserveOptionsInput | None = None
    eros: ErosOptionsInput | None = None
    jim2: Jim2OptionsInput | None = None
    superoffice: SuperOfficeOptionsInput | None = None
    valomnia: ValomniaOptionsInput | None = None


@compiled
@strawberry.input(description="A contact to write. `id` is the caller's own stable reference (1-50 characters).")
class ContactInput:
    id: strawberry.ID
    title: str | None = None
    salutation: str | None = None
    first_name: str | None = None
    middle_name: str | None = None
    last_name: str | None = None
    display_name: str | None = None
    job_title: str | None = None
    department: str | None = None
    organisation: str | None = None
    birth_date: date | None = None
    notes: str | None = None
    considerations: str | None = None
    details: list[ContactDetailInput] = strawberry.field(default_factory=list)
    address: AddressInput | None = None
    locations: list[LocationInput] = strawberry.field(default_factory=list)
    vendor_options: VendorOptionsInput | None = None


VendorList = Annotated[
    list[Vendor] | None,
    strawberry.argument(description="The vendors to address; omitted: every configured vendor."),
]
