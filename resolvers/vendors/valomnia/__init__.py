"""Valomnia (field sales): connector, wire models, mapping and simulator."""

from __future__ import annotations

from typing import Any

from resolvers.results import Vendor
from resolvers.vendors.base import VendorPlugin
from resolvers.vendors.valomnia.connector import ValomniaConnector, ValomniaSettings
from resolvers.vendors.valomnia.simulator import (
    DEMO_CUSTOMER_ID,
    DEMO_PASSWORD,
    DEMO_USERNAME,
    UNKNOWN_CUSTOMER_ID,
    ValomniaSimulator,
)

__all__ = ["PLUGIN", "ValomniaConnector", "ValomniaSettings", "ValomniaSimulator", "demo_config"]


def demo_config(base_url: str) -> dict[str, Any]:
    """The `[vendors.valomnia]` table for the simulator at `base_url` (e.g. `http://127.0.0.1:8100/valomnia/`)."""
    return {
        "base_url": base_url,
        "api_version": "v1.0",
        "username": DEMO_USERNAME,
        "password": DEMO_PASSWORD,
        "customer_id": DEMO_CUSTOMER_ID,
    }


PLUGIN = VendorPlugin(
    vendor=Vendor.VALOMNIA,
    connector=ValomniaConnector,
    simulator=ValomniaSimulator,
    demo_config=demo_config,
    bad_credentials={"password": "wrong-password"},
    # Numeric, so valid before sending, but no customer of the simulator's demo organisation.
    rejecting_options={"customerId": UNKNOWN_CUSTOMER_ID},
)
