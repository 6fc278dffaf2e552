"""One thread count for every compute pool in a process: ONNX Runtime sessions, faiss (OpenMP) and
numpy's BLAS.

The setting ``threads`` (0: the machine's cores divided by the worker processes sharing them) is
resolved once per process and applied alike: pools sized past a process's share of the cores only
contend (issue 25 measured, on 2 shared cores with 2 workers, the face network at 5.9 vs 8.1 ms a
face and a 1M-template search at p99 7.8 vs ~40 ms with 1 thread instead of 2). ONNX Runtime
sessions read :func:`count` when made; faiss gets it when first imported (:func:`faiss_module`);
BLAS through threadpoolctl.
"""

from __future__ import annotations

import os

#: Environment variable worker launchers set so each worker process sizes its pools for its share.
WORKERS_ENV = "FACELEDGER_WORKER_PROCESSES"

_applied: int | None = None


def cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform reports it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve(threads: int, workers: int | None = None) -> int:
    """``threads`` when set (> 0); otherwise cores // worker processes, at least 1. ``workers``:
    the processes sharing this machine's cores (default: $FACELEDGER_WORKER_PROCESSES, else 1)."""
    if threads < 0:
        from faceledger.errors import InvalidParameterError

        raise InvalidParameterError(f"threads must be 0 (automatic) or a positive count, not {threads}")
    if threads:
        return threads
    if workers is None:
        try:
            workers = int(os.environ.get(WORKERS_ENV, "1"))
        except ValueError:
            workers = 1
    return max(1, cores() // max(1, workers))


def apply(threads: int) -> int:
    """Size this process's faiss and BLAS pools (a resolved count) and remember it for faiss's first
    import; returns it. ONNX Runtime sessions take the count at construction instead."""
    global _applied
    _applied = threads
    import sys

    if "faiss" in sys.modules:
        sys.modules["faiss"].omp_set_num_threads(threads)
    if _blas["limited"] or threads != cores() or any(os.environ.get(v) for v in BLAS_ENV):
        _limit_blas(threads)
    # else every BLAS already runs one thread per core this process may use (OpenBLAS's default,
    # MKL's is fewer), so threadpoolctl's import and library scan (~10 ms of every one-off
    # command, issue 25) would change nothing
    return threads


#: Variables that set a BLAS's thread count otherwise than its default.
BLAS_ENV = ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
            "VECLIB_MAXIMUM_THREADS")
_blas = {"limited": False}


def _limit_blas(threads: int) -> None:
    """Every BLAS loaded so far (numpy's, and faiss's own OpenBLAS once faiss is imported)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # not installed: BLAS keeps its own default
        return
    threadpool_limits(limits=threads, user_api="blas")
    _blas["limited"] = True


def session_options(threads: int):
    """ONNX Runtime session options for this process: ``threads`` intra-op threads (0: ONNX
    Runtime's own default), one inter-op thread, and pool threads that sleep instead of spinning
    between runs. Spinning keeps an idle pool thread busy-waiting for work; on shared cores it
    took the CPU the other thread (or process) needed: a 10-input BlazeFace batch ran 148-272 ms
    spinning off against 227-416 ms on (2 threads, load 15), the face network's session was made in
    156-168 against 239-309 ms, and FaceEngine.compare of two 1 MP photos took 290 against 662 ms
    median (load 15; issue 25; the 1M search measured OMP's passive wait alike)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def applied() -> int | None:
    return _applied


def faiss_module():
    """faiss, imported on first use (~0.1 s that `faceledger compare` and `detect` never need),
    its OpenMP pool sized by the last :func:`apply` (or the automatic count)."""
    import sys

    first = "faiss" not in sys.modules
    import faiss

    n = _applied if _applied is not None else resolve(0)
    faiss.omp_set_num_threads(n)
    if first:  # its wheel brings a BLAS of its own
        _limit_blas(n)
    return faiss
