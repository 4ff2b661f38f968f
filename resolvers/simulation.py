"""What every vendor simulator shares: fault injection, a record of what it was sent, and an admin endpoint.

Each vendor's `simulator.py` subclasses `Simulator`, adds its routes and its own error shape; this module runs them
all under one aiohttp server, each at `/<vendor>/` (`contact-gateway simulate`, the demo, and the tests).

Admin endpoint of each simulator (no auth; for tests and demos):
- `POST /<vendor>/_admin/faults` with any of `latency_ms`, `jitter_ms`, `fail_next` + `fail_status`,
  `throttle_next` + `retry_after`, `drop_next`, `drop_after_next`, `drop_after_next_write`,
  `drop_after_next_create`, `hang_next`, `hang_after_next_create`, `garble_after_next_create`,
  `fail_after_next_create`: the next N calls fail, throttle with 429 and Retry-After, drop the connection before
  acting, act and then drop it (a lost answer; `_write` counts only record writes, not logins or lookups, `_create`
  only calls that added a record), never answer (before acting, or after adding a record), add a record and answer
  its success status with an HTML page instead of the vendor's body, or add a record and answer `fail_status` with
  a proxy's HTML page. `jitter_seed` (an integer or
  a string) restarts the jitter's draws from that seed, so two runs seeded alike see the same latencies call by call.
- `POST /<vendor>/_admin/next-ids` with `{"ids": [...]}`: the next records the simulator creates get these ids, in
  order, instead of its own (for simulators that assign ids: Jim2, Valomnia), so tests can make a vendor issue an id
  holding `/`, `?`, `#` or `..` and check the gateway encodes it in later URLs.
- `POST /<vendor>/_admin/reset`: forget faults, records and calls.
- `GET /<vendor>/_admin/state`: the records it holds, the calls it received and how many of each kind.
"""

from __future__ import annotations

import asyncio
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class Faults:
    """Faults to inject into the next calls (admin paths are never affected)."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    fail_next: int = 0
    fail_status: int = 503
    throttle_next: int = 0
    retry_after: float = 1.0
    drop_next: int = 0
    #: Handle the call (the vendor acts on it), then drop the connection instead of answering: a lost answer.
    drop_after_next: int = 0
    #: The same, counting only writes (`Simulator.is_write`): logins and lookups before the write go through.
    drop_after_next_write: int = 0
    #: The same, counting only calls that added a record (an update answered 404 before a create goes through).
    drop_after_next_create: int = 0
    hang_next: int = 0
    #: Act on the next call that adds a record, then never answer (the caller's deadline runs out after the create).
    hang_after_next_create: int = 0
    #: Act on the next call that adds a record, then answer its success status with a body that is not the vendor's
    #: (a proxy's HTML page): the record exists, but the answer says nothing of it.
    garble_after_next_create: int = 0
    #: Act on the next call that adds a record, then answer `fail_status` with a proxy's HTML page (set it to 504 for
    #: a Gateway Timeout from a proxy whose vendor committed after the proxy gave up on it; its default is 503).
    fail_after_next_create: int = 0


@dataclass(slots=True)
class Call:
    """One call a simulator received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: str
    outcome: int = 0
    #: When the call arrived (Unix time), so tests can check that a Retry-After was honoured.
    at: float = 0.0


@dataclass(slots=True)
class SimulatorState:
    """What a simulator holds: records by vendor id, the calls received, and pending faults."""

    faults: Faults = field(default_factory=Faults)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    #: Ids the next created records get (`POST _admin/next-ids`), before the simulator's own again.
    next_ids: list[str] = field(default_factory=list)
    #: Calls being handled right now, and the most there ever were at once (to check concurrency limits).
    in_flight: int = 0
    max_in_flight: int = 0
    #: Where the injected jitter is drawn from; `jitter_seed` (faults endpoint) makes its draws repeat.
    jitter: random.Random = field(default_factory=random.Random)

    def count(self, name: str) -> int:
        """Increment and return a named counter (`creates`, `updates`, ...)."""
        self.counters[name] = self.counters.get(name, 0) + 1
        return self.counters[name]


#: Largest request body a simulator reads (a vendor's 2 MB photo limit is checked by the vendor, not by aiohttp).
MAX_BODY = 16 * 1024 * 1024

#: Calls kept per simulator; older ones are forgotten so a long demo does not grow without bound.
MAX_CALLS = 10_000


class Simulator(ABC):
    """A faithful fake of one vendor: checks auth, enforces its rules, answers in its own shapes."""

    #: The path segment the simulator is served under (the vendor's config name).
    name: ClassVar[str]

    def __init__(self) -> None:
        self.state = SimulatorState()

    #: Path endings of the vendor's authentication endpoints (POSTs that are not writes of records).
    auth_paths: ClassVar[tuple[str, ...]] = ()

    def is_write(self, request: web.Request) -> bool:
        """True for a call that changes a record (what `drop_after_next_write` loses the answer of)."""
        return request.method in {"POST", "PUT", "PATCH", "DELETE"} and not request.path.endswith(self.auth_paths)

    @abstractmethod
    def add_routes(self, app: web.Application) -> None:
        """Register the vendor's own endpoints."""

    @abstractmethod
    def error_response(self, status: int, message: str) -> web.Response:
        """An error in the vendor's own shape (used for injected faults too)."""

    def reset(self) -> None:
        """Forget everything; subclasses that hold more state extend this."""
        self.state = SimulatorState()

    def issued_id(self) -> str | None:
        """The id queued by `POST _admin/next-ids` for the record being created now; None: the simulator's own."""
        return self.state.next_ids.pop(0) if self.state.next_ids else None

    def app(self) -> web.Application:
        """The simulator as an aiohttp application (mounted at `/<name>/` by `simulator_app`)."""
        app = web.Application(middlewares=[self._faults_middleware], client_max_size=MAX_BODY)
        app.router.add_post("/_admin/faults", self._admin_faults)
        app.router.add_post("/_admin/reset", self._admin_reset)
        app.router.add_post("/_admin/next-ids", self._admin_next_ids)
        app.router.add_get("/_admin/state", self._admin_state)
        self.add_routes(app)
        return app

    @web.middleware
    async def _faults_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if "/_admin/" in request.path:
            return await handler(request)
        # Bodies may be binary (multipart photos): recorded as text with undecodable bytes replaced.
        body = (await request.read()).decode("utf-8", "replace")
        call = Call(
            method=request.method,
            path=request.path_qs,
            query=dict(request.query),
            headers={k: v for k, v in request.headers.items()},
            body=body,
            at=time.time(),
        )
        self.state.calls.append(call)
        del self.state.calls[:-MAX_CALLS]
        state = self.state
        state.in_flight += 1
        state.max_in_flight = max(state.max_in_flight, state.in_flight)
        try:
            return await self._handle(request, handler, call)
        finally:
            state.in_flight -= 1

    async def _handle(self, request: web.Request, handler: Handler, call: Call) -> web.StreamResponse:
        faults = self.state.faults
        if faults.latency_ms or faults.jitter_ms:
            await asyncio.sleep((faults.latency_ms + self.state.jitter.uniform(0, faults.jitter_ms)) / 1000)
        if faults.hang_next > 0:
            faults.hang_next -= 1
            await asyncio.sleep(3600)
        if faults.drop_next > 0:
            faults.drop_next -= 1
            call.outcome = -1
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
        if faults.throttle_next > 0:
            faults.throttle_next -= 1
            call.outcome = 429
            throttled = self.error_response(429, "Too many requests")
            throttled.headers["Retry-After"] = f"{faults.retry_after:g}"
            return throttled
        if faults.fail_next > 0:
            faults.fail_next -= 1
            call.outcome = faults.fail_status
            return self.error_response(faults.fail_status, "Simulated failure")
        records = len(self.state.records)
        response = await handler(request)
        call.outcome = response.status
        created = len(self.state.records) > records
        if faults.hang_after_next_create > 0 and created:
            faults.hang_after_next_create -= 1
            await asyncio.sleep(3600)
        if faults.garble_after_next_create > 0 and created:
            faults.garble_after_next_create -= 1
            return web.Response(status=response.status, text="<html><body>OK</body></html>", content_type="text/html")
        if faults.fail_after_next_create > 0 and created:
            faults.fail_after_next_create -= 1
            call.outcome = faults.fail_status
            page = f"<html><body><h1>{faults.fail_status}</h1>The upstream server did not answer in time.</body></html>"
            return web.Response(status=faults.fail_status, text=page, content_type="text/html")
        lose_create = faults.drop_after_next_create > 0 and created
        lose_write = faults.drop_after_next_write > 0 and self.is_write(request)
        if faults.drop_after_next > 0 or lose_write or lose_create:
            if lose_create:
                faults.drop_after_next_create -= 1
            elif lose_write:
                faults.drop_after_next_write -= 1
            else:
                faults.drop_after_next -= 1
            call.outcome = -2
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError
        return response

    async def _admin_faults(self, request: web.Request) -> web.Response:
        changes = await request.json()
        faults = self.state.faults
        if "jitter_seed" in changes:
            seed = changes.pop("jitter_seed")
            if isinstance(seed, bool) or not isinstance(seed, int | str):
                return web.json_response({"error": "jitter_seed must be an integer or a string"}, status=400)
            self.state.jitter.seed(seed)
        for key, value in changes.items():
            if not hasattr(faults, key):
                return web.json_response({"error": f"unknown fault {key!r}"}, status=400)
            setattr(faults, key, type(getattr(faults, key))(value))
        return web.json_response(asdict(faults))

    async def _admin_next_ids(self, request: web.Request) -> web.Response:
        ids = (await request.json()).get("ids")
        if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
            return web.json_response({"error": "ids must be a list of non-empty strings"}, status=400)
        self.state.next_ids.extend(ids)
        return web.json_response({"next_ids": self.state.next_ids})

    async def _admin_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"reset": True})

    async def _admin_state(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "records": self.state.records,
                "counters": self.state.counters,
                "calls": [asdict(c) for c in self.state.calls],
                "faults": asdict(self.state.faults),
                "max_in_flight": self.state.max_in_flight,
            }
        )


def simulator_app(simulators: list[Simulator]) -> web.Application:
    """One aiohttp application serving every simulator under `/<name>/`."""
    root = web.Application(client_max_size=MAX_BODY)
    for simulator in simulators:
        root.add_subapp(f"/{simulator.name}/", simulator.app())

    async def index(request: web.Request) -> web.Response:
        return web.json_response({"simulators": [s.name for s in simulators]})

    root.router.add_get("/", index)
    return root


async def start_simulators(
    simulators: list[Simulator], host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, int]:
    """Serve the simulators on a real socket; returns the runner (to clean up) and the bound port."""
    # handler_cancellation: a hung call ends when its client gives up; a short shutdown_timeout: stopping the
    # simulators never waits for calls told to hang.
    runner = web.AppRunner(
        simulator_app(simulators), access_log=None, handle_signals=False, handler_cancellation=True, shutdown_timeout=1
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    # The bound port (port=0 asks the OS for a free one).
    bound = runner.addresses[0][1]
    return runner, int(bound)
