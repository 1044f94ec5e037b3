"""Load on the observatory's HTTP API: one aiohttp session with a keep-alive pool, so the load generator
stays cheap on a machine it shares with the system under test (httpx cost about three times the CPU per
request here, and, with thousands of paced requests waiting for a connection, most of a core by itself)."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from typing import Any

import aiohttp
import httpx

from benchmarks import raw_http
from benchmarks.measure import BenchError, Latency, StallWatch, SubmitRate, Throughput, latency_stats, tail

FINAL = ("completed", "failed", "dead_lettered", "cancelled")
STAMPS = ("created_at", "started_at", "finished_at")  # a completed job has all three
POOL = 64
TIMEOUT_S = 60.0
BATCH_ATTEMPTS = 5
WARMUP_JOBS = 20


def _time(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def _epoch(stamp: str | None) -> float | None:
    return _time(stamp) if stamp else None


class Observatory:
    """The gateway and read model at `api`; counts every job they accepted, so a drain knows its target."""

    def __init__(self, api: str) -> None:
        self.api = api.rstrip("/")
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=POOL), timeout=aiohttp.ClientTimeout(total=TIMEOUT_S)
        )
        self.accepted = 0
        self.errors = 0

    async def __aenter__(self) -> Observatory:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.close()

    async def _get(self, path: str) -> Any:
        return json.loads(await self.read(path))

    async def read(self, path: str) -> bytes:
        """The body of a GET that must succeed."""
        async with self._http.get(self.api + path) as r:
            r.raise_for_status()
            return await r.read()

    async def first_snapshot(self) -> None:
        """Open the live stream and read it up to its first snapshot."""
        async with self._http.get(self.api + "/read/stream") as r:
            r.raise_for_status()
            async for line in r.content:
                if line.startswith(b"event: snapshot"):
                    return

    async def _post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        """The status and JSON body of a POST; (0, None) when it got no answer."""
        try:
            async with self._http.post(self.api + path, json=body) as r:
                return r.status, await r.json() if r.status < 300 else None
        except (TimeoutError, aiohttp.ClientError):
            return 0, None

    async def job(self) -> tuple[dict[str, Any], str]:
        """The cheapest job there is: `noop` when the gateway lists it, else a zero-second sleep."""
        types = {t["type"] for t in await self._get("/api/job-types")}
        if "noop" in types:
            return {"type": "noop", "payload": {}}, "noop"
        return {"type": "sleep", "payload": {"seconds": 0}}, "sleep(seconds=0)"

    async def submit(self, job: dict[str, Any]) -> str | None:
        """One job; its id, or None when it was not accepted."""
        status, body = await self._post("/api/jobs", job)
        if status != 202:
            self.errors += 1
            return None
        self.accepted += 1
        return str(body["job_id"])

    async def submit_batch(self, jobs: list[dict[str, Any]]) -> int:
        for _ in range(BATCH_ATTEMPTS):
            status, body = await self._post("/api/jobs/batch", {"jobs": jobs})
            if status == 202:
                n = len(body["accepted"])
                self.accepted += n
                return n
            self.errors += 1
            await asyncio.sleep(0.5)
        raise BenchError(f"a batch of {len(jobs)} was refused {BATCH_ATTEMPTS} times")

    async def drain(self, poll_s: float = 0.25) -> float | None:
        """Wait until every accepted job is final (from /read/stats); the time of the last event, if known."""
        watch = StallWatch("observatory drain")
        while True:
            stats = await self._get("/read/stats")
            final = sum(stats[k] for k in FINAL)
            if final >= self.accepted:
                return _epoch(stats.get("last_event_at"))
            watch.update(final, self.accepted)
            await asyncio.sleep(poll_s)

    async def stamps(self, job_ids: list[str]) -> dict[str, tuple[float, float, float] | None]:
        """Each job's server-side (inserted, taken by a processor, finished) times; None when it did not complete."""
        gate = asyncio.Semaphore(16)

        async def one(job_id: str) -> tuple[str, tuple[float, float, float] | None]:
            async with gate:
                job = await self._get(f"/read/jobs/{job_id}")
            if job["status"] != "COMPLETED":
                return job_id, None
            inserted, taken, finished = (_time(job[k]) for k in STAMPS)
            return job_id, (inserted, taken, finished)

        return dict(await asyncio.gather(*(one(j) for j in job_ids)))


async def warm_up(obs: Observatory, job: dict[str, Any]) -> None:
    """A few jobs end to end, so first-call costs (connections, imports, actor start) are not measured."""
    await asyncio.gather(*(obs.submit(job) for _ in range(WARMUP_JOBS)))
    if not obs.accepted:
        raise BenchError("the gateway accepted none of the warm-up jobs")
    await obs.drain()


async def throughput(obs: Observatory, job: dict[str, Any], jobs: int, batch: int, clients: int) -> Throughput:
    """`jobs` jobs in batches of `batch` from `clients` concurrent clients; first submit → last job final."""
    batches = [min(batch, jobs - i) for i in range(0, jobs, batch)]
    before = obs.accepted

    async def client() -> None:
        while batches:
            await obs.submit_batch([job] * batches.pop())

    start = time.time()
    await asyncio.gather(*(client() for _ in range(clients)))
    last_event = await obs.drain(poll_s=0.1)
    done = time.time()
    end = last_event if last_event is not None and start < last_event <= done else done
    return Throughput(obs.accepted - before, end - start)


async def single_submit(obs: Observatory, job: dict[str, Any], clients: int, seconds: float) -> SubmitRate:
    """`clients` keep-alive connections each posting one job at a time for `seconds`; then the jobs drain.
    The posts go through raw_http (a fixed request, each answer framed by its Content-Length and checked for
    a 202): aiohttp's own CPU per request would be taken from the gateway on the machine they share."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    body = json.dumps(job).encode()

    async def client() -> None:
        nonlocal errors
        poster = raw_http.Poster(obs.api + "/api/jobs", body)
        try:
            while time.perf_counter() < deadline:
                t = time.perf_counter()
                try:
                    status, _ = await asyncio.wait_for(poster.post(), TIMEOUT_S)
                except (TimeoutError, OSError):  # no answer (ConnectionError is an OSError); BenchError stops the run
                    status = 0
                if status == 202:
                    latencies.append(time.perf_counter() - t)
                else:
                    errors += 1
        finally:
            poster.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - start
    obs.accepted += len(latencies)
    obs.errors += errors
    await obs.drain()
    p50, p99 = latency_stats(latencies)
    return SubmitRate(len(latencies), errors, elapsed, p50, p99)


async def paced_latency(obs: Observatory, job: dict[str, Any], rate: float, seconds: float) -> Latency:
    """Single submits on a fixed schedule of `rate` per second (never waiting for answers, so a slow answer
    does not lower the offered load); latency = server finish time − scheduled send time."""
    loop = asyncio.get_running_loop()
    count = int(rate * seconds)
    t0, wall0 = loop.time(), time.time()

    async def one(i: int) -> tuple[str | None, float]:
        return await obs.submit(job), wall0 + i / rate

    tasks = []
    for i in range(count):
        delay = t0 + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i)))
    sent = [(job_id, at) for job_id, at in await asyncio.gather(*tasks) if job_id is not None]
    await obs.drain()
    stamps = await obs.stamps([job_id for job_id, _ in sent])
    done = [(at, *server) for job_id, at in sent if (server := stamps[job_id]) is not None]
    p50, p99 = latency_stats([finished - at for at, _, _, finished in done])
    return Latency(rate, count, count - len(done), p50, p99, tail(done, wall0, seconds))


class OpenPages:
    """`count` browsers' live streams held open (`GET /read/stream`, read as they arrive), as dashboards do."""

    def __init__(self, api: str, count: int) -> None:
        self._http = httpx.AsyncClient(base_url=api, timeout=None, limits=httpx.Limits(max_connections=count + 1))
        self._count = count
        self._tasks: list[asyncio.Task[None]] = []
        self.snapshots = 0

    async def _read(self) -> None:
        async with self._http.stream("GET", "/read/stream") as r:
            async for line in r.aiter_lines():
                if line.startswith("event: snapshot"):
                    self.snapshots += 1

    async def __aenter__(self) -> OpenPages:
        self._tasks = [asyncio.create_task(self._read()) for _ in range(self._count)]
        deadline = time.monotonic() + 30
        while self.snapshots < self._count and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        if self.snapshots < self._count:
            raise BenchError(f"only {self.snapshots} of {self._count} streams sent a snapshot within 30 s")
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._http.aclose()


DASHBOARD_READS = ("/", "/read/stats", "/read/jobs?limit=50", "/read/jobs?status=COMPLETED&limit=50", "/read/dlq")


async def dashboard_reads(obs: Observatory, rounds: int = 20) -> dict[str, tuple[float, float]]:
    """What the web dashboard's pages ask for, each path `rounds` times in turn (one page at a time, as a
    person clicks): p50 and p99 in ms per path, and under "first snapshot" a new stream's wait for its first."""
    timings: dict[str, list[float]] = {path: [] for path in (*DASHBOARD_READS, "first snapshot")}
    for _ in range(rounds):
        for path in DASHBOARD_READS:
            started = time.perf_counter()
            await obs.read(path)
            timings[path].append(time.perf_counter() - started)
        started = time.perf_counter()
        await obs.first_snapshot()
        timings["first snapshot"].append(time.perf_counter() - started)
    return {path: latency_stats(samples) for path, samples in timings.items()}
