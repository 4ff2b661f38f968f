"""A closed-loop load generator: N workers, each starting its next operation when the last one answered."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from bench.procs import Meter
from bench.workload import Operation

#: How often peak memory is sampled during a turn.
RSS_SAMPLE_S = 0.05


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class Turn:
    """What one turn of one mode measured."""

    mode: str
    latency: str
    concurrency: int
    turn: int
    ops: int
    errors: int
    seconds: float
    ops_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    #: CPU seconds per operation of the measured process: the gateway's for `gateway`, the client's otherwise.
    cpu_ms_per_op: float
    #: CPU of this (load-generating) process per operation, in every mode.
    client_cpu_ms_per_op: float
    #: Peak resident memory of the measured process(es) during the turn.
    peak_rss_mb: float
    #: Median over operations of its slowest vendor call, and of the sum of its vendor calls (ms).
    slowest_vendor_p50_ms: float
    vendor_sum_p50_ms: float
    first_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class PeakRss:
    """Samples a meter's resident memory in the background; `peak` is the largest seen."""

    def __init__(self, meter: Meter) -> None:
        self.meter = meter
        self.peak = meter.rss()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.peak = max(self.peak, self.meter.rss())
            await asyncio.sleep(RSS_SAMPLE_S)

    def __enter__(self) -> PeakRss:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = max(self.peak, self.meter.rss())
        if self._task is not None:
            self._task.cancel()


async def _drive(
    op: Operation, ids: Iterator[str], concurrency: int, *, seconds: float | None, count: int | None
) -> tuple[list[float], list[list[float]], list[str], float]:
    """Run `op` with `concurrency` workers for `seconds` (or `count` operations in all)."""
    latencies: list[float] = []
    vendor_ms: list[list[float]] = []
    errors: list[str] = []
    started = time.perf_counter()
    deadline = started + seconds if seconds is not None else float("inf")
    budget = itertools.count() if count is None else iter(range(count))

    async def worker() -> None:
        while time.perf_counter() < deadline and next(budget, None) is not None:
            contact_id = next(ids)
            begin = time.perf_counter()
            outcome = await op(contact_id)
            latencies.append((time.perf_counter() - begin) * 1000)
            if outcome.ok:
                vendor_ms.append(outcome.vendor_ms)
            else:
                errors.append(outcome.error or "failed")

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, vendor_ms, errors, time.perf_counter() - started


async def run_turn(
    op: Operation,
    ids: Iterator[str],
    *,
    mode: str,
    latency: str,
    concurrency: int,
    turn: int,
    seconds: float,
    measured: Meter,
    client: Meter,
) -> Turn:
    """Warm up (2 operations per worker, not counted), then measure `seconds` of closed-loop load."""
    await _drive(op, ids, concurrency, seconds=None, count=2 * concurrency)
    cpu0, client0 = measured.cpu_s(), client.cpu_s()
    with PeakRss(measured) as rss:
        latencies, vendor_ms, errors, elapsed = await _drive(op, ids, concurrency, seconds=seconds, count=None)
    cpu = measured.cpu_s() - cpu0
    client_cpu = client.cpu_s() - client0
    ops = len(latencies)
    return Turn(
        mode=mode,
        latency=latency,
        concurrency=concurrency,
        turn=turn,
        ops=ops,
        errors=len(errors),
        seconds=elapsed,
        ops_per_s=ops / elapsed,
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
        cpu_ms_per_op=cpu / max(ops, 1) * 1000,
        client_cpu_ms_per_op=client_cpu / max(ops, 1) * 1000,
        peak_rss_mb=rss.peak / 2**20,
        slowest_vendor_p50_ms=percentile([max(v) for v in vendor_ms if v], 50),
        vendor_sum_p50_ms=percentile([sum(v) for v in vendor_ms if v], 50),
        first_error=errors[0] if errors else None,
    )
