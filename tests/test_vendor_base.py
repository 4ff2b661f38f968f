"""The vendor base: pre-flight validation, error paths, 'not sent' warnings, coverage and nesting."""

from __future__ import annotations

from typing import Any

import pytest
from multidict import CIMultiDict
from pydantic import BaseModel, ConfigDict, Field

from resolvers.errors import VendorProtocolError
from resolvers.model import Contact
from resolvers.results import ErrorCode, Vendor
from resolvers.transport import VendorResponse
from resolvers.vendors.base import (
    Capabilities,
    Connector,
    CrossReference,
    Delivered,
    Mapped,
    Prepared,
    VendorSettings,
    blank_removed,
    nest,
)


class ToyWire(BaseModel):
    model_config = ConfigDict(extra="forbid")
    Name: str = Field(min_length=1, max_length=5)
    Phones: list[str] = Field(default_factory=list, max_length=1)
    Site: dict[str, str] | None = None


class ToyConnector(Connector[VendorSettings]):
    """A vendor holding a short name, one phone and a town: enough to exercise the base."""

    vendor = Vendor.EROS
    settings_type = VendorSettings
    wire_model = ToyWire
    capabilities = Capabilities()

    def map(self, contact: Contact) -> Mapped:
        m = Mapped()
        m.put("Name", contact.last_name, "lastName")
        phones = [d for d in contact.details if d.kind.value == "PHONE"]
        for i, detail in enumerate(phones):
            m.put(f"Phones[{i}]", detail.value, f"details[{contact.details.index(detail)}].value")
        if contact.address is not None:
            m.put("Site.Town", contact.address.city, "address.city")
        m.payload = nest(m.payload)
        return m

    async def upsert(self, prepared: Prepared, link: CrossReference | None) -> Delivered:
        raise NotImplementedError


def toy() -> ToyConnector:
    return ToyConnector(VendorSettings.model_validate({"base_url": "http://127.0.0.1:9/x"}), transport=None)  # type: ignore[arg-type]


def contact(**data: Any) -> Contact:
    return Contact.model_validate({"id": "c", **data})


def test_every_wire_violation_points_at_the_input() -> None:
    prepared = toy().prepare(
        contact(
            lastName="Lovelace",
            details=[
                {"kind": "EMAIL", "value": "a@b.co"},
                {"kind": "PHONE", "value": "1"},
                {"kind": "PHONE", "value": "2"},
            ],
        )
    )
    assert not prepared.valid
    found = {(e.field, e.vendor_field, e.code) for e in prepared.errors}
    assert found == {("lastName", "Name", ErrorCode.TOO_LONG), ("details", "Phones", ErrorCode.TOO_MANY)}
    assert next(e for e in prepared.errors if e.code is ErrorCode.TOO_LONG).message == "at most 5 characters"


def test_missing_required_is_required_at_its_source() -> None:
    prepared = toy().prepare(contact())
    assert [(e.field, e.vendor_field, e.code) for e in prepared.errors] == [("lastName", "Name", ErrorCode.REQUIRED)]


def test_warnings_name_what_was_not_sent_at_the_widest_level() -> None:
    prepared = toy().prepare(
        contact(
            lastName="Ada",
            firstName="A",
            address={"city": "Town", "country": "GB"},
            locations=[{"ref": "L1"}, {"ref": "L2", "preferred": True}],
            details=[{"kind": "PHONE", "value": "1", "label": "desk"}],
        )
    )
    assert prepared.valid
    assert prepared.payload == {"Name": "Ada", "Phones": ["1"], "Site": {"Town": "Town"}}
    assert prepared.warnings == [
        "firstName: not supported by EROS, not sent",
        "details[0].kind: not supported by EROS, not sent",
        "details[0].label: not supported by EROS, not sent",
        "address.country: not supported by EROS, not sent",
        "locations: not supported by EROS, not sent",
    ]


def test_coverage_is_generated_from_the_mapping() -> None:
    rows = {row.canonical: row.vendor_field for row in toy().coverage()}
    assert rows["lastName"] == "Name"
    assert rows["details[].value"] == "Phones[]"
    assert rows["address.city"] == "Site.Town"
    assert rows["firstName"] is None
    assert rows["locations[].ref"] is None


def test_nest_builds_objects_and_lists() -> None:
    assert nest({"A.B": 1, "A.C[1].D": 2, "A.C[0].D": 3, "E": []}) == {
        "A": {"B": 1, "C": [{"D": 3}, {"D": 2}]},
        "E": [],
    }


def test_mapped_source_falls_back_to_parents() -> None:
    m = Mapped()
    m.put("locations[0]", None, "locations[0]")
    assert m.source("locations[0].startDate") == "locations[0]"
    assert m.source("unknown") == ""


def test_blank_removed_clears_text_and_lists_and_names_what_it_cannot() -> None:
    previous = {
        "Notes": "n",
        "Count": 3,
        "Empty": "",
        "Kept": "old",
        "Items": [1],
        "Contact": {"Role": "r", "BirthDate": "2000-01-01", "Name": "A"},
        "Gone": {"Line": "l", "Flag": True},
    }
    payload = {"Kept": "new", "Contact": {"Name": "B"}}
    out, stuck = blank_removed(previous, payload, frozenset({"Contact.BirthDate"}))
    assert out == {"Kept": "new", "Notes": "", "Items": [], "Contact": {"Name": "B", "Role": ""}, "Gone": {"Line": ""}}
    assert stuck == ["Count", "Contact.BirthDate", "Gone.Flag"]
    assert payload == {"Kept": "new", "Contact": {"Name": "B"}}, "the prepared payload is left as it was"
    assert blank_removed(None, payload) == (payload, [])


class _Reply(BaseModel):
    id: int


def _answer(body: bytes, status: int = 200) -> VendorResponse:
    return VendorResponse(status=status, headers=CIMultiDict(), body=body)


def test_a_vendor_answer_is_parsed_or_named_a_protocol_error() -> None:
    """`VendorResponse.parse`: the body as the model; a body of another shape is a protocol error carrying the
    caller's words, the status and an excerpt of the body; a body that is not JSON says so; `keys` rewrites the
    decoded body first."""
    assert _answer(b'{"id": 7}').parse(_Reply, "no id").id == 7
    assert _answer(b'{"Id": 7}').parse(_Reply, "no id", keys=lambda d: {k.lower(): v for k, v in d.items()}).id == 7
    with pytest.raises(VendorProtocolError) as shape:
        _answer(b'{"name": "x"}', status=201).parse(_Reply, "Jim2 answered HTTP 201 without an id")
    assert (shape.value.message, shape.value.http_status) == (
        'Jim2 answered HTTP 201 without an id: {"name": "x"}',
        201,
    )
    with pytest.raises(VendorProtocolError, match="with a body that is not JSON: <html>"):
        _answer(b"<html>").parse(_Reply, "no id")
