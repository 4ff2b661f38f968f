"""`schema.graphql` is generated, never hand-kept: this fails when it drifts from the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_schema_file_matches_the_code() -> None:
    exported = subprocess.run(
        [sys.executable, "-m", "strawberry", "export-schema", "graph.schema:schema"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    committed = (ROOT / "schema.graphql").read_text()
    assert exported.rstrip() == committed.rstrip(), (
        "schema.graphql is stale: run `uv run strawberry export-schema graph.schema:schema --output schema.graphql`"
    )


def test_contract_names_are_present() -> None:
    sdl = (ROOT / "schema.graphql").read_text()
    for name in [
        'type Contact @key(fields: "id")',
        "type ContactDetail",
        "type Address",
        "type Location",
        "type VendorResult",
        "type FieldError",
        "type UpsertContactPayload",
        "enum Vendor",
        "enum VendorStatus",
        "enum UpsertStatus",
        "upsertContact(",
        "upsertContacts(",
        "deleteContact(",
        "validateContact(",
        "contact(id: ID!)",
        "contacts(first: Int = 20, after: String = null): ContactConnection!",
        "vendors: [VendorInfo!]!",
        "federation/v2.9",
    ]:
        assert name in sdl, name
