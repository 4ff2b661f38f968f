"""Eros (Perspective Platform subscription API): connector, wire models, mapping and simulator."""

from __future__ import annotations

from typing import Any

from resolvers.results import Vendor
from resolvers.vendors.base import VendorPlugin
from resolvers.vendors.eros.connector import ErosConnector, ErosSettings
from resolvers.vendors.eros.simulator import (
    DEMO_CONTACT_TYPE,
    DEMO_DATA_SOURCE,
    DEMO_PASSWORD,
    DEMO_ROLE,
    DEMO_USERNAME,
    ErosSimulator,
)

__all__ = ["PLUGIN", "ErosConnector", "ErosSettings", "ErosSimulator", "demo_config"]

#: A well-formed ContactType GUID the simulator does not know: passes pre-flight, rejected by Eros.
UNKNOWN_CONTACT_TYPE = "0b5e7d1c-9f3a-4e2b-8c6d-7a1f0e9d8c7b"


def demo_config(base_url: str) -> dict[str, Any]:
    """The `[vendors.eros]` table for the simulator served at `base_url` (e.g. `http://127.0.0.1:8100/eros/`)."""
    return {
        "base_url": base_url,
        "username": DEMO_USERNAME,
        "password": DEMO_PASSWORD,
        "data_source_instance_id": str(DEMO_DATA_SOURCE),
        "contact_type_id": str(DEMO_CONTACT_TYPE),
        "role_ids": [str(DEMO_ROLE)],
    }


PLUGIN = VendorPlugin(
    vendor=Vendor.EROS,
    connector=ErosConnector,
    simulator=ErosSimulator,
    demo_config=demo_config,
    bad_credentials={"password": "wrong-password"},
    rejecting_options={"contactTypeId": UNKNOWN_CONTACT_TYPE},
)
