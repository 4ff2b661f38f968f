"""The README's first command: `contact-gateway demo` runs the simulators and the gateway, and Ctrl-C stops it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import tomli_w

from graph.cli import EXAMPLE_MUTATION, EXAMPLE_VARIABLES, main
from tests.conftest import READ_TOKEN, free_port


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


async def _read_until(stream: asyncio.StreamReader, marker: str) -> str:
    text = ""
    while marker not in text:
        line = await asyncio.wait_for(stream.readline(), timeout=30)
        if not line:
            raise AssertionError(f"stream ended before {marker!r}: {text}")
        text += line.decode()
    return text


async def test_simulate_prints_a_config_that_serve_runs_with(tmp_path: Path) -> None:
    """`simulate` prints vendor tables; `serve --workers 2` started on them writes to every simulator."""
    sim_port, port = free_port(), free_port()
    simulate = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "graph.cli",
        "simulate",
        "--port",
        str(sim_port),
        stdout=asyncio.subprocess.PIPE,
    )
    serve: asyncio.subprocess.Process | None = None
    log_path = tmp_path / "serve.log"
    serve_log = log_path.open("wb")
    try:
        assert simulate.stdout is not None
        tables = await _read_until(simulate.stdout, "Ctrl-C")
        token = "serve-token-0123456789abcdef"
        config = tmp_path / "gateway.toml"
        config.write_text(
            # GraphiQL's npm files may be absent here (tests/test_graphiql.py covers serve without them).
            "[server]\ngraphiql_fallback = true\n\n"
            f'[store]\nurl = "sqlite:///{tmp_path / "serve.db"}"\n\n'
            '[[auth.tokens]]\nname = "svc"\ntoken = "${SVC_TOKEN}"\nscopes = ["contacts:read", "contacts:write"]\n\n'
            + tables
        )
        serve = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "graph.cli",
            "serve",
            "--config",
            str(config),
            "--port",
            str(port),
            "--workers",
            "2",
            env={**os.environ, "SVC_TOKEN": token},
            stdout=serve_log,
            stderr=serve_log,
        )
        async with httpx.AsyncClient(timeout=30) as client:
            await _wait_until_up(client, f"http://127.0.0.1:{port}/healthz", serve)
            answer = await client.post(
                f"http://127.0.0.1:{port}/graphql",
                json={"query": EXAMPLE_MUTATION, "variables": EXAMPLE_VARIABLES},
                headers={"Authorization": f"Bearer {token}"},
            )
            payload = answer.json()["data"]["upsertContact"]
            assert payload["status"] == "SUCCEEDED", payload
            for vendor in {r["vendor"].lower() for r in payload["results"]}:
                state = (await client.get(f"http://127.0.0.1:{sim_port}/{vendor}/_admin/state")).json()
                assert len(state["records"]) == 1, vendor
    finally:
        for name, process in (("serve", serve), ("simulate", simulate)):
            if process is not None and process.returncode is None:
                process.send_signal(signal.SIGINT)
                try:
                    await asyncio.wait_for(process.wait(), timeout=60)
                except TimeoutError:
                    process.kill()
                    raise AssertionError(
                        f"{name} did not stop within 60 s of Ctrl-C; serve's log:\n{log_path.read_text()}"
                    ) from None
        serve_log.close()
    assert simulate.returncode == 0
    assert serve is not None and serve.returncode == 0, log_path.read_text()


def _bad_serve_config(tmp_path: Path, extra: dict[str, Any]) -> Path:
    data: dict[str, Any] = {
        "server": {"graphiql": False},
        "store": {"url": f"sqlite:///{tmp_path / 'serve.db'}"},
        "auth": {"tokens": [{"name": "svc", "token": READ_TOKEN, "scopes": ["contacts:read"]}]},
    }
    for table, values in extra.items():
        data[table] = {**data.get(table, {}), **values}
    path = tmp_path / "gateway.toml"
    path.write_text(tomli_w.dumps(data))
    return path


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"store": {"url": "mysql://x/y"}}, "store.url: unsupported store 'mysql'"),
        ({"store": {"url": "sqlite:////nonexistent/dir/x.db"}}, "store.url: the store cannot be opened: "),
        ({"store": {"url": "postgresql://postgres@127.0.0.1:1/nope"}}, "store.url: the store cannot be opened: "),
        (
            {"auth": {"jwt": {"issuer": "i", "audience": "a", "algorithms": ["RS256"], "jwks_url": "notaurl"}}},
            "auth.jwt.jwks_url: ",
        ),
        ({"telemetry": {"otlp_endpoint": "not a url"}}, "telemetry.otlp_endpoint: "),
    ],
    ids=["unsupported-store", "sqlite-dir-missing", "postgresql-unreachable", "jwks-url", "otlp-endpoint"],
)
def test_serve_refuses_a_bad_store_or_url_with_one_line_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: dict[str, Any], expected: str
) -> None:
    """Each of these started (or crashed) in the workers: a traceback per worker, an exit status of 3, or 0 with
    `--workers 2`; a bad tracing endpoint failed at every span export. Now `serve` stops first, exit 2."""
    config = _bad_serve_config(tmp_path, extra)
    assert main(["serve", "--config", str(config), "--port", str(free_port()), "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"contact-gateway: configuration error: {expected}"), err
    assert err.count("\n") == 1 and "Traceback" not in err, err


def test_serve_names_a_config_file_it_cannot_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b"[server]\ngraphiql = false # caf\xe9\n")
    for path, expected in ((latin, "not UTF-8 text"), (tmp_path, "is a directory")):
        assert main(["serve", "--config", str(path)]) == 2
        err = capsys.readouterr().err
        assert expected in err and err.count("\n") == 1, err
