"""The registry of vendors: one line per vendor folder."""

from __future__ import annotations

from resolvers.results import Vendor
from resolvers.vendors.base import VendorPlugin
from resolvers.vendors.eros import PLUGIN as EROS
from resolvers.vendors.jim2 import PLUGIN as JIM2
from resolvers.vendors.oneserve import PLUGIN as ONESERVE
from resolvers.vendors.superoffice import PLUGIN as SUPEROFFICE
from resolvers.vendors.valomnia import PLUGIN as VALOMNIA

#: Every vendor the gateway can talk to, in the order results are reported.
REGISTRY: dict[Vendor, VendorPlugin] = {
    plugin.vendor: plugin for plugin in (ONESERVE, EROS, JIM2, SUPEROFFICE, VALOMNIA)
}
