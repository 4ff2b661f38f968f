"""Oneserve (field service management): native upsert of contacts keyed by clientRef + contactRef."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from resolvers.results import Vendor
from resolvers.vendors.base import VendorPlugin
from resolvers.vendors.oneserve.connector import OneserveConnector, OneserveSettings
from resolvers.vendors.oneserve.mapping import DEFAULT_DETAIL_TYPES
from resolvers.vendors.oneserve.simulator import DEMO_CLIENT_REF, DEMO_SITE, DEMO_TOKEN, OneserveSimulator

__all__ = ["PLUGIN", "OneserveConnector", "OneserveSettings", "OneserveSimulator", "demo_config"]


def demo_config(base_url: str) -> dict[str, Any]:
    """The `[vendors.oneserve]` table for the simulator at `base_url`.

    `base_url` is either the simulator's mount (`http://127.0.0.1:8100/oneserve/`: the demo site `acme/` is
    added) or already a site URL (`http://127.0.0.1:8100/oneserve/acme/`, used as given).
    """
    base = base_url if base_url.endswith("/") else base_url + "/"
    if urlsplit(base).path.rstrip("/").rsplit("/", 1)[-1] == OneserveSimulator.name:
        base += f"{DEMO_SITE}/"
    return {
        "base_url": base,
        "token": DEMO_TOKEN,
        "client_ref": DEMO_CLIENT_REF,
        "detail_types": dict(DEFAULT_DETAIL_TYPES),
    }


PLUGIN = VendorPlugin(
    vendor=Vendor.ONESERVE,
    connector=OneserveConnector,
    simulator=OneserveSimulator,
    demo_config=demo_config,
    bad_credentials={"token": "wrong-token"},
    # Valid before sending (1-50 characters), but no client of the simulator's demo tenant.
    rejecting_options={"clientRef": "NO-SUCH-CLIENT"},
)
