"""The simulators' fault injection hooks the benchmark relies on, over a real socket."""

from __future__ import annotations

import random

from resolvers.results import Vendor
from tests.conftest import Simulators


async def test_a_jitter_seed_makes_the_injected_latencies_repeat(simulators: Simulators) -> None:
    vendor = Vendor.ONESERVE
    state = simulators.by_vendor[vendor].state
    await simulators.faults(vendor, jitter_ms=5, jitter_seed="bench")
    # Every call draws its latency from the seeded generator: after two calls it is two draws further on.
    for _ in range(2):
        async with simulators.session.get(f"{simulators.url(vendor)}no-such-route") as response:
            assert response.status >= 400
    expected = random.Random("bench")
    for _ in range(2):
        expected.uniform(0, 5)
    assert state.jitter.random() == expected.random()
    # Seeding again restarts the same sequence.
    await simulators.faults(vendor, jitter_seed="bench")
    again = random.Random("bench")
    assert [state.jitter.uniform(0, 5) for _ in range(3)] == [again.uniform(0, 5) for _ in range(3)]


async def test_a_jitter_seed_of_another_type_is_refused_by_name(simulators: Simulators) -> None:
    url = f"{simulators.url(Vendor.JIM2)}_admin/faults"
    async with simulators.session.post(url, json={"jitter_seed": [1]}) as response:
        assert response.status == 400
        assert "jitter_seed" in (await response.json())["error"]
