"""A link remembers which delivery's outcome it recorded (`vendor_links.delivery_id`).

A request whose sender stalled past its deliveries' lease (the event loop blocked, a lock waited on) recorded its
vendors' answers late: by then a newer write of the contact had been sent and recorded, and the late completion
wrote the older payload over it, so a later write equal to that older payload answered UNCHANGED while the vendor
held the newer one. Delivery ids grow with each accepted write, so a link update carrying an older delivery than
the one whose success the link recorded now changes nothing (early claims included); a recorded delivery that no
longer exists (an operator purged the outbox, and SQLite may reuse the ids) holds nothing back.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A database made by `metadata.create_all` (adopted by 0001, see the package docstring) has the column already;
    # offline (`--sql`) there is no database to look at, and the script adds it.
    offline = op.get_context().as_sql
    if offline or "delivery_id" not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("vendor_links")}:
        op.add_column("vendor_links", sa.Column("delivery_id", sa.BigInteger().with_variant(sa.Integer, "sqlite")))


def downgrade() -> None:
    with op.batch_alter_table("vendor_links") as batch:
        batch.drop_column("delivery_id")
