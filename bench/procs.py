"""The processes the benchmark starts (simulators, gateways) and how their CPU time and memory are read."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import psutil  # type: ignore[import-untyped]
import tomli_w

from graph.cli import demo_config

REPO = Path(__file__).resolve().parent.parent
#: The bearer token of every gateway the benchmark starts (read and write scopes).
TOKEN = "bench-token-0123456789abcdef"
#: Seconds a process gets to come up.
START_TIMEOUT_S = 60.0


def git_state(repo: Path = REPO) -> dict[str, Any]:
    """The commit checked out now, and whether graph/ or resolvers/ differ from it (the code a process loads)."""

    def run(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=False).stdout.strip()

    return {
        "commit": run("rev-parse", "--short", "HEAD"),
        "dirty": bool(run("status", "--porcelain", "graph", "resolvers")),
    }


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tree(root: psutil.Process) -> list[psutil.Process]:
    with contextlib.suppress(psutil.NoSuchProcess):
        return [root, *root.children(recursive=True)]
    return []


class Meter:
    """CPU seconds and resident memory of a process and (by default) all its children (a `serve --workers N` tree)."""

    #: How long the list of child processes is reused (listing children scans every process on the machine).
    TREE_TTL_S = 1.0

    def __init__(self, pid: int, *, children: bool = True) -> None:
        self.root = psutil.Process(pid)
        self.children = children
        self._tree: list[psutil.Process] = []
        self._tree_at = 0.0

    def _procs(self) -> list[psutil.Process]:
        if not self.children:
            return [self.root]
        if time.monotonic() - self._tree_at > self.TREE_TTL_S:
            self._tree, self._tree_at = _tree(self.root), time.monotonic()
        return self._tree

    def cpu_s(self) -> float:
        """User + system CPU seconds used so far by the process tree."""
        total = 0.0
        for proc in self._procs():
            with contextlib.suppress(psutil.NoSuchProcess):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def rss(self) -> int:
        """Resident bytes of the process tree now."""
        total = 0
        for proc in self._procs():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += proc.memory_info().rss
        return total


@dataclass
class Service:
    """A child process the benchmark started, with its log file."""

    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    meter: Meter = field(init=False)

    def __post_init__(self) -> None:
        self.meter = Meter(self.proc.pid)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not go within 15 s."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _spawn(args: list[str], log_path: Path) -> Service:
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, *args], cwd=REPO, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL
    )
    return Service(proc=proc, log=log)


def start_simulators(workdir: Path) -> tuple[Service, str]:
    """The simulators' process and their base URL (`http://127.0.0.1:PORT/`)."""
    service = _spawn(["-m", "bench.simulators", "--port", "0"], workdir / "simulators.log")
    assert service.proc.stdout is not None
    line = service.proc.stdout.readline()
    if not line:
        service.stop()
        raise RuntimeError(f"the simulators did not start; see {workdir / 'simulators.log'}")
    port = json.loads(line)["port"]
    return service, f"http://127.0.0.1:{port}/"


@dataclass
class Gateway:
    """A `contact-gateway serve` process: its URL, how to measure it, how to stop it."""

    service: Service
    url: str
    config: dict[str, Any]
    workers: int
    #: The code it loaded: `git_state()` when it was started.
    code: dict[str, Any] = field(default_factory=dict)

    @property
    def meter(self) -> Meter:
        return self.service.meter

    def stop(self) -> None:
        self.service.stop()


def gateway_config(simulator_base: str, store_url: str) -> dict[str, Any]:
    """The demo configuration (every vendor at its simulator, default limits), with GraphiQL off."""
    config = demo_config(simulator_base, TOKEN, store_url)
    config["server"] = {"graphiql": False}
    return config


def spawn_gateway(
    simulator_base: str, store_url: str, workdir: Path, name: str, workers: int = 1, repo: Path = REPO
) -> Gateway:
    """`contact-gateway serve --config FILE --port P --workers N`, in its own process (not yet ready), running the
    code of `repo` (this checkout, or another one's work tree: `bench.compare`)."""
    config = gateway_config(simulator_base, store_url)
    config_path = workdir / f"{name}.toml"
    config_path.write_text(tomli_w.dumps(config), encoding="utf-8")
    port = free_port()
    args = ["-m", "graph.cli", "serve", "--config", str(config_path), "--port", str(port), "--workers", str(workers)]
    log = (workdir / f"{name}.log").open("wb")
    # uvicorn logs every request to stdout: a file, so the log costs what it costs in production and never blocks.
    proc = subprocess.Popen([sys.executable, *args], cwd=repo, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    return Gateway(Service(proc=proc, log=log), f"http://127.0.0.1:{port}/graphql", config, workers, git_state(repo))


async def start_gateway(
    simulator_base: str, store_url: str, workdir: Path, name: str, workers: int = 1, repo: Path = REPO
) -> Gateway:
    """A gateway process, ready to answer (every worker started)."""
    gateway = spawn_gateway(simulator_base, store_url, workdir, name, workers, repo)
    try:
        await _wait_ready(gateway, workdir / f"{name}.log")
    except BaseException:
        gateway.stop()
        raise
    return gateway


async def _wait_ready(gateway: Gateway, log_path: Path) -> None:
    health = gateway.url.removesuffix("graphql") + "healthz"
    deadline = time.monotonic() + START_TIMEOUT_S
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if gateway.service.proc.poll() is not None:
                raise RuntimeError(f"the gateway exited at start-up; see {log_path}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(health) as response:
                    if response.status == 200 and _workers_up(gateway, log_path):
                        return
            await asyncio.sleep(0.2)
    raise RuntimeError(f"the gateway did not answer within {START_TIMEOUT_S:.0f} s; see {log_path}")


def _workers_up(gateway: Gateway, log_path: Path) -> bool:
    """Every worker has finished its lifespan start-up (uvicorn logs it once per worker)."""
    return log_path.read_bytes().count(b"Application startup complete") >= gateway.workers


def own_meter() -> Meter:
    """The benchmark's own process alone (the load generator; the raw and naive clients), not its children (the
    simulators and gateways it started)."""
    return Meter(os.getpid(), children=False)
