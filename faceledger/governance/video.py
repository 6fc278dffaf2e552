"""Stored-video jobs under the gate: who runs them, and the ledger entry of a search job's results.

StartFaceSearch is decided and written ahead by the gate like any search (intent, outcome with
the JobId). Its candidates appear later, when the job has run; they enter the ledger in one
entry of their own (operation StartFaceSearch, phase "results"), carrying the principal, purpose,
case and policy of the Start that asked for them and linked to its entry, so that a reviewer
reviews them as any search's candidates (`faceledger review`, POST /v1/ledger/{entry}/review),
with separation of duties. GetFaceSearch shows no candidate before that entry is written (the
service answers IN_PROGRESS until then); a crash between the two is made good by the next worker.

Jobs run on a background thread of each server process (several processes share the queue:
each claims a job atomically), or in the CLI's own process (`faceledger video`).
"""

from __future__ import annotations

import logging
import threading
from typing import Callable

from faceledger.governance.gate import Gate
from faceledger.service.video_jobs import Job, VideoJobs

log = logging.getLogger("faceledger.video")


def jobs_of(gate: Gate) -> VideoJobs | None:
    return getattr(gate.service, "video_jobs", None)


def record_results(gate: Gate, job: Job) -> int | None:
    """The ledger entry of a finished search job's candidates; None for a detection job."""
    jobs = jobs_of(gate)
    if job.operation != "StartFaceSearch" or jobs is None:
        return None
    start = next((e for e in reversed(list(gate.ledger.entries_of("StartFaceSearch")))
                  if e.body.get("phase") == "outcome" and e.body.get("result", {}).get("job_id") == job.job_id), None)
    asked = start.body if start is not None else {}
    body = {"operation": "StartFaceSearch", "phase": "results", "job_id": job.job_id,
            "start_entry": start.seq if start is not None else None,
            **{k: asked.get(k) for k in ("principal", "roles", "purpose", "case_reference", "interface", "policy")},
            "account": job.account, "collection": job.request.get("CollectionId"),
            "video": job.request.get("Video"), "video_sha256": job.video_sha256,
            "outcome": "ok" if job.status == "SUCCEEDED" else "JobFailed", "message": job.status_message,
            "result": {"candidates": jobs.candidates(job), "identification": job.identification}}
    entry = gate.ledger.append(body)
    jobs.set_results_entry(job.job_id, entry.seq)
    return entry.seq


def run_one(gate: Gate, job_id: str | None = None, progress: Callable[[int, int], None] | None = None) -> Job | None:
    """Claim a queued job (``job_id``, or the oldest), run it, record its results. None: nothing queued."""
    jobs = jobs_of(gate)
    if jobs is None:
        return None
    for pending in jobs.unrecorded():  # finished before a crash, not yet in the ledger
        record_results(gate, pending)
    job = jobs.claim(job_id)
    if job is None:
        return None
    done = jobs.run(job, progress)
    record_results(gate, done)
    return jobs.job(done.job_id, any_account=True)


class VideoWorker(threading.Thread):
    """The server's background worker: takes queued jobs one at a time until stopped."""

    def __init__(self, gate: Gate, poll_seconds: float = 1.0) -> None:
        super().__init__(name="faceledger-video", daemon=True)
        self.gate, self.poll = gate, poll_seconds
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                done = run_one(self.gate)
            except Exception:  # noqa: BLE001 - the worker outlives one bad job; the job itself is FAILED by run()
                log.exception("video worker step failed")
                done = None
            if done is None:
                self._stop_event.wait(self.poll)

    def stop(self) -> None:
        self._stop_event.set()


def start_worker(gate: Gate) -> VideoWorker | None:
    if jobs_of(gate) is None:
        return None
    worker = VideoWorker(gate)
    worker.start()
    return worker
