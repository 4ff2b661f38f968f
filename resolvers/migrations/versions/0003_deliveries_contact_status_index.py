"""The outbox's per-contact statements find a contact's rows by an index SQLite prefers to the due index.

A write asks which of its contact's deliveries are pending and leased, and supersedes the others
(`contact_id = ? AND vendor = ? AND status = 'PENDING'`). With the old (contact_id, vendor) index SQLite, which
has no statistics, took `ix_deliveries_due` (status, next_attempt_at) for these statements: one equality term each
way, and it picked the wrong one. That scanned every pending delivery, so while a vendor was down each write cost
time in proportion to the backlog (3.5 ms a statement at 14,000 pending). (contact_id, status, vendor) gives these
statements two and three equality terms, and the reads by contact keep their prefix.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_deliveries_contact_status_vendor", "deliveries", ["contact_id", "status", "vendor"], if_not_exists=True
    )
    op.drop_index("ix_deliveries_contact_vendor", table_name="deliveries", if_exists=True)


def downgrade() -> None:
    op.create_index("ix_deliveries_contact_vendor", "deliveries", ["contact_id", "vendor"], if_not_exists=True)
    op.drop_index("ix_deliveries_contact_status_vendor", table_name="deliveries")
