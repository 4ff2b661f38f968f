"""`schema.graphql` is generated, never hand-kept: this fails when it drifts from the code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from graph.schema import schema

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


#: The object types DESIGN.md's contract spells out field by field (`../shared/DESIGN.md`, copied here so the test
#: runs without the shared folder): each field's type must be exactly the one it names.
DESIGN_TYPES = """
type ContactDetail { kind: ContactDetailKind!  value: String!  label: String  preferred: Boolean! }
type Address { lines: [String!]!  city: String  region: String  postCode: String  country: String
               latitude: Float  longitude: Float }
type Location { ref: String!  preferred: Boolean!  startDate: Date  endDate: Date  usageTypeId: Int }
type FieldError { field: String!  vendorField: String  code: String!  message: String!  vendorCode: String }
type VendorResult { vendor: Vendor!  status: VendorStatus!  remoteId: String  errors: [FieldError!]!
                    warnings: [String!]!  httpStatus: Int  attempts: Int!  durationMs: Float! }
type UpsertContactPayload { status: UpsertStatus!  contact: Contact  results: [VendorResult!]! }
"""


def test_contract_types_have_the_field_types_design_names() -> None:
    """Names are not all of the contract: `FieldError.code` was an enum where DESIGN.md fixes `String!`."""
    built = schema._schema
    checked = 0
    for name, body in re.findall(r"type (\w+) \{([^}]*)\}", DESIGN_TYPES):
        graphql_type = built.get_type(name)
        assert graphql_type is not None, name
        for field, type_ in re.findall(r"(\w+): ([\w!\[\]]+)", body):
            assert str(graphql_type.fields[field].type) == type_, f"{name}.{field}"  # type: ignore[union-attr]
            checked += 1
    assert checked == 32
