"""Node.js for tests: the scripts in `tests/federation/` (composition, a federation gateway, the graphql-http audit).

A test calls `require_node()` first. Without Node.js 20+ or without the packages `npm ci --prefix tests/federation`
installs, the test is skipped with the reason, except under `CI=true`, where that is a failure (`.ci/run` installs
both, so CI always runs every test).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.databases import in_ci

#: The npm project: package.json, the committed package-lock.json, and the scripts.
FEDERATION = Path(__file__).resolve().parent / "federation"
MIN_NODE_MAJOR = 20

_problem: list[str | None] = []


def _find_problem() -> str | None:
    node = shutil.which("node")
    if node is None:
        return f"node is not on PATH: install Node.js {MIN_NODE_MAJOR}+ and run `npm ci --prefix tests/federation`"
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False).stdout.strip()
    major = version.lstrip("v").split(".", 1)[0]
    if not major.isdigit() or int(major) < MIN_NODE_MAJOR:
        return f"node {version or '(unknown version)'} is too old: Node.js {MIN_NODE_MAJOR}+ is needed"
    wanted = json.loads((FEDERATION / "package.json").read_text())["dependencies"]
    missing = [name for name in wanted if not (FEDERATION / "node_modules" / name / "package.json").is_file()]
    if missing:
        return f"npm packages missing ({', '.join(missing)}): run `npm ci --prefix tests/federation`"
    return None


def require_node() -> None:
    """Skip the test (fail it under `CI=true`) when Node.js or the installed npm packages are missing, saying why."""
    if not _problem:
        _problem.append(_find_problem())
    problem = _problem[0]
    if problem is not None:
        if in_ci():
            pytest.fail(f"CI=true needs Node.js: {problem}", pytrace=False)
        pytest.skip(problem)


@dataclass(frozen=True, slots=True)
class Completed:
    """A finished node script: exit status and output."""

    returncode: int
    stdout: str
    stderr: str


async def run_script(script: str, *args: str, timeout_s: float = 120) -> Completed:
    """Run `node tests/federation/<script> args...` without blocking the event loop (servers in it must answer)."""
    process = await asyncio.create_subprocess_exec(
        "node",
        script,
        *args,
        cwd=FEDERATION,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return Completed(process.returncode, stdout.decode(), stderr.decode())
