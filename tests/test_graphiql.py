"""GraphiQL offline: pinned files served by the gateway, only local URLs, start-up checks, the demo prefill, fallback.

Tests that need the installed npm files (`npm ci --prefix graphiql`) skip without them, saying why, except under
`CI=true`, where that is a failure (`.ci/run` installs them). The browser test is tests/test_graphiql_browser.py.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import shutil
import signal
import sys
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import strawberry
import tomli_w

from graph import graphiql
from graph.app import create_app
from graph.cli import EXAMPLE_MUTATION, EXAMPLE_VARIABLES, demo_example, main
from graph.graphiql import ASSETS, NPM_PROJECT, assets_problem, external_references, install_assets
from resolvers.config import GatewayConfig, GraphiQLExample, ServerConfig, build_config, load_config
from resolvers.errors import ConfigError
from tests.conftest import READ_TOKEN, WRITE_TOKEN, Gateway, Simulators, free_port, gateway_config_data, serve, stop
from tests.databases import in_ci

HTML = {"Accept": "text/html"}
STRAWBERRY_PAGE = Path(strawberry.__file__).parent / "static" / "graphiql.html"


def require_assets() -> Path:
    """The installed npm files; otherwise skip (fail under `CI=true`) saying how to install them."""
    directory = NPM_PROJECT / "node_modules"
    problem = assets_problem(directory)
    if problem is not None:
        message = f"{problem}: run `npm ci --prefix graphiql`"
        if in_ci():
            pytest.fail(f"CI=true needs GraphiQL's npm files: {message}", pytrace=False)
        pytest.skip(message)
    return directory


def example_block(page: str) -> dict[str, str]:
    """The JSON data block the page's script fills the editors from."""
    match = re.search(r'<script id="graphiql-example" type="application/json">(.*?)</script>', page, re.S)
    assert match, page
    data: dict[str, str] = json.loads(match.group(1))
    return data


class _Urls(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value or "" for name, value in attrs if name in {"src", "href"}]


def urls_in(page: str) -> list[str]:
    parser = _Urls()
    parser.feed(page)
    return parser.urls


async def page_of(gateway: Gateway) -> str:
    response = await gateway.client.get(f"{gateway.url}/graphql", headers=HTML)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    return response.text


# --- what is pinned ----------------------------------------------------------------------------------------------


def test_pinned_files_are_strawberrys_and_the_lockfiles() -> None:
    """Same packages, versions, files and SRI hashes as strawberry's unpkg page; package.json and lockfile agree."""
    stock = STRAWBERRY_PAGE.read_text()
    tags = re.findall(
        r'(?:src|href)="https://unpkg\.com/((?:@[^/]+/)?[^@/]+)@([^/]+)/([^"]+)"\s+integrity="([^"]+)"', stock
    )
    assert tags, "strawberry's page no longer loads from unpkg: revisit graph/graphiql.py"
    assert sorted(tags) == sorted((a.package, a.version, a.file, a.integrity) for a in ASSETS)
    assert len(re.findall(r"https://unpkg\.com/", stock)) == len(tags), "strawberry's page loads more than pinned"

    pinned = {a.package: a.version for a in ASSETS}
    assert json.loads((NPM_PROJECT / "package.json").read_text())["dependencies"] == pinned
    lock = json.loads((NPM_PROJECT / "package-lock.json").read_text())
    assert lock["packages"][""]["dependencies"] == pinned
    for package, version in pinned.items():
        entry = lock["packages"][f"node_modules/{package}"]
        assert entry["version"] == version
        assert entry["integrity"].startswith("sha512-")


# --- the page ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("render", [graphiql.render_page, graphiql.render_fallback], ids=["graphiql", "fallback"])
def test_the_pages_reference_only_local_urls(render: Callable[[GraphiQLExample], str]) -> None:
    # The example may well contain URLs (a WEB detail): data, not something the page loads.
    variables = {"input": {"id": "C-1", "details": [{"kind": "WEB", "value": "https://example.com/ada"}]}}
    page = render(GraphiQLExample(query=EXAMPLE_MUTATION, variables=variables))
    assert external_references(page) == []
    for url in urls_in(page):
        assert url.startswith(("/graphiql/", "data:")) and not url.startswith("//"), url
    assert "unpkg" not in page and "cdn" not in page.lower()


def test_the_graphiql_page_loads_exactly_the_pinned_files() -> None:
    page = graphiql.render_page(GraphiQLExample(query="{ vendors { vendor } }"))
    assert sorted(u for u in urls_in(page) if u.startswith("/graphiql/")) == sorted(a.url for a in ASSETS)
    for asset in ASSETS:
        assert f'integrity="{asset.integrity}"' in page


@pytest.mark.parametrize(
    "page",
    [
        '<script src="https://unpkg.com/react@18.2.0/umd/react.production.min.js"></script>',
        '<link rel="stylesheet" href="//cdn.example.com/graphiql.css">',
        '<link rel="stylesheet" href="HTTP://cdn.example.com/graphiql.css">',
        '<img srcset="/a.png 1x, https://cdn.example.com/a.png 2x">',
        "<style>@font-face { src: url('https://fonts.example.com/f.woff2') }</style>",
        '<style>@import "//fonts.example.com/css";</style>',
        '<div style="background: url(http://cdn.example.com/x.png)"></div>',
        '<script>fetch("https://telemetry.example.com/ping")</script>',
        "<script>const ws = new WebSocket('wss://example.com/graphql')</script>",
        '<meta http-equiv="refresh" content="0; url=https://example.com/">',
    ],
)
def test_another_host_anywhere_in_a_page_is_found(page: str) -> None:
    assert external_references(page) != []


def test_local_urls_and_json_data_are_not_references() -> None:
    page = """
      <link rel="icon" href="data:," /><link rel="stylesheet" href="/graphiql/graphiql@3.8.3/graphiql.min.css" />
      <script src="graphiql/x.js"></script><a href="#top">top</a>
      <script id="graphiql-example" type="application/json">{"headers": "https://example.com"}</script>
      <script>// a comment, then code
        const url = window.location.href.split("?")[0]; fetch(url);</script>
    """
    assert external_references(page) == []


def test_start_up_fails_when_the_page_would_name_another_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stock = STRAWBERRY_PAGE.read_text()
    monkeypatch.setattr(graphiql, "render_fallback", lambda example: stock)
    config = build_config({"server": {"graphiql_assets": str(tmp_path), "graphiql_fallback": True}})
    with pytest.raises(ConfigError) as raised:
        create_app(config)
    message = str(raised.value)
    assert message.startswith("server.graphiql: the GraphiQL page would load https://unpkg.com/")
    assert "another host" in message


# --- where the files are -----------------------------------------------------------------------------------------


def test_start_up_fails_naming_the_key_and_the_fix_when_the_files_are_missing(tmp_path: Path) -> None:
    config = build_config({"server": {"graphiql_assets": str(tmp_path / "node_modules")}})
    with pytest.raises(ConfigError) as raised:
        create_app(config)
    message = str(raised.value)
    assert message.startswith(f"server.graphiql_assets: GraphiQL's files are not installed in {tmp_path}")
    assert "`npm ci --prefix graphiql`" in message
    assert "server.graphiql_fallback = true" in message


def test_start_up_names_the_files_missing_from_a_partial_install(tmp_path: Path) -> None:
    (tmp_path / "react" / "umd").mkdir(parents=True)
    (tmp_path / "react" / "umd" / "react.production.min.js").write_text("/* react */")
    with pytest.raises(ConfigError) as raised:
        create_app(build_config({"server": {"graphiql_assets": str(tmp_path)}}))
    assert "(graphiql@3.8.3/graphiql.min.css, @graphiql/plugin-explorer@1.0.2/dist/style.css, react-dom@" in str(
        raised.value
    )
    assert "react@18.2.0" not in str(raised.value)


def test_start_up_fails_when_the_files_are_not_the_pinned_bytes(tmp_path: Path) -> None:
    for asset in ASSETS:
        path = tmp_path / asset.package / asset.file
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("/* some other version */")
    with pytest.raises(ConfigError, match=r"server\.graphiql_assets: .* is not .*@.* as pinned"):
        create_app(build_config({"server": {"graphiql_assets": str(tmp_path)}}))


def test_without_graphiql_nothing_is_needed(tmp_path: Path) -> None:
    create_app(build_config({"server": {"graphiql": False, "graphiql_assets": str(tmp_path)}}))


def test_the_default_location_is_the_repositorys_npm_project() -> None:
    assert graphiql.assets_dir(ServerConfig()) == Path(__file__).resolve().parents[1] / "graphiql" / "node_modules"
    assert graphiql.assets_dir(ServerConfig(graphiql_assets="/opt/gi/node_modules")) == Path("/opt/gi/node_modules")


def _serve_config(tmp_path: Path, server: dict[str, Any]) -> Path:
    path = tmp_path / "gateway.toml"
    data = {
        "server": server,
        "store": {"url": f"sqlite:///{tmp_path / 'serve.db'}"},
        "auth": {"tokens": [{"name": "svc", "token": READ_TOKEN, "scopes": ["contacts:read"]}]},
    }
    path.write_text(tomli_w.dumps(data))
    return path


def test_serve_stops_with_one_clear_message_when_the_files_are_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _serve_config(tmp_path, {"graphiql_assets": str(tmp_path / "nothing")})
    assert main(["serve", "--config", str(config), "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert err.startswith("contact-gateway: configuration error: server.graphiql_assets: GraphiQL's files are not")
    assert "npm ci --prefix graphiql" in err
    assert err.count("\n") == 1


def test_serve_never_embeds_headers_in_a_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    example = {"query": "{ vendors { vendor } }", "headers": {"Authorization": f"Bearer {READ_TOKEN}"}}
    config = _serve_config(tmp_path, {"graphiql_fallback": True, "graphiql_example": example})
    assert main(["serve", "--config", str(config), "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert "server.graphiql_example.headers: a served GraphiQL page never carries headers" in err


# --- serving -----------------------------------------------------------------------------------------------------


async def test_the_pinned_files_are_served_with_their_content_types(gateway: Gateway) -> None:
    require_assets()
    for asset in ASSETS:
        response = await gateway.client.get(f"{gateway.url}{asset.url}")
        assert response.status_code == 200, asset.url
        expected = "text/css" if asset.file.endswith(".css") else "text/javascript"
        assert response.headers["content-type"] == f"{expected}; charset=utf-8"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert "immutable" in response.headers["cache-control"]
        digest = base64.b64encode(hashlib.sha384(response.content).digest()).decode()
        assert f"sha384-{digest}" == asset.integrity
    # Nothing else of node_modules is reachable.
    for path in ("/graphiql/graphiql@3.8.3/package.json", "/graphiql/react@18.2.0/index.js", "/graphiql/"):
        assert (await gateway.client.get(f"{gateway.url}{path}")).status_code == 404, path


async def test_the_demo_prefill_reaches_the_page(make_gateway: Callable[..., Any]) -> None:
    require_assets()
    gateway = await make_gateway(tables={"server": {"graphiql_example": demo_example(WRITE_TOKEN)}})
    page = await page_of(gateway)
    assert "/graphiql/graphiql@3.8.3/graphiql.min.js" in page
    example = example_block(page)
    assert example["query"] == EXAMPLE_MUTATION
    assert json.loads(example["variables"]) == EXAMPLE_VARIABLES
    assert json.loads(example["headers"]) == {"Authorization": f"Bearer {WRITE_TOKEN}"}


@pytest.mark.parametrize("files", ["installed", "fallback"])
async def test_the_page_is_never_cached_framed_or_sniffed_and_answers_head(
    make_gateway: Callable[..., Any], tmp_path: Path, files: str
) -> None:
    """demo's page carries its token: nothing may keep a copy (no-store) or frame it on another site (it runs
    writes). HEAD answers as GET does, without a token, as the 405 for other methods advertises; HEAD of anything
    but the page is still refused."""
    server: dict[str, Any] = {"graphiql_example": demo_example(WRITE_TOKEN)}
    if files == "installed":
        require_assets()
    else:
        server["graphiql_assets"] = str(tmp_path / "absent")
    gateway = await make_gateway(tables={"server": server})
    get = await gateway.client.get(f"{gateway.url}/graphql", headers=HTML)
    head = await gateway.client.head(f"{gateway.url}/graphql", headers=HTML)
    for response in (get, head):
        assert response.status_code == 200, response
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["content-security-policy"] == "frame-ancestors 'none'"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
    assert head.headers["content-type"] == get.headers["content-type"] and head.content == b""
    put = await gateway.client.put(f"{gateway.url}/graphql", headers=HTML)
    assert put.status_code == 405 and "HEAD" in put.headers["allow"], put.headers
    json_head = await gateway.client.head(f"{gateway.url}/graphql", headers={"Accept": "application/json"})
    assert json_head.status_code == 401  # not the page: a GraphQL request, which needs a token
    page = get.text
    assert "shouldPersistHeaders: false" in page or files == "fallback"
    assert "parameters.headers" not in page  # the editor's headers never come from the URL


async def test_the_fallback_page_is_prefilled_the_same_way(make_gateway: Callable[..., Any], tmp_path: Path) -> None:
    server = {"graphiql_assets": str(tmp_path / "absent"), "graphiql_example": demo_example(WRITE_TOKEN)}
    gateway = await make_gateway(tables={"server": server})
    page = await page_of(gateway)
    assert 'id="run"' in page and "graphiql.min.js" not in page
    example = example_block(page)
    assert example["query"] == EXAMPLE_MUTATION
    assert json.loads(example["headers"]) == {"Authorization": f"Bearer {WRITE_TOKEN}"}
    assert (await gateway.client.get(f"{gateway.url}/graphiql/graphiql@3.8.3/graphiql.min.js")).status_code == 404


@pytest.mark.parametrize("files", ["installed", "fallback"])
async def test_no_token_is_in_the_page_serve_renders(simulators: Simulators, tmp_path: Path, files: str) -> None:
    if files == "installed":
        require_assets()
    data = gateway_config_data(simulators, f"sqlite:///{tmp_path / 'serve.db'}")
    absent = {"graphiql_assets": str(tmp_path / "absent"), "graphiql_fallback": True}
    data["server"] = {} if files == "installed" else absent
    path = tmp_path / "gateway.toml"
    path.write_text(tomli_w.dumps(data))
    config: GatewayConfig = load_config(path)  # what `serve` reads
    graphiql.refuse_embedded_headers(config)
    server, task, url = await serve(config)
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            page = (await client.get(f"{url}/graphql", headers=HTML)).text
    finally:
        await stop(server, task)
    assert ("graphiql.min.js" in page) == (files == "installed")
    for token in config.auth.tokens:
        assert token.token.get_secret_value() not in page
    assert "Bearer" not in example_block(page)["headers"]
    assert "upsertContact" in page  # the welcome text points at it, without a token


# --- the demo's own set-up ---------------------------------------------------------------------------------------


def _npm_project_copy(tmp_path: Path) -> Path:
    """A copy of graphiql/ without node_modules: what a fresh checkout has."""
    project = tmp_path / "graphiql"
    project.mkdir()
    for name in ("package.json", "package-lock.json", ".npmrc"):
        shutil.copy(NPM_PROJECT / name, project / name)
    return project


def _fake_npm(directory: Path, ci: str) -> Path:
    """An `npm` that logs its arguments; `ping` answers, `ci` runs the given shell lines."""
    directory.mkdir()
    script = directory / "npm"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{directory / "calls"}"\nif [ "$1" = ping ]; then exit 0; fi\n{ci}\n')
    script.chmod(0o755)
    return directory


async def _run_demo(tmp_path: Path, path_dirs: list[Path], assets: Path) -> tuple[str, str, str]:
    """Start `contact-gateway demo` with this PATH and assets dir; its output, its page, and its POST answer."""
    port, sim_port = free_port(), free_port()
    token = "demo-token-for-graphiql-0123456789"
    env = {**os.environ, "PATH": os.pathsep.join(str(d) for d in path_dirs)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "graph.cli", "demo", "--port", str(port), "--simulator-port", str(sim_port), "--token", token),
        *("--graphiql-assets", str(assets)),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
        cwd=tmp_path,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(300):
                assert process.returncode is None, f"demo exited early with {process.returncode}"
                try:
                    if (await client.get(f"{base}/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            page = (await client.get(f"{base}/graphql", headers=HTML)).text
            example = example_block(page)
            answer = await client.post(
                f"{base}/graphql",
                json={"query": example["query"], "variables": json.loads(example["variables"])},
                headers=json.loads(example["headers"]),
            )
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode == 0, output.decode()
    return output.decode(), page, answer.text


async def test_demo_without_npm_says_so_and_serves_the_prefilled_fallback(tmp_path: Path) -> None:
    project = _npm_project_copy(tmp_path)
    empty = tmp_path / "empty-path"
    empty.mkdir()
    output, page, answer = await _run_demo(tmp_path, [empty], project / "node_modules")
    assert "GraphiQL: npm is not installed" in output
    assert "serving a minimal built-in page instead" in output
    assert "npm ci --prefix graphiql" in output
    assert "Traceback" not in output
    assert 'id="run"' in page and "graphiql.min.js" not in page
    assert "Bearer demo-token-for-graphiql-0123456789" in example_block(page)["headers"]
    results = json.loads(answer)["data"]["upsertContact"]["results"]
    assert {r["status"] for r in results} == {"CREATED"}


async def test_demo_runs_npm_ci_itself_and_falls_back_when_it_fails(tmp_path: Path) -> None:
    project = _npm_project_copy(tmp_path)
    npm = _fake_npm(tmp_path / "bin", 'echo "npm error network: offline" >&2; exit 1')
    output, page, _ = await _run_demo(tmp_path, [npm], project / "node_modules")
    calls = (npm / "calls").read_text().splitlines()
    assert calls[0].startswith("ping")
    assert calls[1] == f"ci --prefix {project}"
    assert f"GraphiQL: {npm / 'npm'} ci --prefix {project}" in output
    assert "GraphiQL: npm ci failed (exit status 1)" in output
    assert "serving a minimal built-in page instead" in output
    assert 'id="run"' in page


def test_install_assets_accepts_what_npm_ci_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    installed = require_assets()
    project = _npm_project_copy(tmp_path)
    # This npm's `ci` copies the pinned files where the real one would put them (no network in a unit test).
    lines = [f'mkdir -p "$3/node_modules/{a.package}/{Path(a.file).parent}"' for a in ASSETS]
    lines += [f'cp "{installed / a.package / a.file}" "$3/node_modules/{a.package}/{a.file}"' for a in ASSETS]
    npm = _fake_npm(tmp_path / "bin", "\n".join(lines))
    monkeypatch.setenv("PATH", f"{npm}{os.pathsep}/usr/bin{os.pathsep}/bin")
    said: list[str] = []
    assert install_assets(project / "node_modules", echo=said.append), said
    assert assets_problem(project / "node_modules") is None
    assert said[-1] == f"GraphiQL: {npm / 'npm'} ci --prefix {project}"


def test_install_assets_refuses_a_directory_outside_an_npm_project(tmp_path: Path) -> None:
    said: list[str] = []
    assert not install_assets(tmp_path / "assets", echo=said.append)
    assert "not the node_modules of an npm project" in said[0]
