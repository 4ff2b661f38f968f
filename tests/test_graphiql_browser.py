"""GraphiQL in a real browser offline: Debian's chromium driven by Playwright, every non-loopback request blocked.

Needs /usr/bin/chromium (`apt-get install -y chromium`; Playwright never downloads a browser here) and, for GraphiQL
itself, the npm files (`npm ci --prefix graphiql`). Without them the tests skip, saying why, except under `CI=true`,
where that is a failure (`.ci/run` installs both). Screenshots are kept in test-artifacts/.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from playwright.async_api import Page, Route, async_playwright

from graph.cli import EXAMPLE_MUTATION, demo_example
from resolvers.results import Vendor
from tests.conftest import WRITE_TOKEN
from tests.databases import in_ci
from tests.test_graphiql import STRAWBERRY_PAGE, require_assets

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
TIMEOUT_MS = 30_000


def require_chromium() -> None:
    """Skip (fail under `CI=true`) without Debian's chromium."""
    if not CHROMIUM.exists():
        message = f"Debian's chromium is not installed at {CHROMIUM}: apt-get install -y chromium"
        if in_ci():
            pytest.fail(f"CI=true needs a browser: {message}", pytrace=False)
        pytest.skip(message)


@dataclass
class Offline:
    """A browser page that may only reach loopback, and what it tried to reach anyway."""

    page: Page
    blocked: list[str] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


@pytest.fixture
async def offline() -> AsyncIterator[Offline]:
    require_chromium()
    async with async_playwright() as playwright:
        # Playwright's launch gives the browser a fresh, temporary profile.
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True)
        try:
            context = await browser.new_context(viewport={"width": 1440, "height": 900})
            page = await context.new_page()
            state = Offline(page)

            async def only_loopback(route: Route) -> None:
                url = route.request.url
                state.requested.append(url)
                if url.startswith("data:") or urlsplit(url).hostname in LOOPBACK:
                    await route.continue_()
                else:
                    state.blocked.append(url)
                    await route.abort("internetdisconnected")

            await context.route("**/*", only_loopback)
            page.on("websocket", lambda ws: state.requested.append(ws.url))
            page.on("pageerror", lambda error: state.errors.append(str(error)))
            page.set_default_timeout(TIMEOUT_MS)
            yield state
        finally:
            await browser.close()


async def editor_text(page: Page, editor: str) -> str:
    """The whole text of one of GraphiQL's CodeMirror editors (the DOM only holds the visible lines)."""
    text: str = await page.evaluate(
        "(selector) => document.querySelector(selector + ' .CodeMirror').CodeMirror.getValue()", editor
    )
    return text


def assert_only_loopback(state: Offline) -> None:
    assert state.blocked == [], f"the page tried to reach other hosts: {state.blocked}"
    for url in state.requested:
        assert url.startswith("data:") or urlsplit(url).hostname in LOOPBACK, url
    assert state.errors == [], state.errors


async def test_graphiql_works_offline_prefilled_with_the_example(
    offline: Offline, make_gateway: Callable[..., Any]
) -> None:
    require_assets()
    server = {"graphiql_example": demo_example(WRITE_TOKEN), "graphiql_fallback": False}
    gateway = await make_gateway(tables={"server": server})
    page = offline.page
    await page.goto(f"{gateway.url}/graphql")

    # GraphiQL rendered, the editors hold the demo's operation, variables and header.
    await page.locator(".graphiql-query-editor .CodeMirror").wait_for()
    assert await editor_text(page, ".graphiql-query-editor") == EXAMPLE_MUTATION
    assert json.loads(await editor_text(page, ".graphiql-editor-tool .graphiql-editor:not(.hidden)"))["input"]
    await page.get_by_role("button", name="Headers").click()
    headers = json.loads(await editor_text(page, ".graphiql-editor-tool .graphiql-editor:not(.hidden)"))
    assert headers == {"Authorization": f"Bearer {WRITE_TOKEN}"}

    # The documentation explorer lists the mutation (from the schema GraphiQL introspected over loopback).
    await page.get_by_role("button", name="Show Documentation Explorer").click()
    docs = page.locator(".graphiql-doc-explorer")
    await docs.get_by_role("link", name="Mutation", exact=True).click()
    await docs.locator(".graphiql-doc-explorer-field-name", has_text="upsertContact").first.wait_for()

    # Run the pre-filled operation: one result per vendor.
    await page.get_by_role("button", name="Execute query (Ctrl-Enter)").click()
    await page.wait_for_function(
        "() => (document.querySelector('.graphiql-response .CodeMirror')?.CodeMirror.getValue() || '')"
        ".includes('\"results\"')",
        timeout=TIMEOUT_MS,
    )
    answer = json.loads(await editor_text(page, ".graphiql-response"))
    payload = answer["data"]["upsertContact"]
    assert payload["status"] == "SUCCEEDED", payload
    assert {r["vendor"]: r["status"] for r in payload["results"]} == {v.name: "CREATED" for v in Vendor}
    response_pane = await page.locator(".graphiql-response").inner_text()
    assert "ONESERVE" in response_pane and "CREATED" in response_pane

    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "graphiql.png"))
    assert_only_loopback(offline)
    assert any("/graphiql/graphiql@3.8.3/graphiql.min.js" in url for url in offline.requested)

    # The token is in the editor, not in the browser's storage (shouldPersistHeaders: false); a link's `headers`
    # parameter does not replace it (a crafted link could otherwise send writes with another token).
    stored = await page.evaluate("() => JSON.stringify(Object.assign({}, window.localStorage))")
    assert WRITE_TOKEN not in stored, stored
    assert "upsertContact" in json.loads(stored)["graphiql:queries"]  # the history itself is kept
    crafted = json.dumps({"Authorization": "Bearer someone-elses-token"})
    await page.goto(f"{gateway.url}/graphql?headers={quote(crafted)}")
    await page.locator(".graphiql-query-editor .CodeMirror").wait_for()
    await page.get_by_role("button", name="Headers").click()
    headers = json.loads(await editor_text(page, ".graphiql-editor-tool .graphiql-editor:not(.hidden)"))
    assert headers == {"Authorization": f"Bearer {WRITE_TOKEN}"}


async def test_the_fallback_page_runs_the_example_offline(
    offline: Offline, make_gateway: Callable[..., Any], tmp_path: Path
) -> None:
    server = {"graphiql_example": demo_example(WRITE_TOKEN), "graphiql_assets": str(tmp_path / "absent")}
    gateway = await make_gateway(tables={"server": server})
    page = offline.page
    await page.goto(f"{gateway.url}/graphql")
    assert await page.locator("#query").input_value() == EXAMPLE_MUTATION
    assert json.loads(await page.locator("#headers").input_value()) == {"Authorization": f"Bearer {WRITE_TOKEN}"}

    await page.get_by_role("button", name="Run").click()
    result = page.locator("#result")
    await result.filter(has_text='"results"').wait_for()
    payload = json.loads(await result.inner_text())["data"]["upsertContact"]
    assert {r["vendor"]: r["status"] for r in payload["results"]} == {v.name: "CREATED" for v in Vendor}

    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / "graphiql-fallback.png"))
    assert_only_loopback(offline)


async def test_the_guard_blocks_and_records_every_other_host(offline: Offline) -> None:
    """Strawberry's stock page, as a control: its CDN requests are refused and recorded, so `blocked == []` means it."""
    stock = STRAWBERRY_PAGE.read_text()
    await offline.page.set_content(stock, wait_until="load")
    assert any(url.startswith("https://unpkg.com/graphiql@3.8.3/") for url in offline.blocked), offline.blocked
    assert await offline.page.evaluate("typeof window.GraphiQL") == "undefined"
