"""Bulk indexing's worker side: a task of a few images prepared in a worker process (decoded,
detected, embedded); the one writer stores them through the gate (governance.bulk).

Here rather than beside the `index` command so a spawned worker imports what it runs (the
engine and the service's preparation) and not the command line (typer, rich, every command's
options): ~0.25 s of imports against ~0.33 s for the CLI's collections module.
"""

from __future__ import annotations

from faceledger.service.operations import PreparedImage, prepare_index_many
from faceledger.vision.workers import worker_engine

#: Images a worker prepares together at most (detected step by step over all of them, their faces
#: embedded in one batch).
IMAGES_PER_TASK = 8


def prepare_job(chunk: list[tuple[str, int | None, str, bool]]) -> list[tuple[str, PreparedImage | None, dict | None]]:
    """A worker's task: a few images with the same options -> per image (path, prepared or None,
    the error as {code, message} or None)."""
    _, max_faces, quality_filter, keep_bytes = chunk[0]
    done = prepare_index_many(worker_engine(), [path for path, *_ in chunk], max_faces=max_faces,
                              quality_filter=quality_filter, keep_bytes=keep_bytes)
    return [(path, None, {"code": getattr(r, "code", "FileError"), "message": str(r)}) if isinstance(r, Exception)
            else (path, r, None) for (path, *_), r in zip(chunk, done)]


def tasks(jobs: list, workers: int | None) -> list[list]:
    """Jobs in tasks of up to IMAGES_PER_TASK images, small enough that every worker gets several."""
    per_task = max(1, min(IMAGES_PER_TASK, len(jobs) // (8 * max(1, workers or 1))))
    return [jobs[i : i + per_task] for i in range(0, len(jobs), per_task)]
