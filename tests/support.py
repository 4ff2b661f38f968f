"""Operations and sample contacts shared by the test modules."""

from __future__ import annotations

import asyncio
import copy
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

RESULT_FIELDS = """
    vendor status remoteId attempts durationMs httpStatus warnings matchedBy deliveryId
    errors { field vendorField code message vendorCode }
"""

UPSERT = f"""
mutation Upsert($input: ContactInput!, $vendors: [Vendor!], $force: Boolean! = false) {{
  upsertContact(input: $input, vendors: $vendors, force: $force) {{
    status
    contact {{ id firstName lastName vendorLinks {{ vendor remoteId status lastError deleted }} }}
    results {{ {RESULT_FIELDS} }}
  }}
}}
"""

VALIDATE = f"""
query Validate($input: ContactInput!, $vendors: [Vendor!]) {{
  validateContact(input: $input, vendors: $vendors) {{ {RESULT_FIELDS} }}
}}
"""

DELETE = f"""
mutation Delete($id: ID!, $vendors: [Vendor!]) {{
  deleteContact(id: $id, vendors: $vendors) {{ status results {{ {RESULT_FIELDS} }} }}
}}
"""

FULL_CONTACT: dict[str, Any] = {
    "id": "C-1001",
    "title": "Ms",
    "firstName": "Ada",
    "middleName": "King",
    "lastName": "Lovelace",
    "jobTitle": "Analyst",
    "department": "Engines",
    "birthDate": "1815-12-10",
    "notes": "Prefers mornings",
    "considerations": "Dog on site",
    "details": [
        {"kind": "EMAIL", "value": "ada@example.com", "preferred": True},
        {"kind": "MOBILE", "value": "07700900123"},
        {"kind": "PHONE", "value": "02079460000", "label": "office"},
    ],
    "address": {
        "lines": ["12 St James's Square", "St James's"],
        "city": "London",
        "region": "LDN",
        "postCode": "SW1Y 4JH",
        "country": "GB",
        "latitude": 51.5074,
        "longitude": -0.1347,
    },
    "locations": [{"ref": "LOC-1", "preferred": True, "startDate": "2024-01-01", "endDate": "2024-12-31"}],
}


def contact(**changes: Any) -> dict[str, Any]:
    """A deep copy of FULL_CONTACT with top-level fields replaced."""
    data = copy.deepcopy(FULL_CONTACT)
    data.update(changes)
    return data


def by_vendor(results: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Results keyed by vendor name."""
    return {r["vendor"]: r for r in results}


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 60.0) -> None:
    """Wait (bounded) until `check` holds: background work takes a moment, never forever."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.05)


PATH_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
#: What `value_at` answers for a path that leads nowhere.
MISSING: Any = object()


def value_at(data: Any, path: str) -> Any:
    """The value at a path such as `details[1].value` or `Contact.ContactDetails[1]` (MISSING when there is none)."""
    node = data
    for name, index in PATH_TOKEN.findall(path):
        if index:
            if not isinstance(node, list) or int(index) >= len(node):
                return MISSING
            node = node[int(index)]
        elif isinstance(node, dict) and name in node:
            node = node[name]
        else:
            return MISSING
    return node
