"""Gateways as separate operating-system processes (`contact-gateway serve`), to kill, restart and run side by side."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w

from tests.conftest import ADMIN_TOKEN, free_port


class GatewayProcess:
    """`python -m graph.cli serve` with a config file; its output goes to a log file next to it."""

    def __init__(self, config: dict[str, Any], directory: Path, name: str, workers: int = 1) -> None:
        self.name = name
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.config_path = directory / f"{name}.toml"
        self.config_path.write_text(tomli_w.dumps(config))
        self.log_path = directory / f"{name}.log"
        self.process: asyncio.subprocess.Process | None = None
        self.client = httpx.AsyncClient(timeout=30)

    async def start(self) -> None:
        """Start the process and wait until it answers /healthz."""
        log = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "graph.cli",
            "serve",
            "--config",
            str(self.config_path),
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + 30
        while True:
            if self.process.returncode is not None:
                raise AssertionError(f"{self.name} exited with {self.process.returncode}:\n{self.log()}")
            try:
                if (await self.client.get(f"{self.url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.name} did not come up:\n{self.log()}")
            await asyncio.sleep(0.05)

    def log(self) -> str:
        """What the process printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def graphql(self, query: str, variables: dict[str, Any] | None = None, token: str = ADMIN_TOKEN) -> Any:
        """POST an operation; the JSON answer."""
        response = await self.client.post(
            f"{self.url}/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"Authorization": f"Bearer {token}"},
        )
        return response.json()

    async def pending(self) -> int:
        """Deliveries still PENDING in the store this process uses."""
        answer = await self.graphql("{ deliveries(status: PENDING) { totalCount } }")
        assert "errors" not in answer, answer
        return int(answer["data"]["deliveries"]["totalCount"])

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs at all."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def terminate(self, timeout_s: float = 60) -> int:
        """SIGTERM (what an orchestrator sends) and wait for the exit; its exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), timeout=timeout_s)

    async def stop(self) -> None:
        """Ctrl-C and wait for a clean exit."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.process.wait(), timeout=30)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        await self.client.aclose()


@pytest.fixture
async def processes() -> AsyncIterator[list[GatewayProcess]]:
    """Gateway processes a test starts (append them): each is stopped at the end."""
    started: list[GatewayProcess] = []
    yield started
    for process in started:
        await process.stop()
