"""Worker processes that each hold one engine, for batch work (evaluation, bulk indexing, audits).

Processes, not threads: dlib's calls hold the GIL. Workers are spawned (not forked) so no
model state or open database is shared with the parent. The same jobs can instead run on a Ray
cluster (``RayCluster``): tasks of a few jobs each, every Ray worker process keeping its engine
between tasks; results come back to the one process that writes them, so a Ray run stores and
reports exactly what a local run does.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from dataclasses import dataclass
from typing import Callable, Iterator

from faceledger.models.threads import resolve as resolve_threads
from faceledger.vision.engine import FaceEngine
from faceledger.settings import Settings

_engine: FaceEngine | None = None


def _init(settings: Settings) -> None:
    global _engine
    _engine = FaceEngine(settings)


def worker_engine() -> FaceEngine:
    if _engine is None:
        raise RuntimeError("worker_engine() called outside parallel_map")
    return _engine


@dataclass(frozen=True)
class RayCluster:
    """Run batch jobs on Ray (``--ray ADDRESS``): ``host:6379`` or ``ray://host:10001`` of a
    running cluster, ``auto`` (the one this machine belongs to) or ``local`` (start one here).
    Every node needs faceledger installed, and the same data paths where jobs name files."""

    address: str
    jobs_per_task: int = 8


def _ray_task(settings: Settings, fn: Callable, jobs: list) -> list:
    if _engine is None or _engine.settings != settings:
        _init(settings)
    return [fn(job) for job in jobs]


def _reachable(address: str, timeout: float = 5.0) -> None:
    """A quick TCP check of host:port before Ray's own connection, which retries for minutes."""
    import socket

    host_port = address.split("://", 1)[-1]
    if address in ("auto", "local") or ":" not in host_port:
        return
    host, port = host_port.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        from faceledger.errors import BackendUnavailableError

        raise BackendUnavailableError(f"the Ray cluster at {address} cannot be reached ({exc})") from exc


def _ray_map(fn: Callable, jobs: list, settings: Settings, cluster: RayCluster) -> Iterator:
    try:
        import ray
    except ImportError:
        from faceledger.errors import InvalidParameterError

        raise InvalidParameterError("--ray needs Ray: pip install 'faceledger[ray]'") from None
    if not ray.is_initialized():
        address = None if cluster.address == "local" else cluster.address
        _reachable(cluster.address)
        try:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError) as exc:
            from faceledger.errors import BackendUnavailableError

            raise BackendUnavailableError(f"the Ray cluster at {cluster.address} cannot be reached ({exc})") from exc
    task = ray.remote(num_cpus=1)(_ray_task)
    settings_ref = ray.put(settings.replace(threads=1) if settings.threads == 0 else settings)  # one CPU per task
    n = cluster.jobs_per_task
    pending = [task.remote(settings_ref, fn, jobs[i:i + n]) for i in range(0, len(jobs), n)]
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield from ray.get(done[0])
    finally:
        for ref in pending:  # interrupted: stop what has not run
            ray.cancel(ref)


def parallel_map(fn: Callable, jobs: list, settings: Settings, workers: "int | RayCluster | None") -> Iterator:
    """``fn`` over ``jobs``, results in completion order. Small batches run in-process;
    ``workers`` a RayCluster: on Ray."""
    if isinstance(workers, RayCluster):
        yield from _ray_map(fn, jobs, settings, workers)
        return
    workers = workers or max(1, os.cpu_count() or 1)
    if workers == 1 or len(jobs) < 8:
        if _engine is None or _engine.settings != settings:
            _init(settings)
        yield from map(fn, jobs)
        return
    if settings.threads == 0:  # the processes share the cores: each sizes its pools for its share
        settings = settings.replace(threads=resolve_threads(0, workers))
    with mp.get_context("spawn").Pool(workers, _init, (settings,)) as pool:
        yield from pool.imap_unordered(fn, jobs, chunksize=2)
