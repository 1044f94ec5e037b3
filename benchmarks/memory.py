"""Resident memory of a system's processes: sampled idle, and every 0.5 s under load (peak)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable

import psutil

SAMPLE_EVERY_S = 0.5
MIB = 1024 * 1024
RAY_BINARIES = ("raylet", "gcs_server")


def _is_ray(proc: psutil.Process) -> bool:
    info = proc.info  # filled by process_iter
    cmdline = info.get("cmdline") or []
    command = " ".join(cmdline)
    return (
        command.startswith("ray::")
        or info.get("name") in RAY_BINARIES
        or "/site-packages/ray/" in command  # dashboard, agents, log monitor, default_worker.py, …
    )


def ray_processes(started_after: float) -> list[psutil.Process]:
    """Every process of the Ray cluster started at `started_after` (epoch seconds): Ray's daemons, Serve's
    controller, proxy and replicas, the actors and workers, and everything they spawned. One pass over the
    process table (sampled every 0.5 s during a run, in the load generator's process: it must stay cheap)."""
    me = os.getpid()
    roots: dict[int, psutil.Process] = {}
    children: dict[int, list[psutil.Process]] = {}
    for proc in psutil.process_iter(["pid", "ppid", "name", "cmdline", "create_time"]):
        children.setdefault(proc.info["ppid"] or 0, []).append(proc)
        if proc.pid != me and proc.info["create_time"] >= started_after - 1 and _is_ray(proc):
            roots[proc.pid] = proc
    found = dict(roots)
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child.pid not in found:
                found[child.pid] = child
                todo.append(child.pid)
    return list(found.values())


def tree(pid: int) -> list[psutil.Process]:
    """A process and all its descendants (a Celery worker and its pool)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def rss_mib(processes: Iterable[psutil.Process]) -> float:
    """Sum of RSS (pages shared between processes are counted once per process)."""
    total = 0
    for proc in processes:
        try:
            total += proc.memory_info().rss
        except psutil.Error:  # exited between listing and reading
            continue
    return total / MIB


class PeakSampler:
    """Samples the summed RSS of `processes()` every 0.5 s in a thread; `peak_mib` is the highest seen."""

    def __init__(self, processes: Callable[[], list[psutil.Process]]) -> None:
        self._processes = processes
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self.peak_mib = 0.0
        self.peak_processes = 0  # how many processes the peak sample summed

    def _run(self) -> None:
        while True:
            processes = self._processes()
            if (mib := rss_mib(processes)) > self.peak_mib:
                self.peak_mib, self.peak_processes = mib, len(processes)
            if self._stop.wait(SAMPLE_EVERY_S):
                return

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
