"""The one place GraphQL inputs become canonical data, and canonical data and results become GraphQL types."""

from __future__ import annotations

import dataclasses
from typing import Any

import strawberry
from pydantic.alias_generators import to_camel

from graph import types
from resolvers import outbox, results
from resolvers.fanout import Outcome
from resolvers.model import Contact as CanonicalContact
from resolvers.store import StoredContact
from resolvers.vendors.base import CrossReference

#: Open deliveries by (contact id, vendor), as `Outbox.open_for` answers.
OpenDeliveries = dict[tuple[str, results.Vendor], list[outbox.Delivery]]


def _plain(value: Any) -> Any:
    """A strawberry input as plain data: dataclasses to dicts (snake_case keys), None fields left out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(v) for f in dataclasses.fields(value) if (v := getattr(value, f.name)) is not None}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if hasattr(value, "value") and isinstance(getattr(value, "name", None), str):  # an Enum member
        return value.value
    return value


def contact_data(value: types.ContactInput) -> dict[str, Any]:
    """A `ContactInput` as the canonical model's input; vendor options keep the GraphQL (camelCase) names."""
    data: dict[str, Any] = _plain(value)
    data["id"] = str(value.id)
    options = data.pop("vendor_options", None) or {}
    data["vendor_options"] = {
        vendor: {to_camel(k): v for k, v in opts.items()} for vendor, opts in options.items() if opts
    }
    return data


def contact(stored: StoredContact, open_deliveries: OpenDeliveries | None = None) -> types.Contact:
    """A stored contact as the GraphQL `Contact`, with its open (pending, failed) deliveries by vendor."""
    c: CanonicalContact = stored.contact
    return types.Contact(
        id=strawberry.ID(c.id),
        title=c.title,
        salutation=c.salutation,
        first_name=c.first_name,
        middle_name=c.middle_name,
        last_name=c.last_name,
        display_name=c.display_name,
        job_title=c.job_title,
        department=c.department,
        organisation=c.organisation,
        birth_date=c.birth_date,
        notes=c.notes,
        considerations=c.considerations,
        details=[
            types.ContactDetail(kind=d.kind, value=d.value, label=d.label, preferred=d.preferred) for d in c.details
        ],
        address=None
        if c.address is None
        else types.Address(
            lines=list(c.address.lines),
            city=c.address.city,
            region=c.address.region,
            post_code=c.address.post_code,
            country=c.address.country,
            latitude=c.address.latitude,
            longitude=c.address.longitude,
        ),
        locations=[
            types.Location(
                ref=loc.ref,
                preferred=loc.preferred,
                start_date=loc.start_date,
                end_date=loc.end_date,
                usage_type_id=loc.usage_type_id,
            )
            for loc in c.locations
        ],
        vendor_links=[vendor_link(link, (open_deliveries or {}).get((c.id, link.vendor), [])) for link in stored.links],
        created_at=stored.created_at,
        updated_at=stored.updated_at,
    )


def vendor_link(link: CrossReference, open_deliveries: list[outbox.Delivery]) -> types.VendorLink:
    """A cross-reference as the GraphQL `VendorLink`."""
    return types.VendorLink(
        vendor=link.vendor,
        remote_id=link.remote_id,
        status=link.last_status,
        last_error=link.last_error,
        synced_at=link.synced_at,
        deleted=link.deleted,
        pending_deliveries=[delivery(d) for d in open_deliveries if d.status is outbox.DeliveryStatus.PENDING],
        failed_deliveries=[delivery(d) for d in open_deliveries if d.status is outbox.DeliveryStatus.FAILED],
    )


def delivery(d: outbox.Delivery) -> types.Delivery:
    """An outbox row as the GraphQL `Delivery`."""
    return types.Delivery(
        id=strawberry.ID(str(d.id)),
        contact_id=strawberry.ID(d.contact_id),
        vendor=d.vendor,
        operation=d.operation,
        status=d.status,
        attempts=d.attempts,
        next_attempt_at=d.next_attempt_at,
        expires_at=d.expires_at,
        last_status=d.result_status,
        last_error=d.last_error,
        last_http_status=d.last_http_status,
        created_at=d.created_at,
        updated_at=d.updated_at,
    )


def field_error(error: results.FieldError) -> types.FieldError:
    """A canonical FieldError as the GraphQL type."""
    return types.FieldError(
        field=error.field,
        vendor_field=error.vendor_field,
        code=error.code.value,
        message=error.message,
        vendor_code=error.vendor_code,
    )


def vendor_result(result: results.VendorResult) -> types.VendorResult:
    """A VendorResult as the GraphQL type."""
    return types.VendorResult(
        vendor=result.vendor,
        status=result.status,
        remote_id=result.remote_id,
        errors=[field_error(e) for e in result.errors],
        warnings=list(result.warnings),
        http_status=result.http_status,
        attempts=result.attempts,
        duration_ms=result.duration_ms,
        matched_by=result.matched_by,
        delivery_id=strawberry.ID(str(result.delivery_id)) if result.delivery_id is not None else None,
    )


def payload(
    outcome: Outcome, stored: StoredContact | None, open_deliveries: OpenDeliveries | None = None
) -> types.UpsertContactPayload:
    """An engine outcome (and the contact as now stored) as the mutation payload."""
    return types.UpsertContactPayload(
        status=outcome.status,
        contact=contact(stored, open_deliveries) if stored is not None else None,
        results=[vendor_result(r) for r in outcome.results],
    )
