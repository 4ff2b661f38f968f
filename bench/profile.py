"""Profile a gateway under load with py-spy: `uv run python -m bench.profile --py-spy PATH`.

Starts the simulators and one gateway, drives `upsertContact` at a concurrency, and records the gateway process with
`py-spy record --format raw` (collapsed stacks; idle time is not sampled, so shares are shares of CPU time). Writes
the stacks and a summary (self time by function, inclusive time by function, self time by package) into the out
directory and prints the summary. py-spy is not a dependency: install it apart, e.g.
`python3 -m venv /tmp/py-spy && /tmp/py-spy/bin/pip install py-spy`.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import uvloop

from bench.harness import Harness, Latency, Options
from bench.load import run_turn
from bench.procs import REPO, own_meter, start_simulators
from bench.throughput import contact_ids
from bench.workload import GatewayClient, client_session

#: Where a frame's file lies (its path as py-spy prints it) -> the package it is counted under (first match wins).
_AREAS = (
    ("resolvers/", "project: resolvers/"),
    ("graph/", "project: graph/"),
    ("strawberry/", "strawberry"),
    ("graphql/", "graphql-core"),
    ("pydantic", "pydantic"),
    ("sqlalchemy/", "sqlalchemy"),
    ("aiosqlite/", "aiosqlite/sqlite3"),
    ("sqlite3/", "aiosqlite/sqlite3"),
    ("aiohttp/", "aiohttp (client)"),
    ("yarl/", "aiohttp (client)"),
    ("multidict/", "aiohttp (client)"),
    ("uvicorn/", "uvicorn"),
    ("starlette/", "starlette"),
    ("logging/", "logging"),
    ("asyncio/", "asyncio"),
    ("uvloop/", "asyncio"),
)
#: Leaf frames that are waiting, not working (py-spy's own idle detection misses them on this machine).
_IDLE_LEAVES = ("epoll_wait", "epoll_pwait", "select (", "poll (")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:]*)(?::\d+)?\)$")


def _area(frame: str) -> str:
    match = _FRAME.match(frame)
    where = match["file"] if match else frame
    if ".py" not in where:
        return "native (C: interpreter, uvloop, libc)"
    # py-spy names files relative to their sys.path entry (`aiosqlite/core.py`, `resolvers/store.py`).
    return next((area for prefix, area in _AREAS if where.startswith(prefix) or f"/{prefix}" in where), "other Python")


def _short(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    path = match["file"]
    for marker in ("site-packages/", str(REPO) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{match['func']} ({path})"


def _aiosqlite_wait() -> str:
    """`_connection_worker_thread (aiosqlite/core.py:N)` where N is its `tx.get()`: a thread waiting for work."""
    import aiosqlite.core

    lines, first = inspect.getsourcelines(aiosqlite.core._connection_worker_thread)
    number = next(first + i for i, text in enumerate(lines) if ".get()" in text)
    return f"_connection_worker_thread (aiosqlite/core.py:{number})"


def _pool_wait() -> str:
    """`_worker (concurrent/futures/thread.py:N)` where N is its `work_queue.get`: a pool thread waiting for work
    (the store's writer and reader threads on SQLite)."""
    import concurrent.futures.thread

    lines, first = inspect.getsourcelines(concurrent.futures.thread._worker)
    number = next(first + i for i, text in enumerate(lines) if "work_queue.get(block=True)" in text)
    return f"_worker (concurrent/futures/thread.py:{number})"


def _idle(frames: list[str], *waits: str) -> bool:
    python = [f for f in frames if ".py:" in f]
    if python and python[-1].endswith(waits):
        return True
    return frames[-1].startswith(_IDLE_LEAVES)


def summarise(lines: Iterable[str], top: int = 25) -> str:
    """Self and inclusive time by function and self time by package, from py-spy's collapsed stacks, without the
    samples of threads waiting (epoll, aiosqlite's and thread pools' idle worker threads)."""
    own: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    project: Counter[str] = Counter()
    total = idle = 0
    waits = (_aiosqlite_wait(), _pool_wait())
    for line in lines:
        stack, _, count_text = line.rstrip("\n").rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        if _idle(frames, *waits):
            idle += count
            continue
        total += count
        # Native frames count for the Python function that called them.
        python = [f for f in frames if ".py:" in f or ".py)" in f]
        leaf = python[-1] if python else frames[-1]
        own[_short(leaf)] += count
        areas[_area(leaf)] += count
        for frame in {_short(f) for f in frames if _area(f).startswith("project")}:
            project[frame] += count
    if not total:
        return "no samples"

    def block(title: str, counter: Counter[str], limit: int) -> str:
        rows = [f"| {100 * n / total:5.1f}% | `{name}` |" for name, n in counter.most_common(limit)]
        return f"{title}\n\n| share | where |\n|---|---|\n" + "\n".join(rows)

    return "\n\n".join(
        [
            f"{total} working samples ({idle} more of threads waiting were left out)",
            block("Self time by package (of the innermost Python frame)", areas, len(areas)),
            block("Self time by Python function (C calls count for their caller)", own, top),
            block("Inclusive time by project function (resolvers/, graph/)", project, top),
        ]
    )


def _spawn_py_spy(args: argparse.Namespace, pid: int, stacks: Path) -> subprocess.Popen[bytes]:
    command = [args.py_spy, "record", "--pid", str(pid), "--rate", str(args.rate), "--duration", str(int(args.seconds))]
    command += ["--format", "raw", "--output", str(stacks)] + (["--subprocesses"] if args.workers > 1 else [])
    command += ["--native"] if args.native else []
    command += ["--gil"] if args.gil else []
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


async def profile(args: argparse.Namespace, workdir: Path) -> str:
    options = Options(
        quick=True,
        seconds=args.seconds,
        turns=1,
        concurrency=(args.concurrency,),
        latencies=(Latency.parse(args.latency),),
        scenarios=(),
        mutations=0,
        contacts=0,
        batch=0,
        workers=args.workers,
        out=args.out,
        store_url=args.store_url,
    )
    simulators, base = start_simulators(workdir)
    harness = Harness(options, workdir, simulators, base)
    stacks = args.out / f"profile-{time.strftime('%Y%m%d-%H%M%S')}.txt"
    try:
        gateway = await harness.gateway("profiled", workers=args.workers)
        try:
            await harness.set_latency(options.latencies[0])
            async with client_session() as session:
                client = GatewayClient(session, gateway.url)
                spy = _spawn_py_spy(args, gateway.service.proc.pid, stacks)
                turn = await run_turn(
                    client.upsert,
                    contact_ids("bench-profile"),
                    mode="gateway",
                    latency=options.latencies[0].name,
                    concurrency=args.concurrency,
                    turn=1,
                    seconds=args.seconds + 2,
                    measured=gateway.meter,
                    client=own_meter(),
                )
                _, err = await asyncio.to_thread(spy.communicate)
                if spy.returncode != 0:
                    raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')}")
        finally:
            gateway.stop()
    finally:
        await harness.aclose()
        simulators.stop()
    head = (
        f"py-spy on `serve` at c={args.concurrency}, vendors {options.latencies[0].name}: {turn.ops_per_s:.1f} ops/s, "
        f"p50 {turn.p50_ms:.2f} ms, gateway CPU {turn.cpu_ms_per_op:.2f} ms/op, {turn.errors} errors "
        f"(throughput under py-spy is lower than without it). Stacks: {stacks}"
    )
    return head + "\n\n" + summarise(stacks.read_text(encoding="utf-8").splitlines(), args.top)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--py-spy", required=True, help="the py-spy executable")
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--latency", default="0", help="vendor latency in ms (0, 25 or 20-80)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--rate", type=int, default=200, help="samples per second")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--native", action="store_true", help="sample C frames too (SQLite, uvloop, orjson)")
    parser.add_argument(
        "--gil",
        action="store_true",
        help="only samples of the thread holding the GIL (a thread waiting to take it back after a blocking call "
        "is otherwise counted as working in that call)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    parser.add_argument("--store-url")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="contact-gateway-profile-") as tmp:
        report = uvloop.run(profile(args, Path(tmp)))
    summary = args.out / f"profile-{time.strftime('%Y%m%d-%H%M%S')}.md"
    summary.write_text(report + "\n", encoding="utf-8")
    print(report)
    print(f"\n{summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
