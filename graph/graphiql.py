"""GraphiQL served by the gateway itself: pinned npm files, a page with only local URLs, and a built-in fallback.

Strawberry's stock page loads React, GraphiQL and the explorer plugin from unpkg and never finishes loading without
internet. The gateway serves the same files at the same versions (the npm project `graphiql/`, installed by
`npm ci --prefix graphiql`) and refuses to start when its page would still name another host.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Literal

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Route

from resolvers.config import GatewayConfig, GraphiQLExample, ServerConfig
from resolvers.errors import ConfigError

log = logging.getLogger(__name__)

#: Where the page finds its files: `/graphiql/<package>@<version>/<file>`, the same layout as unpkg.
ASSETS_PATH = "/graphiql"
#: The npm project whose lockfile pins the files (`npm ci --prefix graphiql` installs them into its node_modules).
NPM_PROJECT = Path(__file__).resolve().parents[1] / "graphiql"
INSTALL_HINT = "npm ci --prefix graphiql"

_TEMPLATES = Path(__file__).parent / "templates"
_MEDIA_TYPES = {".js": "text/javascript", ".css": "text/css"}

#: What the editors hold when no example is configured (`serve`): how to authenticate, never a token.
WELCOME_QUERY = """# contact-gateway: every operation needs a bearer token.
# Open Headers (below) and enter {"Authorization": "Bearer <your token>"},
# then write an operation here and run it with Ctrl-Enter.
#
# The explorer (left) lists every query and mutation, e.g. upsertContact.

{
  vendors { vendor }
}
"""


@dataclass(frozen=True)
class Asset:
    """One file of a pinned npm package that the page loads, with the SRI hash strawberry's page pins for it."""

    package: str
    version: str
    file: str
    integrity: str
    place: Literal["head", "body"]

    @property
    def url(self) -> str:
        """The path the gateway serves the file at."""
        return f"{ASSETS_PATH}/{self.package}@{self.version}/{self.file}"

    @property
    def media_type(self) -> str:
        """The file's content type."""
        return _MEDIA_TYPES[Path(self.file).suffix]

    def tag(self) -> str:
        """The `<script>` or `<link>` element loading the file, with its integrity hash."""
        attrs = f'integrity="{self.integrity}" crossorigin="anonymous"'
        if self.media_type == "text/css":
            return f'    <link rel="stylesheet" href="{self.url}" {attrs} />'
        return f'    <script src="{self.url}" {attrs}></script>'


# The files, versions and hashes of strawberry-graphql 0.341's strawberry/static/graphiql.html, whose unpkg URLs these
# replace; `graphiql/package.json` pins the same versions (tests/test_graphiql.py compares all three).
ASSETS: tuple[Asset, ...] = (
    Asset(
        "graphiql",
        "3.8.3",
        "graphiql.min.css",
        "sha384-Mq3vbRBY71jfjQAt/DcjxUIYY33ksal4cgdRt9U/hNPvHBCaT2JfJ/PTRiPKf0aM",
        "head",
    ),
    Asset(
        "@graphiql/plugin-explorer",
        "1.0.2",
        "dist/style.css",
        "sha384-5DFJlDPW2tSATRbM8kzoP1j194jexLswuNmClWoRr2Q0x7R68JIQzPHZ02Faktwi",
        "head",
    ),
    Asset(
        "react",
        "18.2.0",
        "umd/react.production.min.js",
        "sha384-tMH8h3BGESGckSAVGZ82T9n90ztNXxvdwvdM6UoR56cYcf+0iGXBliJ29D+wZ/x8",
        "head",
    ),
    Asset(
        "react-dom",
        "18.2.0",
        "umd/react-dom.production.min.js",
        "sha384-bm7MnzvK++ykSwVJ2tynSE5TRdN+xL418osEVF2DE/L/gfWHj91J2Sphe582B1Bh",
        "head",
    ),
    Asset(
        "js-cookie",
        "3.0.5",
        "dist/js.cookie.min.js",
        "sha384-/vxhYfM1LENRhdpZ8dwEsQn/X4VhpbEZSiU4m/FwR+PVpzar4fkEOw8FP9Y+OfQN",
        "head",
    ),
    Asset(
        "graphiql",
        "3.8.3",
        "graphiql.min.js",
        "sha384-HbRVEFG0JGJZeAHCJ9Xm2+tpknBQ7QZmNlO/DgZtkZ0aJSypT96YYGRNod99l9Ie",
        "body",
    ),
    Asset(
        "@graphiql/plugin-explorer",
        "1.0.2",
        "dist/index.umd.js",
        "sha384-2oonKe47vfHIZnmB6ZZ10vl7T0Y+qrHQF2cmNTaFDuPshpKqpUMGMc9jgj9MLDZ9",
        "body",
    ),
)


@dataclass(frozen=True)
class GraphiQLPage:
    """What the gateway serves for GraphiQL: the page's HTML, and the routes of the files it loads."""

    html: str
    routes: list[BaseRoute]


def assets_dir(server: ServerConfig) -> Path:
    """The node_modules directory `[server] graphiql_assets` names (default: the repository's)."""
    return Path(server.graphiql_assets) if server.graphiql_assets else NPM_PROJECT / "node_modules"


def assets_problem(directory: Path) -> str | None:
    """Why `directory` does not hold the pinned files (missing, or not the pinned bytes); None when it does."""
    missing = [asset for asset in ASSETS if not (directory / asset.package / asset.file).is_file()]
    if missing:
        names = ", ".join(f"{a.package}@{a.version}/{a.file}" for a in missing)
        return f"GraphiQL's files are not installed in {directory}" + ("" if missing == list(ASSETS) else f" ({names})")
    for asset in ASSETS:
        digest = hashlib.sha384((directory / asset.package / asset.file).read_bytes()).digest()
        if f"sha384-{base64.b64encode(digest).decode()}" != asset.integrity:
            return f"{directory / asset.package / asset.file} is not {asset.package}@{asset.version} as pinned"
    return None


def graphiql_page(server: ServerConfig) -> GraphiQLPage | None:
    """The GraphiQL page `[server]` asks for (None when disabled); ConfigError when it cannot be served offline."""
    if not server.graphiql:
        return None
    example = server.graphiql_example or GraphiQLExample(query=WELCOME_QUERY)
    directory = assets_dir(server)
    problem = assets_problem(directory)
    if problem is None:
        page = GraphiQLPage(render_page(example), asset_routes(directory))
    elif server.graphiql_fallback:
        log.warning("%s: serving the built-in minimal page at /graphql (`%s` installs GraphiQL)", problem, INSTALL_HINT)
        page = GraphiQLPage(render_fallback(example), [])
    else:
        raise ConfigError(
            f"server.graphiql_assets: {problem}. Install them with `{INSTALL_HINT}` in the repository, point "
            "server.graphiql_assets at a node_modules directory holding them, set server.graphiql_fallback = true "
            "for a minimal built-in page, or server.graphiql = false"
        )
    external = external_references(page.html)
    if external:
        raise ConfigError(
            f"server.graphiql: the GraphiQL page would load {', '.join(external)} from another host, which never "
            "finishes without internet; every file it loads must come from the gateway"
        )
    return page


def refuse_embedded_headers(config: GatewayConfig) -> None:
    """`serve` never puts a token in a page: `server.graphiql_example.headers` is for `demo` only."""
    if config.server.graphiql_example is not None and config.server.graphiql_example.headers:
        raise ConfigError(
            "server.graphiql_example.headers: a served GraphiQL page never carries headers (they would hand a token "
            "to anyone who opens it); only `contact-gateway demo` pre-fills them"
        )


def render_page(example: GraphiQLExample) -> str:
    """GraphiQL's page: every file from the gateway, the editors opening on `example`."""
    head = "\n".join(asset.tag() for asset in ASSETS if asset.place == "head")
    body = "\n".join(asset.tag() for asset in ASSETS if asset.place == "body")
    return _render("graphiql.html", {"head_assets": head, "body_assets": body, "example": _example_json(example)})


def render_fallback(example: GraphiQLExample) -> str:
    """The dependency-free page: operation, variables and headers boxes, a Run button, the JSON answer."""
    return _render("graphiql-fallback.html", {"example": _example_json(example)})


def asset_routes(directory: Path) -> list[BaseRoute]:
    """One route per pinned file (nothing else of node_modules is reachable), cached for good: URLs carry versions."""

    def endpoint(asset: Asset) -> Callable[[Request], Response]:
        path = directory / asset.package / asset.file

        def serve_file(request: Request) -> Response:
            return FileResponse(
                path,
                media_type=asset.media_type,
                headers={"Cache-Control": "public, max-age=31536000, immutable", "X-Content-Type-Options": "nosniff"},
            )

        return serve_file

    return [Route(asset.url, endpoint(asset), methods=["GET", "HEAD"]) for asset in ASSETS]


def external_references(page: str) -> list[str]:
    """Every URL in `page` that another host would answer: src/href-like attributes, CSS, string literals in scripts.

    JSON data blocks (`<script type="application/json">`) hold the example, which is data, not something loaded.
    """
    parser = _References()
    parser.feed(page)
    parser.close()
    return sorted(set(parser.external))


def install_assets(directory: Path, echo: Callable[[str], None] = print) -> bool:
    """`npm ci` in the npm project around `directory` (`demo` only); False, having said why, when that cannot work."""
    project = directory.parent
    if directory.name != "node_modules" or not (project / "package-lock.json").is_file():
        echo(f"GraphiQL: {directory} is not the node_modules of an npm project with a lockfile; not installing it")
        return False
    npm = shutil.which("npm")
    if npm is None:
        echo(
            "GraphiQL: npm is not installed, so its files cannot be fetched "
            f"(install Node.js and npm, then run `{INSTALL_HINT}`)"
        )
        return False
    # `npm ping` fails within a second offline, where `npm ci` would retry every package for a minute or more.
    steps = (
        ([npm, "ping", "--prefix", str(project), "--fetch-retries=0"], 30, "the npm registry does not answer"),
        ([npm, "ci", "--prefix", str(project)], 600, "npm ci failed"),
    )
    for command, timeout, failure in steps:
        echo(f"GraphiQL: {shlex.join(command)}")
        try:
            completed = subprocess.run(command, timeout=timeout, check=False, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as exc:
            echo(f"GraphiQL: {failure} ({exc})")
            return False
        if completed.returncode != 0:
            echo(f"GraphiQL: {failure} (exit status {completed.returncode})")
            return False
    problem = assets_problem(directory)
    if problem is not None:
        echo(f"GraphiQL: after npm ci, {problem}")
        return False
    return True


def _render(template: str, values: dict[str, str]) -> str:
    text = (_TEMPLATES / template).read_text(encoding="utf-8")
    for name, value in values.items():
        text = text.replace("{{ " + name + " }}", value)
    return text


def _example_json(example: GraphiQLExample) -> str:
    """The example as the page's JSON data block: strings for the editors, safe inside `<script>`."""
    data = {
        "query": example.query,
        "variables": json.dumps(example.variables, indent=2) if example.variables else "",
        "headers": json.dumps(example.headers, indent=2) if example.headers else "",
    }
    text = json.dumps(data, ensure_ascii=False)
    # Inside <script> only `</script>` and `<!--` could end the block: `<`, `>` and `&` as JSON escapes rule both out.
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


# Attributes whose value the browser fetches or navigates to.
_URL_ATTRIBUTES = {"src", "href", "srcset", "action", "formaction", "poster", "data", "background", "manifest"}
# A URL naming a host: a scheme with `//`, or scheme-relative `//host`.
_WITH_HOST = re.compile(r"^\s*(?:[a-z][a-z0-9+.-]*:)?[/\\]{2}", re.IGNORECASE)
_CSS_URL = re.compile(r"""url\(\s*["']?([^"')\s]+)|@import\s+["']([^"']+)""", re.IGNORECASE)
_SCRIPT_URL = re.compile(r"""["'`]\s*((?:[a-z][a-z0-9+.-]*:)?//[^"'`\s]*)""", re.IGNORECASE)


class _References(HTMLParser):
    """Collects URLs naming another host from a page's markup, styles and inline scripts."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.external: list[str] = []
        self._in: Literal["script", "style", "data"] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        for name, value in values.items():
            if name in _URL_ATTRIBUTES:
                urls = [part.split()[0] for part in value.split(",") if part.strip()] if name == "srcset" else [value]
                self.external += [url for url in urls if _WITH_HOST.match(url)]
            elif name == "style":
                self._css(value)
        if tag == "meta" and values.get("http-equiv", "").lower() == "refresh":
            refresh = re.findall(r"url=['\"]?([^'\";\s]+)", values.get("content", ""), re.IGNORECASE)
            self.external += [url for url in refresh if _WITH_HOST.match(url)]
        if tag == "script":
            self._in = "data" if "json" in values.get("type", "").lower() else "script"
        elif tag == "style":
            self._in = "style"

    def handle_endtag(self, tag: str) -> None:
        if tag in {"script", "style"}:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in == "style":
            self._css(data)
        elif self._in == "script":
            self.external += _SCRIPT_URL.findall(data)

    def _css(self, text: str) -> None:
        for match in _CSS_URL.finditer(text):
            url = match.group(1) or match.group(2)
            if _WITH_HOST.match(url):
                self.external.append(url)
