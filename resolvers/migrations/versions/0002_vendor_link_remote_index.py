"""Find a vendor link by the vendor's own id (adoption must not take a record another contact owns).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # if_not_exists: a database made by `metadata.create_all` before migrations existed may have it already.
    op.create_index("ix_vendor_links_remote", "vendor_links", ["vendor", "remote_id"], if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_vendor_links_remote", table_name="vendor_links")
