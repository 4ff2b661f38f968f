"""Deliveries remember when a create they sent may have made a record nothing can find (`uncertain`).

A create whose answer was lost (or whose sender stopped mid-call) at a vendor where nothing can look the record up
again is FAILED for an operator. A later write of the same contact made a new delivery that knew nothing of it and
created again: two records. The flag is set on such a delivery (an ambiguous outcome, or an interrupted one
superseded or expired), a later create of the pair is held while any older delivery carries it, and an operator's
`retryDelivery` clears it for the pair (the operator has checked the vendor).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A database made by `metadata.create_all` (adopted by 0001, see the package docstring) has the column already;
    # offline (`--sql`) there is no database to look at, and the script adds it.
    offline = op.get_context().as_sql
    if offline or "uncertain" not in {c["name"] for c in sa.inspect(op.get_bind()).get_columns("deliveries")}:
        op.add_column("deliveries", sa.Column("uncertain", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("uncertain")
