"""Worker processes that each hold one engine, for batch work (evaluation, bulk indexing).

Processes, not threads: dlib's calls hold the GIL. Workers are spawned (not forked) so no
model state or open database is shared with the parent.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from typing import Callable, Iterator

from .engine import FaceEngine
from .settings import Settings

_engine: FaceEngine | None = None


def _init(settings: Settings) -> None:
    global _engine
    _engine = FaceEngine(settings)


def worker_engine() -> FaceEngine:
    if _engine is None:
        raise RuntimeError("worker_engine() called outside parallel_map")
    return _engine


def parallel_map(fn: Callable, jobs: list, settings: Settings, workers: int | None) -> Iterator:
    """``fn`` over ``jobs``, results in completion order. Small batches run in-process."""
    workers = workers or max(1, os.cpu_count() or 1)
    if workers == 1 or len(jobs) < 8:
        if _engine is None or _engine.settings != settings:
            _init(settings)
        yield from map(fn, jobs)
        return
    if settings.onnx_threads == 0:  # one thread per worker process: the processes share the cores
        settings = settings.replace(onnx_threads=1)
    with mp.get_context("spawn").Pool(workers, _init, (settings,)) as pool:
        yield from pool.imap_unordered(fn, jobs, chunksize=2)
