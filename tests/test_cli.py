"""The README's first command: `contact-gateway demo` runs the simulators and the gateway, and Ctrl-C stops it."""

from __future__ import annotations

import asyncio
import signal
import sys

import httpx

from graph.cli import EXAMPLE_MUTATION, EXAMPLE_VARIABLES
from tests.conftest import free_port


async def _wait_until_up(client: httpx.AsyncClient, url: str, process: asyncio.subprocess.Process) -> None:
    for _ in range(300):
        if process.returncode is not None:
            raise AssertionError(f"demo exited early with {process.returncode}")
        try:
            if (await client.get(url)).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("demo did not come up within 30 s")


async def test_demo_serves_the_example_and_stops_cleanly_on_ctrl_c() -> None:
    port, sim_port = free_port(), free_port()
    token = "demo-token-for-the-test-0123456789"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "graph.cli",
        "demo",
        "--port",
        str(port),
        "--simulator-port",
        str(sim_port),
        "--token",
        token,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            await _wait_until_up(client, f"http://127.0.0.1:{port}/healthz", process)
            response = await client.post(
                f"http://127.0.0.1:{port}/graphql",
                json={"query": EXAMPLE_MUTATION, "variables": EXAMPLE_VARIABLES},
                headers={"Authorization": f"Bearer {token}"},
            )
            payload = response.json()["data"]["upsertContact"]
            assert payload["status"] == "SUCCEEDED", payload
            assert {r["status"] for r in payload["results"]} == {"CREATED"}
            sims = (await client.get(f"http://127.0.0.1:{sim_port}/")).json()["simulators"]
            assert len(sims) == len(payload["results"])
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    text = output.decode()
    assert process.returncode == 0, text
    assert token in text, "the demo prints its token"
    assert f"http://127.0.0.1:{port}/graphql" in text
    assert "Traceback" not in text
