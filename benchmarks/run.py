"""The benchmark in one command: the observatory (real backends and embedded) and Celery on the same machine,
the same RabbitMQ and the same Redis, in one run; prints one markdown table and writes it to
benchmarks/results/latest.md. `python -m benchmarks.run --help`; `scripts/bench.sh` also installs and starts
what it needs."""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import aiohttp
import httpx
import psutil

from benchmarks import cleanup, machine, observatory_load, report
from benchmarks.measure import BenchError, Memory, SubmitRate, SystemResult, Throughput
from benchmarks.memory import PeakSampler, ray_processes, rss_mib
from benchmarks.ray_cluster import CONNECTIONS, ROOT, Cluster, configured_processors, serve_cluster

RESULTS = ROOT / "benchmarks" / "results" / "latest.md"
IDLE_SETTLE_S = 3.0  # after the warm-up, before the idle memory sample
CORES = os.cpu_count() or 1


OPEN_PAGES = 50  # web dashboards held open during every other single-submit phase
PAGE_ROUNDS = 3  # pairs of single-submit phases without and with them


@dataclass
class Options:
    jobs: int
    batch: int
    clients: int
    submit_clients: int
    phase_s: float
    rate: float
    modes: list[str]
    processors: list[int]
    skip_celery: bool
    keep_data: bool
    output: Path


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    p.add_argument("--quick", action="store_true", help="smoke run: 2000 jobs, 5 s phases, real mode, no scaling")
    p.add_argument("--jobs", type=int, help="jobs in the end-to-end run (default 20000; quick 2000)")
    p.add_argument("--batch", type=int, default=100, help="jobs per batch in the end-to-end run")
    p.add_argument("--clients", type=int, default=4, help="concurrent clients in the end-to-end run")
    p.add_argument("--submit-clients", type=int, default=16, help="concurrent clients in the single-submit run")
    p.add_argument("--seconds", type=float, help="length of the single-submit and latency runs (10; quick 5)")
    p.add_argument("--rate", type=float, default=200.0, help="offered load of the latency run (jobs/s)")
    p.add_argument("--modes", help="observatory modes, comma-separated: real,embedded (quick: real)")
    p.add_argument("--processors", help="processor counts of the scaling row, real backends ('' for none; 1,2,4)")
    p.add_argument("--skip-celery", action="store_true", help="measure the observatory only")
    p.add_argument("--keep-data", action="store_true", help="leave the runs' namespaces on the servers")
    p.add_argument("--output", type=Path, default=RESULTS, help="where the table is written as well")
    a = p.parse_args(argv)
    default_modes = "real" if a.quick else "real,embedded"
    modes = [m.strip() for m in (a.modes if a.modes is not None else default_modes).split(",") if m.strip()]
    if unknown := set(modes) - {"real", "embedded"}:
        p.error(f"unknown mode(s): {', '.join(sorted(unknown))}")
    processors = _int_list(a.processors if a.processors is not None else ("" if a.quick else "1,2,4"))
    if any(n < 1 for n in processors):
        p.error("--processors: counts must be at least 1")
    return Options(
        jobs=a.jobs or (2000 if a.quick else 20000),
        batch=a.batch,
        clients=a.clients,
        submit_clients=a.submit_clients,
        phase_s=a.seconds or (5.0 if a.quick else 10.0),
        rate=a.rate,
        modes=modes,
        processors=processors,
        skip_celery=a.skip_celery,
        keep_data=a.keep_data,
        output=a.output,
    )


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def services_env(opts: Options) -> None:
    """Real mode, the scaling row and Celery need the servers' URLs: take them from `scripts/services.sh env`
    when the environment does not have them."""
    needed = "real" in opts.modes or opts.processors or not opts.skip_celery
    if not needed or all(os.environ.get(name) for name in CONNECTIONS):
        return
    out = subprocess.run([str(ROOT / "scripts" / "services.sh"), "env"], capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        name, _, value = line.removeprefix("export ").partition("=")
        if name in CONNECTIONS and not os.environ.get(name):
            os.environ[name] = shlex.split(value)[0]


def _idle_memory(processes: list[psutil.Process]) -> Memory:
    return Memory(idle_mib=rss_mib(processes), idle_processes=len(processes))


def _drop(namespace: str, opts: Options, result: SystemResult) -> None:
    if not opts.keep_data:
        result.notes += cleanup.drop_namespace(namespace)


async def _open_pages(
    cluster: Cluster, obs: observatory_load.Observatory, job: dict[str, Any], opts: Options, first: SubmitRate
) -> str:
    """Single submits with 50 dashboards streaming `/read/stream` and without, alternated `PAGE_ROUNDS` times
    (the store grows and the machine drifts during a run: one pair in a fixed order measures that, not the
    pages); the note gives both means and every pair."""
    pairs: list[tuple[SubmitRate, SubmitRate, float]] = []
    for i in range(PAGE_ROUNDS):
        without = first if i == 0 else await _submit_round(obs, job, opts)
        await asyncio.to_thread(_write_back)  # before the pages open, as `_submit_round` does
        async with observatory_load.OpenPages(cluster.api, OPEN_PAGES) as pages:
            before = pages.snapshots
            streamed = await observatory_load.single_submit(obs, job, opts.submit_clients, opts.phase_s)
            per_page = (pages.snapshots - before) / OPEN_PAGES / streamed.seconds
        pairs.append((without, streamed, per_page))
    mean = statistics.fmean
    return (
        f"single submit with {OPEN_PAGES} dashboards streaming /read/stream, alternated with none {PAGE_ROUNDS} times: "
        f"{mean(w.rate for _, w, _ in pairs):,.0f} req/s, p99 {mean(w.p99_ms for _, w, _ in pairs):.0f} ms "
        f"(without: {mean(n.rate for n, _, _ in pairs):,.0f} req/s, p99 {mean(n.p99_ms for n, _, _ in pairs):.0f} ms; "
        "pairs without/with: "
        + ", ".join(f"{n.rate:,.0f}/{w.rate:,.0f}" for n, w, _ in pairs)
        + f"); each page got {mean(p for _, _, p in pairs):.2f} snapshots/s"
    )


def _write_back() -> None:
    """Before a timed phase: the writes of the phase before go out to the disk now (see machine.write_back)."""
    log(f"wrote the page cache's dirty pages back ({machine.write_back():.2f} s)")


async def _submit_round(obs: observatory_load.Observatory, job: dict[str, Any], opts: Options) -> SubmitRate:
    """One single-submit round, started with the page cache written back."""
    await asyncio.to_thread(_write_back)
    return await observatory_load.single_submit(obs, job, opts.submit_clients, opts.phase_s)


async def _observatory_phases(cluster: Cluster, opts: Options, result: SystemResult) -> str:
    async with observatory_load.Observatory(cluster.api) as obs:
        job, label = await obs.job()
        await observatory_load.warm_up(obs, job)
        await asyncio.sleep(IDLE_SETTLE_S)
        processes = partial(ray_processes, cluster.started_at)
        memory = _idle_memory(processes())
        log(f"{result.name}: end-to-end, {opts.jobs:,} × {label}")
        with PeakSampler(processes) as sampler:
            result.throughput = await observatory_load.throughput(obs, job, opts.jobs, opts.batch, opts.clients)
        memory.peak_mib, memory.peak_processes = sampler.peak_mib, sampler.peak_processes
        result.memory = memory
        reads = await observatory_load.dashboard_reads(obs)
        result.notes.append(
            f"the web dashboard's reads with {obs.accepted:,} jobs stored (p50/p99 ms): "
            + ", ".join(f"`{path}` {p50:.0f}/{p99:.0f}" for path, (p50, p99) in reads.items())
        )
        log(f"{result.name}: {result.throughput.rate:,.0f} jobs/s; single submit, {opts.submit_clients} clients")
        result.submit = await _submit_round(obs, job, opts)
        log(f"{result.name}: {result.submit.rate:,.0f} req/s; the same with {OPEN_PAGES} dashboards open, alternated")
        result.notes.append(await _open_pages(cluster, obs, job, opts, result.submit))
        log(f"{result.name}: submit→completed at {opts.rate:g}/s")
        await asyncio.to_thread(_write_back)
        result.latency = await observatory_load.paced_latency(obs, job, opts.rate, opts.phase_s)
        if result.latency.tail:
            result.notes.append(f"the {opts.rate:g}/s run: {result.latency.tail.describe()}")
        if result.latency.not_completed:
            result.notes.append(f"{result.latency.not_completed} latency-run jobs did not complete")
        if obs.errors:
            result.notes.append(f"{obs.errors} submissions were refused or failed (not counted)")
        return label


def observatory(mode: str, opts: Options) -> tuple[SystemResult, str | None]:
    result = SystemResult(f"observatory ({mode})")
    log(f"{result.name}: starting Ray and deploying serve_app/config.yaml")
    label = None
    namespace = None
    try:
        with serve_cluster(mode) as cluster:
            namespace = cluster.namespace
            label = asyncio.run(_observatory_phases(cluster, opts, result))
    except (BenchError, httpx.HTTPError, aiohttp.ClientError) as e:
        result.notes.append(f"stopped: {e}")
        log(f"{result.name}: FAILED: {e}")
    if namespace and mode == "real":
        _drop(namespace, opts, result)
    return result, label


async def _scaling_throughput(cluster: Cluster, opts: Options) -> tuple[Throughput, str]:
    async with observatory_load.Observatory(cluster.api) as obs:
        job, label = await obs.job()
        await observatory_load.warm_up(obs, job)
        return await observatory_load.throughput(obs, job, opts.jobs, opts.batch, opts.clients), label


def scaling(opts: Options, result: SystemResult) -> str | None:
    """End-to-end throughput with each processor count (real backends), one fresh cluster per count."""
    label = None
    for processors in opts.processors:
        log(f"scaling: {processors} processor(s), {opts.jobs:,} jobs")
        namespace = None
        try:
            with serve_cluster("real", processors=processors) as cluster:
                namespace = cluster.namespace
                result.scaling[processors], label = asyncio.run(_scaling_throughput(cluster, opts))
        except (BenchError, httpx.HTTPError, aiohttp.ClientError) as e:
            result.notes.append(f"scaling with {processors} processor(s) stopped: {e}")
        if namespace:
            _drop(namespace, opts, result)
    return label


def celery(opts: Options) -> SystemResult:
    from benchmarks import celery_load  # Celery is the optional `bench` extra: imported only when measured

    result = SystemResult(f"Celery {machine.package_version('celery')}")
    amqp, redis_url = os.environ["AMQP_URL"], os.environ["REDIS_URL"]
    log(f"{result.name}: starting a prefork worker, concurrency {CORES}")
    run = None
    try:
        with celery_load.celery_worker(amqp, redis_url, CORES) as run:
            time.sleep(IDLE_SETTLE_S)
            memory = _idle_memory(run.processes())
            log(f"{result.name}: end-to-end, {opts.jobs:,} tasks")
            with PeakSampler(run.processes) as sampler:
                result.throughput = celery_load.throughput(run, opts.jobs, opts.batch, opts.clients)
            memory.peak_mib, memory.peak_processes = sampler.peak_mib, sampler.peak_processes
            result.memory = memory
            log(f"{result.name}: {result.throughput.rate:,.0f} tasks/s; single submit, {opts.submit_clients} threads")
            _write_back()
            result.submit = celery_load.single_submit(run, opts.submit_clients, opts.phase_s)
            log(f"{result.name}: {result.submit.rate:,.0f} req/s; submit→completed at {opts.rate:g}/s")
            _write_back()
            result.latency = celery_load.paced_latency(run, opts.rate, opts.phase_s, opts.submit_clients)
            if result.latency.not_completed:
                result.notes.append(f"{result.latency.not_completed} latency-run tasks did not complete")
    except BenchError as e:
        result.notes.append(f"stopped: {e}")
        log(f"{result.name}: FAILED: {e}")
    if run is not None and not opts.keep_data:
        result.notes += cleanup.drop_celery(amqp, run.app.conf.result_backend, run.queue, run.task_ids)
    return result


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds the context managers: Ray stopped, Celery's worker stopped


def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    signal.signal(signal.SIGTERM, _terminate)
    services_env(opts)
    results: list[SystemResult] = []
    labels: list[str | None] = []
    for mode in opts.modes:
        result, label = observatory(mode, opts)
        results.append(result)
        labels.append(label)
    celery_result = None if opts.skip_celery else celery(opts)
    if opts.processors:
        real = next((r for r in results if r.name == "observatory (real)"), None)
        if real is None:
            real = SystemResult("observatory (real)")
            results.append(real)
        labels.append(scaling(opts, real))
    settings = report.Settings(
        jobs=opts.jobs,
        batch=opts.batch,
        clients=opts.clients,
        submit_clients=opts.submit_clients,
        phase_s=opts.phase_s,
        rate=opts.rate,
        job_label=next((label for label in labels if label), None),
        configured_processors=configured_processors(),
        celery_concurrency=CORES,
    )
    text = report.document(machine.describe(), results, celery_result, settings, opts.processors)
    print(text)
    opts.output.parent.mkdir(parents=True, exist_ok=True)
    opts.output.write_text(text)
    log(f"written to {opts.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
