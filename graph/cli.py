"""The command line: `contact-gateway demo | serve | simulate`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import secrets
import signal
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import tomli_w
import uvicorn

from graph.graphiql import (
    INSTALL_HINT,
    assets_dir,
    assets_problem,
    graphiql_page,
    install_assets,
    refuse_embedded_headers,
)
from graph.observability import configure_logging
from resolvers.config import ServerConfig, build_config, load_config
from resolvers.errors import ConfigError, scrub
from resolvers.simulation import start_simulators
from resolvers.vendors import REGISTRY

EXAMPLE_MUTATION = """mutation Upsert($input: ContactInput!) {
  upsertContact(input: $input) {
    status
    contact { id firstName lastName vendorLinks { vendor remoteId status } }
    results { vendor status remoteId attempts durationMs warnings
              errors { field vendorField code message vendorCode } }
  }
}"""

EXAMPLE_VARIABLES: dict[str, Any] = {
    "input": {
        "id": "C-1001",
        "title": "Ms",
        "firstName": "Ada",
        "lastName": "Lovelace",
        "jobTitle": "Analyst",
        "details": [
            {"kind": "EMAIL", "value": "ada@example.com", "preferred": True},
            {"kind": "MOBILE", "value": "07700900123"},
        ],
        "address": {
            "lines": ["12 St James's Square", "St James's"],
            "city": "London",
            "postCode": "SW1Y 4JH",
            "country": "GB",
            "latitude": 51.5074,
            "longitude": -0.1347,
        },
        "locations": [{"ref": "LOC-1", "preferred": True, "startDate": "2024-01-01"}],
    }
}


def demo_config(simulator_base: str, token: str, store_url: str) -> dict[str, Any]:
    """A full configuration: every registered vendor pointed at its simulator, one token (read, write, federation).

    Introspection is on (GraphiQL's docs need it; `serve` leaves it off unless configured). GraphiQL falls back to
    the built-in minimal page when its npm files are missing (`demo` tries npm first).
    """
    return {
        "server": {"graphiql": True, "graphiql_fallback": True, "introspection": True},
        "auth": {
            "tokens": [
                {
                    "name": "demo",
                    "token": token,
                    "scopes": ["contacts:read", "contacts:write", "contacts:federation"],
                }
            ]
        },
        "store": {"url": store_url},
        "vendors": {
            plugin.vendor.value: plugin.demo_config(f"{simulator_base}{plugin.vendor.value}/")
            for plugin in REGISTRY.values()
        },
    }


def demo_example(token: str) -> dict[str, Any]:
    """`[server.graphiql_example]` of the demo: GraphiQL opens on the example, with the demo token in its headers."""
    return {"query": EXAMPLE_MUTATION, "variables": EXAMPLE_VARIABLES, "headers": {"Authorization": f"Bearer {token}"}}


def _prepare_graphiql(assets: Path) -> bool:
    """True when the full GraphiQL can be served: its files are there, or `npm ci` just installed them."""
    if assets_problem(assets) is None:
        return True
    print(f"GraphiQL: its pinned files are not in {assets} yet; installing them with npm (once).", flush=True)
    if install_assets(assets, echo=lambda line: print(line, flush=True)):
        print("GraphiQL: installed.", flush=True)
        return True
    print(
        "GraphiQL: serving a minimal built-in page instead (operation, variables, headers, Run; no explorer). "
        f"For the full GraphiQL run `{INSTALL_HINT}` in the repository and restart the demo.",
        flush=True,
    )
    return False


#: How long the demo waits for requests in flight and open streams when stopped.
DEMO_SHUTDOWN_GRACE_S = 5


def _bounded(name: str, low: int, high: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number, not {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{name} must be {low}-{high}, not {value}")
        return value

    return parse


_port = _bounded("a port", 1, 65535)
_workers = _bounded("workers", 1, 64)


async def _store_problem(url: str) -> str | None:
    """Why the store at `url` cannot be opened (reached, and migrated to the head revision), or None when it can.
    The URL is never echoed: it may carry a password."""
    from resolvers.store import Store

    store = Store(url)
    try:
        async with asyncio.timeout(30):
            await store.open()
    except Exception as exc:
        return scrub(f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
    finally:
        with contextlib.suppress(Exception):
            await store.close()
    return None


def _uvicorn_config(app: Any, host: str, port: int, **kwargs: Any) -> uvicorn.Config:
    # uvloop and httptools: the fastest event loop and HTTP parser uvicorn offers. On Ctrl-C, requests in flight
    # (and open SSE streams, which never end on their own) get a few seconds, then the demo stops.
    kwargs.setdefault("timeout_graceful_shutdown", DEMO_SHUTDOWN_GRACE_S)
    return uvicorn.Config(app, host=host, port=port, loop="uvloop", http="httptools", log_level="info", **kwargs)


async def _demo(host: str, port: int, sim_port: int, token: str, store_url: str, assets: Path, full: bool) -> None:
    from graph.app import create_app

    simulators = [plugin.simulator() for plugin in REGISTRY.values()]
    runner, bound = await start_simulators(simulators, host="127.0.0.1", port=sim_port)
    data = demo_config(f"http://127.0.0.1:{bound}/", token, store_url)
    data["server"].update(graphiql_assets=str(assets), graphiql_example=demo_example(token))
    config = build_config(data)
    server = uvicorn.Server(
        _uvicorn_config(create_app(config), host, port, timeout_keep_alive=math.ceil(config.server.keep_alive_s))
    )
    curl_body = json.dumps({"query": EXAMPLE_MUTATION, "variables": EXAMPLE_VARIABLES}).replace("'", "'\\''")
    print(
        f"""
contact-gateway demo
  GraphiQL     http://{host}:{port}/graphql  ({"" if full else "minimal built-in page; "}opens on the example below)
  Simulators   http://127.0.0.1:{bound}/  ({", ".join(s.name for s in simulators)})
  Store        {store_url}
  Demo token   {token}

GraphiQL's Headers already hold the demo token:
  {{"Authorization": "Bearer {token}"}}

Example operation:
{EXAMPLE_MUTATION}

Variables:
{json.dumps(EXAMPLE_VARIABLES, indent=2)}

Or from a shell:
  curl -s http://{host}:{port}/graphql -H 'Authorization: Bearer {token}' \\
       -H 'Content-Type: application/json' -d '{curl_body}'

Ctrl-C stops everything.
""",
        flush=True,
    )
    try:
        await server.serve()
    finally:
        await runner.cleanup()


async def _simulate(host: str, port: int) -> None:
    simulators = [plugin.simulator() for plugin in REGISTRY.values()]
    runner, bound = await start_simulators(simulators, host=host, port=port)
    tables = {
        plugin.vendor.value: plugin.demo_config(f"http://{host}:{bound}/{plugin.vendor.value}/")
        for plugin in REGISTRY.values()
    }
    print(f"# Simulators at http://{host}:{bound}/ -- vendor tables for a gateway config:\n", flush=True)
    print(tomli_w.dumps({"vendors": tables}), flush=True)
    print("# Ctrl-C stops them.", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


@contextlib.contextmanager
def _metrics_dir(workers: int) -> Iterator[None]:
    """With several workers, a fresh `PROMETHEUS_MULTIPROC_DIR` for their metric files (set before they start, so
    each writes there and `/metrics` sums them); removed afterwards. A directory set by the operator is kept."""
    if workers <= 1 or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="contact-gateway-metrics-") as directory:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
        try:
            yield
        finally:
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `contact-gateway` console script."""
    parser = argparse.ArgumentParser(prog="contact-gateway", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="the five simulators and the gateway in one process")
    demo.add_argument("--host", default="127.0.0.1", help="address the gateway listens on (default: 127.0.0.1)")
    demo.add_argument("--port", type=_port, default=8000, help="the gateway's port (default: 8000)")
    demo.add_argument("--simulator-port", type=_port, default=8100, help="the vendor simulators' port (default: 8100)")
    demo.add_argument("--token", default=None, help="demo bearer token (default: a new random one)")
    demo.add_argument("--store", default=None, help="store URL (default: a fresh SQLite file in a temp dir)")
    demo.add_argument(
        "--graphiql-assets",
        default=None,
        help="node_modules holding GraphiQL's pinned files (default: the repository's graphiql/node_modules, "
        "installed with npm when missing)",
    )

    serve = commands.add_parser("serve", help="run the gateway with a configuration file")
    serve.add_argument(
        "--config", default=os.environ.get("CONTACT_GATEWAY_CONFIG"), help="TOML file (or CONTACT_GATEWAY_CONFIG)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8000, help="port to listen on, 1-65535 (default: 8000)")
    serve.add_argument("--workers", type=_workers, default=1, help="worker processes, 1-64 (default: 1)")

    simulate = commands.add_parser("simulate", help="run the vendor simulators alone")
    simulate.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    simulate.add_argument("--port", type=_port, default=8100, help="port to listen on (default: 8100)")

    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            token = args.token or "demo-" + secrets.token_urlsafe(24)
            assets = Path(args.graphiql_assets).resolve() if args.graphiql_assets else assets_dir(ServerConfig())
            with tempfile.TemporaryDirectory(prefix="contact-gateway-demo-") as tmp:
                store = args.store or f"sqlite:///{Path(tmp) / 'demo.db'}"
                with contextlib.suppress(KeyboardInterrupt):
                    full = _prepare_graphiql(assets)
                    asyncio.run(_demo(args.host, args.port, args.simulator_port, token, store, assets, full))
        elif args.command == "serve":
            if not args.config:
                raise ConfigError("serve needs --config FILE (or CONTACT_GATEWAY_CONFIG)")
            config_path = str(Path(args.config).resolve())
            config = load_config(config_path)  # fail fast, with one clear message, before any worker starts
            problem = asyncio.run(_store_problem(config.store.url))
            if problem is not None:
                # In the workers it was a traceback in each one's start-up (and with --workers 2 an exit status 0).
                raise ConfigError(f"store.url: the store cannot be opened: {problem}")
            refuse_embedded_headers(config)
            graphiql_page(config.server)
            os.environ["CONTACT_GATEWAY_CONFIG"] = config_path
            configure_logging(config.logging)
            # uvicorn shuts down gracefully on SIGTERM, then raises the signal again with the handler found before
            # it started: make that an exit with status 0 (a clean stop), not death by the signal.
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            with _metrics_dir(args.workers):
                uvicorn.run(
                    "graph.app:app_from_env",
                    factory=True,
                    host=args.host,
                    port=args.port,
                    workers=args.workers,
                    loop="uvloop",
                    http="httptools",
                    log_config=None,  # our JSON logging (configure_logging), in every worker too
                    # SIGTERM: stop accepting, let requests in flight finish up to this long, then shut down.
                    timeout_graceful_shutdown=math.ceil(config.server.shutdown_grace_s),
                    timeout_keep_alive=math.ceil(config.server.keep_alive_s),
                    # uvicorn trusts X-Forwarded-For from 127.0.0.1 unless told otherwise: only the configured proxies.
                    proxy_headers=bool(config.server.forwarded_allow_ips),
                    forwarded_allow_ips=",".join(config.server.forwarded_allow_ips) or "",
                )
        else:
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(_simulate(args.host, args.port))
    except ConfigError as exc:
        print(f"contact-gateway: configuration error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
