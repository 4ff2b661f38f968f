"""The initial schema: contacts, vendor links, the delivery outbox and idempotency keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

A database created before migrations existed (by `metadata.create_all`) already holds some or all of these tables:
they are adopted as they are, and only what is missing is created (tables, their indexes, and `contacts.version`,
which the tables made before the outbox lack).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _contacts() -> list[sa.Column[Any]]:
    return [
        sa.Column("id", sa.String(50), primary_key=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False, server_default="1"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def _vendor_links() -> list[sa.Column[Any]]:
    return [
        sa.Column("contact_id", sa.String(50), primary_key=True),
        sa.Column("vendor", sa.String(20), primary_key=True),
        sa.Column("remote_id", sa.String(255)),
        sa.Column("hash", sa.String(64)),
        sa.Column("payload", sa.Text),
        sa.Column("last_status", sa.String(20)),
        sa.Column("last_error", sa.Text),
        sa.Column("synced_at", sa.DateTime(timezone=True)),
        sa.Column("deleted", sa.Boolean, nullable=False),
    ]


def _deliveries() -> list[sa.Column[Any]]:
    return [
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("contact_id", sa.String(50), nullable=False),
        sa.Column("vendor", sa.String(20), nullable=False),
        sa.Column("operation", sa.String(10), nullable=False),
        sa.Column("contact_version", sa.Integer, nullable=False),
        sa.Column("force", sa.Boolean, nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lease_owner", sa.String(64)),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("result_status", sa.String(20)),
        sa.Column("last_error", sa.Text),
        sa.Column("last_http_status", sa.Integer),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def _idempotency_keys() -> list[sa.Column[Any]]:
    return [
        sa.Column("principal", sa.String(100), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("response", sa.Text),
        sa.Column("lease_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    ]


TABLES = {
    "contacts": _contacts,
    "vendor_links": _vendor_links,
    "deliveries": _deliveries,
    "idempotency_keys": _idempotency_keys,
}

#: Index name -> (table, columns).
INDEXES = {
    "ix_deliveries_due": ("deliveries", ["status", "next_attempt_at"]),
    "ix_deliveries_contact_vendor": ("deliveries", ["contact_id", "vendor"]),
    "ix_idempotency_expires": ("idempotency_keys", ["expires_at"]),
}


def upgrade() -> None:
    if op.get_context().as_sql:
        # Offline (`--sql`): nothing to inspect, the script is for an empty database.
        for name, columns in TABLES.items():
            op.create_table(name, *columns())
        for index, (table, index_columns) in INDEXES.items():
            op.create_index(index, table, index_columns)
        return
    inspector = sa.inspect(op.get_bind())
    existing = set(inspector.get_table_names())
    for name, columns in TABLES.items():
        if name not in existing:
            op.create_table(name, *columns())
            continue
        have = {column["name"] for column in inspector.get_columns(name)}
        for column in columns():
            if column.name not in have:
                # Only `contacts.version` can be missing (it came with the outbox); it has a server default.
                op.add_column(name, column)
    have_indexes = {index["name"] for table in existing & TABLES.keys() for index in inspector.get_indexes(table)}
    for index, (table, index_columns) in INDEXES.items():
        if index not in have_indexes:
            op.create_index(index, table, index_columns)


def downgrade() -> None:
    for index, (table, _) in INDEXES.items():
        op.drop_index(index, table_name=table)
    for name in reversed(TABLES):
        op.drop_table(name)
