"""Jim2 (Happen Business Web API): connector, wire models, mapping and simulator."""

from __future__ import annotations

from typing import Any

from resolvers.results import Vendor
from resolvers.vendors.base import VendorPlugin
from resolvers.vendors.jim2.connector import Jim2Connector, Jim2Settings
from resolvers.vendors.jim2.simulator import DEMO_CARD_NO, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, Jim2Simulator

__all__ = ["PLUGIN", "Jim2Connector", "Jim2Settings", "Jim2Simulator", "demo_config"]

#: A well-formed card number the simulator has no card file for: passes pre-flight, refused by Jim2 with a 404.
UNKNOWN_CARD_NO = "404404"


def demo_config(base_url: str) -> dict[str, Any]:
    """The `[vendors.jim2]` table for the simulator served at `base_url` (e.g. `http://127.0.0.1:8100/jim2/`)."""
    return {
        "base_url": base_url,
        "client_id": DEMO_CLIENT_ID,
        "client_secret": DEMO_CLIENT_SECRET,
        "card_no": DEMO_CARD_NO,
    }


PLUGIN = VendorPlugin(
    vendor=Vendor.JIM2,
    connector=Jim2Connector,
    simulator=Jim2Simulator,
    demo_config=demo_config,
    bad_credentials={"client_secret": "wrong-secret"},
    rejecting_options={"cardNo": UNKNOWN_CARD_NO},
)
