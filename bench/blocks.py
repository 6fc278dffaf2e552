"""Timing on a shared machine: baseline and candidate alternate in blocks, repeated, in one process,
so load drift lands on both sides; every figure is reported as min / median / max with the load
average at the time. Imported by the bench scripts (``python bench/x.py`` puts bench/ on the path)."""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import time
from typing import Callable


def load() -> str:
    """The 1/5/15-minute load averages, as `uptime` shows them."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def _spin(stop) -> None:
    while not stop.is_set():
        sum(i * i for i in range(10_000))


def busy_core(on: bool = True) -> Callable[[], None]:
    """Keep one core busy with a second process (a shared host, or a second worker) until the
    returned function is called; with ``on`` false, nothing runs and the function does nothing."""
    if not on:
        return lambda: None
    stop = mp.Event()
    spinner = mp.Process(target=_spin, args=(stop,), daemon=True)
    spinner.start()

    def done() -> None:
        stop.set()
        spinner.join()

    return done


def alternate(cases: dict[str, Callable[[], object]], *, blocks: int = 5, per_block: int = 3,
              warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each case: ``blocks`` rounds, each running every case ``per_block``
    times in turn (the order rotates each round); one value per call."""
    for fn in cases.values():
        for _ in range(warmup):
            fn()
    names = list(cases)
    times: dict[str, list[float]] = {n: [] for n in names}
    for b in range(blocks):
        for n in names[b % len(names):] + names[: b % len(names)]:
            for _ in range(per_block):
                t = time.perf_counter()
                cases[n]()
                times[n].append(time.perf_counter() - t)
    return times


def mmm(values: list[float], scale: float = 1000.0, unit: str = "ms") -> str:
    return (f"{scale * min(values):.1f} / {scale * statistics.median(values):.1f} / {scale * max(values):.1f} {unit}"
            " (min / median / max)")


def block_ratios(base: list[float], cand: list[float], per_block: int) -> list[float]:
    """base / candidate per block (medians within each block): the ratio each block saw."""
    out = []
    for i in range(0, min(len(base), len(cand)), per_block):
        out.append(statistics.median(base[i:i + per_block]) / statistics.median(cand[i:i + per_block]))
    return out


def ratio_text(base: list[float], cand: list[float], per_block: int) -> str:
    r = block_ratios(base, cand, per_block)
    return f"{min(r):.2f}x / {statistics.median(r):.2f}x / {max(r):.2f}x (per block: min / median / max)"
