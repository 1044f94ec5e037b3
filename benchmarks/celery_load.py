"""Celery under the same load: a prefork worker (one process per core) as a subprocess, and client threads
calling `apply_async`/`group` the way a Celery user would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

import psutil
from celery import Celery, group, states

from benchmarks import celery_app
from benchmarks.measure import STALL_S, BenchError, Latency, StallWatch, SubmitRate, Throughput, latency_stats
from benchmarks.memory import tree

ROOT = Path(__file__).resolve().parents[1]
READY_TIMEOUT_S = 60
STOP_TIMEOUT_S = 30
MGET_CHUNK = 1000
POLL_S = 0.1


@dataclass
class CeleryRun:
    """The client's app, the worker's process and every task submitted (to wait for and to clean up)."""

    app: Celery
    queue: str
    worker: subprocess.Popen[bytes]
    task_ids: list[str] = field(default_factory=list)

    def send(self) -> str:
        """`apply_async` of one no-op task; its id."""
        task_id = self.app.send_task(celery_app.NOOP).id
        self.task_ids.append(task_id)
        return task_id

    def processes(self) -> list[psutil.Process]:
        return tree(self.worker.pid)

    def wait(self, task_ids: Sequence[str], stall_s: float = STALL_S) -> dict[str, float]:
        """Until every task's result is stored; the `date_done` (worker's clock, epoch seconds) of each task
        that succeeded. Polls the result keys with MGET, oldest first, and stops a round at the first chunk
        with a task still pending, so a poll costs little while the queue drains in order. (Celery's
        `join_native` keeps its pub/sub subscriptions per thread, so it cannot wait for tasks sent by the
        other client threads.)"""
        backend = self.app.backend
        remaining = list(task_ids)
        done: dict[str, float] = {}
        finished = 0
        watch = StallWatch("celery drain", stall_s)
        while remaining:
            still: list[str] = []
            for i in range(0, len(remaining), MGET_CHUNK):
                chunk = remaining[i : i + MGET_CHUNK]
                if still:  # an earlier chunk is not done: look at this one next round
                    still.extend(chunk)
                    continue
                for task_id, raw in zip(chunk, backend.mget([backend.get_key_for_task(t) for t in chunk]), strict=True):
                    meta = backend.decode_result(raw) if raw is not None else None
                    if meta is None or meta["status"] not in states.READY_STATES:
                        still.append(task_id)
                    elif meta["status"] == states.SUCCESS:
                        done[task_id] = datetime.fromisoformat(meta["date_done"]).timestamp()
            finished += len(remaining) - len(still)
            remaining = still
            if remaining:
                watch.update(finished, len(task_ids))
                time.sleep(POLL_S)
        return done


def _stop(worker: subprocess.Popen[bytes]) -> None:
    """Warm shutdown (SIGTERM), then SIGKILL to the worker's own process group: no pool child is left."""
    leftovers = tree(worker.pid)
    worker.terminate()
    try:
        worker.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    for proc in leftovers:
        try:
            proc.kill()
        except psutil.Error:
            continue


@contextmanager
def celery_worker(amqp_url: str, redis_url: str, concurrency: int) -> Iterator[CeleryRun]:
    queue = f"bench_celery_{uuid.uuid4().hex[:10]}"
    backend = celery_app.results_url(redis_url)
    env = {**os.environ, celery_app.BROKER_ENV: amqp_url, celery_app.BACKEND_ENV: backend, celery_app.QUEUE_ENV: queue}
    command = [sys.executable, "-m", "celery", "-A", "benchmarks.celery_app", "worker", "--pool", "prefork"]
    command += ["--concurrency", str(concurrency), "--loglevel", "WARNING", "--without-gossip", "--without-mingle"]
    command += ["--hostname", f"{queue}@%h"]
    with tempfile.TemporaryFile() as log:
        worker = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        run = CeleryRun(celery_app.create_app(amqp_url, backend, queue), queue, worker)
        try:
            _warm_up(run, log)
            yield run
        finally:
            _stop(worker)
            run.app.close()


def _warm_up(run: CeleryRun, log: IO[bytes]) -> None:
    """One task end to end: the worker is up, and first-call costs are not measured."""
    try:
        if run.wait([run.send()], stall_s=READY_TIMEOUT_S):
            return
        problem = "the warm-up task failed"
    except Exception as e:  # noqa: BLE001 - whatever it was, the worker's log says more
        problem = repr(e)
    log.seek(0)
    output = log.read()[-2000:].decode(errors="replace")
    raise BenchError(f"celery worker not working (exit code {run.worker.poll()}): {problem}\n{output}")


def throughput(run: CeleryRun, jobs: int, batch: int, clients: int) -> Throughput:
    """`jobs` tasks as groups of `batch` from `clients` threads; first submit → last task done."""
    batches = [min(batch, jobs - i) for i in range(0, jobs, batch)]
    lock = threading.Lock()
    sent: list[str] = []

    def client() -> None:
        while True:
            with lock:
                if not batches:
                    return
                n = batches.pop()
            ids = [r.id for r in group(run.app.signature(celery_app.NOOP) for _ in range(n)).apply_async().results]
            with lock:
                sent.extend(ids)
                run.task_ids.extend(ids)

    start = time.time()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = run.wait(sent)
    if len(done) != len(sent):
        raise BenchError(f"celery: {len(sent) - len(done)} of {len(sent)} tasks did not succeed")
    return Throughput(len(sent), max(done.values()) - start)


def single_submit(run: CeleryRun, clients: int, seconds: float) -> SubmitRate:
    """`clients` threads each calling `apply_async` one task at a time for `seconds`; then the tasks drain."""
    latencies: list[float] = []
    sent: list[str] = []
    errors: list[Exception] = []
    deadline = time.perf_counter() + seconds

    def client() -> None:
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            try:
                sent.append(run.send())
            except Exception as e:  # noqa: BLE001 - a refused publish is counted, like an HTTP error
                errors.append(e)
                continue
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    run.wait(sent)
    p50, p99 = latency_stats(latencies)
    return SubmitRate(len(latencies), len(errors), elapsed, p50, p99)


def _send_or_none(run: CeleryRun) -> str | None:
    try:
        return run.send()
    except Exception:  # noqa: BLE001 - a refused publish counts as a task that did not complete
        return None


def paced_latency(run: CeleryRun, rate: float, seconds: float, clients: int) -> Latency:
    """`apply_async` on a fixed schedule of `rate` per second from a pool of `clients` threads;
    latency = the task's `date_done` − its scheduled send time."""
    count = int(rate * seconds)
    t0, wall0 = time.perf_counter(), time.time()
    with ThreadPoolExecutor(clients) as pool:
        futures = []
        for i in range(count):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            futures.append((pool.submit(_send_or_none, run), wall0 + i / rate))
        sent = [(task_id, at) for f, at in futures if (task_id := f.result()) is not None]
    done = run.wait([task_id for task_id, _ in sent])
    samples = [done[task_id] - at for task_id, at in sent if task_id in done]
    p50, p99 = latency_stats(samples)
    return Latency(rate, count, count - len(samples), p50, p99)
