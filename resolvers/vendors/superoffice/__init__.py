"""SuperOffice WebAPI: connector, wire models, mapping and simulator."""

from __future__ import annotations

from typing import Any

from resolvers.results import Vendor
from resolvers.vendors.base import VendorPlugin
from resolvers.vendors.superoffice.connector import SuperOfficeConnector, SuperOfficeSettings
from resolvers.vendors.superoffice.simulator import DEMO_APP_TOKEN, DEMO_TICKET, SuperOfficeSimulator

__all__ = ["PLUGIN", "SuperOfficeConnector", "SuperOfficeSettings", "SuperOfficeSimulator", "demo_config"]

#: A well-formed Category list item id the demo tenant does not have: passes pre-flight, rejected by SuperOffice.
UNKNOWN_CATEGORY_ID = 999_999


def demo_config(base_url: str) -> dict[str, Any]:
    """The `[vendors.superoffice]` table for the simulator at `base_url` (e.g. `http://127.0.0.1:8100/superoffice/`)."""
    return {
        "base_url": base_url,
        "auth": "soticket",
        "ticket": DEMO_TICKET,
        "app_token": DEMO_APP_TOKEN,
    }


PLUGIN = VendorPlugin(
    vendor=Vendor.SUPEROFFICE,
    connector=SuperOfficeConnector,
    simulator=SuperOfficeSimulator,
    demo_config=demo_config,
    bad_credentials={"ticket": "wrong-ticket"},
    rejecting_options={"categoryId": UNKNOWN_CATEGORY_ID},
)
