"""Stored video: StartFaceDetection / GetFaceDetection and StartFaceSearch / GetFaceSearch.

Asynchronous jobs, as the cloud API runs them: Start checks the request and the video's headers,
queues a job and answers its JobId; a worker (the server's background thread, or the CLI in
process) claims it, samples the video (vision.video), and writes results as it goes; Get pages
through them. The queue is a SQLite file beside the store, so jobs survive a restart: a job whose
worker stopped (crash, kill, restart) is taken up again from the start, and after
``MAX_ATTEMPTS`` interrupted runs it is FAILED with the reason. Shapes are botocore's
(``api_model.output``); each stored result is the snake_case tree of a dataclass below.

A face search job is identification: the policy decides StartFaceSearch and GetFaceSearch as it
decides a search, the limits it grants (quality floor, false positive identification bound) are
kept with the job, and each track (one continuous appearance: a PersonIndex) is searched once,
with its best-quality sample that clears the floor, at a threshold that accounts for the gallery.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from faceledger.errors import (
    FaceledgerError, IdempotentParameterMismatchError, InvalidParameterError, InvalidS3ObjectError, ResourceNotFoundError,
)
from faceledger.localdb import ThreadLocalSQLite
from faceledger.service import api_model, scope
from faceledger.service.limits import Limits
from faceledger.service.operations import (
    DEFAULT_FACE_MATCH_THRESHOLD, DEFAULT_MAX_FACES, MAX_FACES_PER_IMAGE, FaceDetail, FaceMatch, FaceService,
    Identification, _make_token, _read_token,
)
from faceledger.vision import video
from faceledger.vision.engine import BoundingBox
from faceledger.vision.quality import QualityFloor

log = logging.getLogger("faceledger.video")

#: Runs of a job a stopped worker may interrupt before the job is FAILED.
MAX_ATTEMPTS = 2
#: A running job whose worker has not reported for this long is taken to have stopped.
LEASE_SECONDS = 120.0
HEARTBEAT_SECONDS = 5.0
#: GetFaceDetection / GetFaceSearch page size: the cloud API's default and largest.
DEFAULT_PAGE = MAX_PAGE = 1000
#: Seconds of video per task when a job's samples are analysed by several workers (or Ray).
SEGMENT_SECONDS = 30.0
#: Faces searched per track: its best-ranked samples, the first to clear the quality floor.
BEST_PER_TRACK = 3
#: Tracking's bars, as false match rates: a face overlapping a track's last box joins it when a
#: stranger would score that high 1 time in 100; anywhere else in the frame, 1 in 100,000.
TRACK_FMR_OVERLAPPING = 1e-2
TRACK_FMR_ANYWHERE = 1e-5

_WIRE_STATUS = {"QUEUED": "IN_PROGRESS", "RUNNING": "IN_PROGRESS", "SUCCEEDED": "SUCCEEDED", "FAILED": "FAILED"}


# --- result shapes (snake_case of the model's members) ---------------------------------------------


@dataclass(frozen=True)
class StartJobResult:
    job_id: str


@dataclass(frozen=True)
class VideoMetadata:
    codec: str
    duration_millis: int
    format: str
    frame_rate: float
    frame_height: int
    frame_width: int
    color_range: str


@dataclass(frozen=True)
class FaceDetection:
    timestamp: int  # milliseconds from the start of the video
    face: FaceDetail


@dataclass(frozen=True)
class PersonDetail:
    index: int
    bounding_box: BoundingBox
    face: FaceDetail


@dataclass(frozen=True)
class GetFaceDetectionResult:
    job_status: str
    job_id: str
    status_message: str | None = None
    video_metadata: Any = None
    next_token: str | None = None
    faces: list | None = None
    video: dict | None = None
    job_tag: str | None = None


@dataclass(frozen=True)
class GetFaceSearchResult:
    job_status: str
    job_id: str
    status_message: str | None = None
    next_token: str | None = None
    video_metadata: Any = None
    persons: list | None = None
    video: dict | None = None
    job_tag: str | None = None
    identification: Any = None  # faceledger's: the threshold the job searched at, for this gallery
    results_ledger_entry: int | None = None  # faceledger's: the ledger entry of the candidates (for review)


@dataclass(frozen=True)
class Job:
    job_id: str
    account: str
    operation: str
    status: str
    status_message: str | None
    request: dict
    path: str
    limits: dict | None
    metadata: dict | None
    identification: dict | None
    attempts: int
    results_entry: int | None
    video_sha256: str | None

    @property
    def wire_status(self) -> str:
        return _WIRE_STATUS[self.status]


# --- the queue ---------------------------------------------------------------------------------------


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY, account TEXT NOT NULL, operation TEXT NOT NULL, status TEXT NOT NULL,
    status_message TEXT, token TEXT, request_digest TEXT NOT NULL, request TEXT NOT NULL, path TEXT NOT NULL,
    limits TEXT, metadata TEXT, identification TEXT, attempts INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL,
    heartbeat REAL, finished REAL, results_entry INTEGER, video_sha256 TEXT, recorded INTEGER NOT NULL DEFAULT 0);
CREATE UNIQUE INDEX IF NOT EXISTS jobs_token ON jobs(account, operation, token) WHERE token IS NOT NULL;
CREATE INDEX IF NOT EXISTS jobs_status ON jobs(status, created);
CREATE TABLE IF NOT EXISTS results (
    job_id TEXT NOT NULL, n INTEGER NOT NULL, timestamp INTEGER NOT NULL, person INTEGER, body TEXT NOT NULL,
    PRIMARY KEY (job_id, n));
CREATE INDEX IF NOT EXISTS results_person ON results(job_id, person, timestamp, n);
CREATE INDEX IF NOT EXISTS results_time ON results(job_id, timestamp, person, n);
CREATE TABLE IF NOT EXISTS tracks (
    job_id TEXT NOT NULL, person INTEGER NOT NULL, first_ms INTEGER, last_ms INTEGER, matches TEXT NOT NULL,
    searched_at INTEGER, PRIMARY KEY (job_id, person));
"""


class VideoJobs:
    """The persistent job queue and the four operations' logic, over one FaceService."""

    def __init__(self, service: FaceService, path: Path, *, s3_root: Path | None = None,
                 sample_fps: float = video.DEFAULT_SAMPLE_FPS, notifications: Path | None = None,
                 workers: Any = None) -> None:
        """``workers``: None or 1, a job runs in the worker's own thread; N (processes) or a
        vision.workers.RayCluster, its segments of SEGMENT_SECONDS run in parallel there."""
        self.service = service
        self.workers = workers
        self.path = Path(path)
        self.s3_root = Path(s3_root) if s3_root else None
        self.sample_fps = sample_fps
        self.notifications = notifications or self.path.with_name("video-notifications.jsonl")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = ThreadLocalSQLite(self.path)
        self._db().executescript(_SCHEMA)

    # --- Start ---------------------------------------------------------------------------------------

    def start(self, operation: str, video_arg: Any, request: dict, token: str | None,
              limits: Limits | None = None) -> StartJobResult:
        """Queue a job (or return the one ``token`` already started with the same request)."""
        account = scope.current().account
        path = self.resolve(video_arg)
        digest = hashlib.sha256(json.dumps(request, sort_keys=True, default=str).encode()).hexdigest()
        db = self._db()
        if token is not None:
            row = db.execute("SELECT job_id, request_digest FROM jobs WHERE account = ? AND operation = ? AND token = ?",
                             (account, operation, token)).fetchone()
            if row is not None:
                if row[1] != digest:
                    raise IdempotentParameterMismatchError(
                        f"ClientRequestToken {token!r} started job {row[0]} with other parameters; use a new token")
                return StartJobResult(row[0])
        video.probe(path)  # the headers now: a file that is not H.264 in MP4/MOV is refused, not queued
        job_id = uuid.uuid4().hex
        try:
            db.execute("INSERT INTO jobs (job_id, account, operation, status, token, request_digest, request, path, limits,"
                       " created) VALUES (?, ?, ?, 'QUEUED', ?, ?, ?, ?, ?, ?)",
                       (job_id, account, operation, token, digest, json.dumps(request, default=str), str(path),
                        json.dumps(_limits_record(limits)) if limits else None, time.time()))
        except sqlite3.IntegrityError:  # the same token, started concurrently: answer as the first one
            return self.start(operation, video_arg, request, token, limits)
        return StartJobResult(job_id)

    def resolve(self, video_arg: Any) -> Path:
        """Video.S3Object {Bucket, Name} as the file <s3_root>/<Bucket>/<Name> (inside the root, a
        regular file); a path from the CLI or the Python API as itself."""
        if isinstance(video_arg, (str, Path)):
            p = Path(video_arg)
            if not p.is_file():
                raise InvalidParameterError(f"no video file {str(p)[:200]!r}")
            return p.resolve()
        obj = (video_arg or {}).get("S3Object")
        if not isinstance(obj, dict) or not isinstance(obj.get("Bucket"), str) or not isinstance(obj.get("Name"), str):
            raise InvalidS3ObjectError("Video needs an S3Object with a Bucket and a Name")
        if "Version" in obj:
            raise InvalidS3ObjectError("S3 object versions are not supported: leave Version out")
        if self.s3_root is None:
            raise InvalidS3ObjectError("Video.S3Object needs an object root on this server (FACELEDGER_S3_ROOT: "
                                       "bucket/key map to files under it)")
        bucket, name = obj["Bucket"], obj["Name"]
        shown = f"object {name[:80]!r} in bucket {bucket[:80]!r}"
        if "\x00" in bucket or "\x00" in name:
            raise InvalidS3ObjectError("bucket and object names cannot contain a NUL character")
        try:
            root = self.s3_root.resolve()
            path = (root / bucket / name).resolve(strict=True)
        except FileNotFoundError:
            raise InvalidS3ObjectError(f"no {shown}") from None
        except (OSError, RuntimeError, ValueError) as exc:
            raise InvalidS3ObjectError(f"{shown}: cannot be resolved ({getattr(exc, 'strerror', None) or exc})") from None
        if root not in path.parents:
            raise InvalidS3ObjectError("the object name leaves its bucket")
        if not path.is_file():
            raise InvalidS3ObjectError(f"no {shown} (not a regular file)")
        return path

    # --- the worker's side -------------------------------------------------------------------------

    def recover(self, lease: float = LEASE_SECONDS) -> list[str]:
        """Jobs whose worker stopped (no heartbeat for ``lease`` s): queued again, or FAILED after
        MAX_ATTEMPTS runs. Their partial results are dropped: a job is redone from the start."""
        db = self._db()
        stale = [r[0] for r in db.execute("SELECT job_id FROM jobs WHERE status = 'RUNNING' AND heartbeat < ?",
                                          (time.time() - lease,)).fetchall()]
        for job_id in stale:
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT attempts FROM jobs WHERE job_id = ? AND status = 'RUNNING' AND heartbeat < ?",
                                 (job_id, time.time() - lease)).fetchone()
                if row is None:
                    db.execute("COMMIT")
                    continue
                self._clear(job_id)
                if row[0] >= MAX_ATTEMPTS:
                    db.execute("UPDATE jobs SET status = 'FAILED', finished = ?, status_message = ? WHERE job_id = ?",
                               (time.time(), f"the job was interrupted {row[0]} times (its worker stopped: a crash or "
                                "a restart of the server); start it again", job_id))
                else:
                    db.execute("UPDATE jobs SET status = 'QUEUED', status_message = ? WHERE job_id = ?",
                               (f"resumed after its worker stopped (attempt {row[0]} of {MAX_ATTEMPTS})", job_id))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return stale

    def claim(self, job_id: str | None = None) -> Job | None:
        """Take the oldest queued job (or ``job_id``) for this worker, atomically."""
        self.recover()
        db = self._db()
        if db.execute("SELECT 1 FROM jobs WHERE status = 'QUEUED' LIMIT 1").fetchone() is None:
            return None  # an idle worker's poll reads, never writes
        db.execute("BEGIN IMMEDIATE")
        try:
            if job_id is None:
                row = db.execute("SELECT job_id FROM jobs WHERE status = 'QUEUED' ORDER BY created LIMIT 1").fetchone()
            else:
                row = db.execute("SELECT job_id FROM jobs WHERE status = 'QUEUED' AND job_id = ?", (job_id,)).fetchone()
            if row is None:
                db.execute("COMMIT")
                return None
            db.execute("UPDATE jobs SET status = 'RUNNING', attempts = attempts + 1, heartbeat = ? WHERE job_id = ?",
                       (time.time(), row[0]))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return self.job(row[0], any_account=True)

    def job(self, job_id: str, *, any_account: bool = False) -> Job:
        """A job of the calling account (another account's jobs do not exist for it)."""
        row = self._db().execute(
            "SELECT job_id, account, operation, status, status_message, request, path, limits, metadata, identification,"
            " attempts, results_entry, video_sha256 FROM jobs WHERE job_id = ?", (job_id,)).fetchone()
        if row is None or (not any_account and row[1] != scope.current().account):
            raise ResourceNotFoundError(f"no video job {job_id}")
        return Job(row[0], row[1], row[2], row[3], row[4], json.loads(row[5]), row[6],
                   json.loads(row[7]) if row[7] else None, json.loads(row[8]) if row[8] else None,
                   json.loads(row[9]) if row[9] else None, row[10], row[11], row[12])

    def _clear(self, job_id: str) -> None:
        db = self._db()
        db.execute("DELETE FROM results WHERE job_id = ?", (job_id,))
        db.execute("DELETE FROM tracks WHERE job_id = ?", (job_id,))

    def run(self, job: Job, progress: Callable[[int, int], None] | None = None) -> Job:
        """Process a claimed job to SUCCEEDED or FAILED (the reason in StatusMessage); streamed:
        results are written as the video is read, never held whole."""
        try:
            with scope.acting(scope.CallScope(job.account)):
                info = video.probe(Path(job.path))
                metadata = _metadata(info)
                self._db().execute("UPDATE jobs SET metadata = ?, video_sha256 = ? WHERE job_id = ?",
                                   (json.dumps(dataclasses.asdict(metadata)), _sha256(Path(job.path)), job.job_id))
                if job.operation == "StartFaceDetection":
                    self._detect(job, info, progress)
                else:
                    self._search(job, info, progress)
            self._finish(job.job_id, "SUCCEEDED", None)
        except FaceledgerError as exc:
            self._finish(job.job_id, "FAILED", f"{exc.code}: {exc.message}")
        except Exception as exc:  # noqa: BLE001 - an unexpected failure fails the job with its reason, and is logged
            log.exception("video job %s failed", job.job_id)
            self._finish(job.job_id, "FAILED", f"InternalServerError: {type(exc).__name__}: {str(exc)[:300]}")
        done = self.job(job.job_id, any_account=True)
        self._notify(done)
        return done

    def _finish(self, job_id: str, status: str, message: str | None) -> None:
        self._db().execute("UPDATE jobs SET status = ?, status_message = ?, finished = ? WHERE job_id = ?",
                           (status, message, time.time(), job_id))

    def _beat(self, job_id: str, state: dict) -> None:
        now = time.monotonic()
        if now - state.get("beat", 0.0) >= HEARTBEAT_SECONDS:
            state["beat"] = now
            self._db().execute("UPDATE jobs SET heartbeat = ? WHERE job_id = ?", (time.time(), job_id))

    def _samples(self, job: Job, info: video.VideoInfo, progress, engine, attributes, embed: bool) -> Iterator[Sample]:
        """Each sample's faces in time order: streamed here, or (``workers``) segments analysed in
        worker processes or on Ray and put back in order as they complete."""
        state: dict = {}
        if self.workers is None or self.workers == 1:
            for frame in video.sample_frames(Path(job.path), self.sample_fps):
                self._beat(job.job_id, state)
                yield _analyse_frame(engine, frame, attributes, embed)
                if progress is not None:
                    progress(frame.timestamp_ms, info.duration_millis)
            return
        from faceledger.vision.workers import parallel_map

        step = SEGMENT_SECONDS * 1000
        tasks = [(job.path, i * step, (i + 1) * step, self.sample_fps, str(engine.model), attributes, embed)
                 for i in range(max(1, math.ceil((info.duration_millis + 1) / step)))]
        waiting: dict[float, list] = {}
        next_start = 0.0
        for start, samples in parallel_map(_analyse_segment, tasks, engine.settings, self.workers):
            waiting[start] = samples
            self._beat(job.job_id, state)
            while next_start in waiting:
                for sample in waiting.pop(next_start):
                    yield sample
                if progress is not None:
                    progress(min(info.duration_millis, int(next_start + step)), info.duration_millis)
                next_start += step

    def _detect(self, job: Job, info: video.VideoInfo, progress) -> None:
        attributes = ("ALL",) if job.request.get("FaceAttributes") == "ALL" else None
        n, db = 0, self._db()
        for sample in self._samples(job, info, progress, self.service.engine, attributes, embed=False):
            rows = []
            for d in sample.details:
                rows.append((job.job_id, n, sample.timestamp_ms, None,
                             json.dumps(dataclasses.asdict(FaceDetection(sample.timestamp_ms, d)))))
                n += 1
            if rows:
                db.executemany("INSERT INTO results VALUES (?, ?, ?, ?, ?)", rows)

    def _search(self, job: Job, info: video.VideoInfo, progress) -> None:
        collection = job.request["CollectionId"]
        svc = self.service
        m = svc._model_of(collection)
        limits = _limits_of(job.limits)
        ident = svc._identification(m, collection, job.request.get("FaceMatchThreshold"), DEFAULT_FACE_MATCH_THRESHOLD,
                                    limits, None)
        db = self._db()
        db.execute("UPDATE jobs SET identification = ? WHERE job_id = ?",
                   (json.dumps(dataclasses.asdict(ident)), job.job_id))
        cal = m.scoring.calibration  # _identification refused an uncalibrated model: the bars are rates of strangers
        tracker = video.Tracker(m.scoring.scores, cal.threshold_for_fmr(TRACK_FMR_OVERLAPPING),
                                cal.threshold_for_fmr(TRACK_FMR_ANYWHERE), keep_best=BEST_PER_TRACK)
        n = 0

        def searched(tracks: Sequence[video.Track]) -> None:
            for t in tracks:
                matches, at = [], None
                for _, ts, quality, vector in t.best:  # best-ranked first: the first to clear the floor is searched
                    if limits is None or not limits.quality_floor.failures(quality):
                        matches, at = svc._matches(m, collection, vector, DEFAULT_MAX_FACES, ident), ts
                        break
                db.execute("INSERT INTO tracks VALUES (?, ?, ?, ?, ?, ?)",
                           (job.job_id, t.index, t.first_ms, t.last_ms,
                            json.dumps([dataclasses.asdict(x) for x in matches]), at))

        for sample in self._samples(job, info, progress, m.engine, None, embed=True):
            vectors = np.array(sample.vectors, np.float32) if sample.details else np.zeros((0, 0), np.float32)
            indices, closed = tracker.update(sample.timestamp_ms, [d.bounding_box for d in sample.details], vectors,
                                             [_rank(q) for q in sample.qualities], list(sample.qualities))
            searched(closed)
            rows = []
            for d, index in zip(sample.details, indices):
                person = PersonDetail(index, d.bounding_box, d)
                rows.append((job.job_id, n, sample.timestamp_ms, index, json.dumps(dataclasses.asdict(person))))
                n += 1
            if rows:
                db.executemany("INSERT INTO results VALUES (?, ?, ?, ?, ?)", rows)
        searched(tracker.finish())

    def _notify(self, job: Job) -> None:
        """NotificationChannel: the message SNS would carry, logged and appended to a local JSON-lines file."""
        if not job.request.get("NotificationChannel"):
            return
        message = {"JobId": job.job_id, "Status": job.wire_status, "API": job.operation, "JobTag": job.request.get("JobTag"),
                   "Timestamp": int(time.time() * 1000), "Video": job.request.get("Video"),
                   "NotificationChannel": job.request["NotificationChannel"]}
        log.info("video job finished: %s", json.dumps(message))
        with self.notifications.open("a") as fh:
            fh.write(json.dumps(message) + "\n")

    # --- Get ---------------------------------------------------------------------------------------

    def page(self, job: Job, order: str, max_results: int | None, next_token: str | None) -> tuple[list[tuple], str | None]:
        """One page of a finished job's results, in ``order`` (INDEX or TIMESTAMP)."""
        limit = min(max_results or DEFAULT_PAGE, MAX_PAGE)
        token_scope = f"{job.job_id}/{order}"
        offset = int(_read_token(next_token, job.operation, token_scope) or 0)
        by = "person, timestamp, n" if order == "INDEX" else "timestamp, person, n"
        rows = self._db().execute(f"SELECT timestamp, person, body FROM results WHERE job_id = ? ORDER BY {by} LIMIT ? OFFSET ?",
                                  (job.job_id, limit + 1, offset)).fetchall()
        more = len(rows) > limit
        return rows[:limit], _make_token(str(offset + limit), job.operation, token_scope) if more else None

    def track_matches(self, job: Job) -> dict[int, list]:
        return {p: json.loads(m) for p, m in self._db().execute(
            "SELECT person, matches FROM tracks WHERE job_id = ?", (job.job_id,)).fetchall()}

    def candidates(self, job: Job) -> list[dict]:
        """Each track's candidates (what the ledger keeps of a search job's results)."""
        out = []
        for person, first, last, matches, at in self._db().execute(
                "SELECT person, first_ms, last_ms, matches, searched_at FROM tracks WHERE job_id = ? ORDER BY person",
                (job.job_id,)).fetchall():
            for mt in json.loads(matches):
                out.append({"id": mt["face"]["face_id"], "similarity": round(mt["similarity"], 4),
                            "false_match_rate": mt.get("false_match_rate"),
                            "expected_false_candidates": mt.get("expected_false_candidates"),
                            "person_index": person, "first_ms": first, "last_ms": last, "searched_frame_ms": at})
        return out

    def set_results_entry(self, job_id: str, seq: int) -> None:
        self._db().execute("UPDATE jobs SET results_entry = ?, recorded = 1 WHERE job_id = ?", (seq, job_id))

    def unrecorded(self) -> list[Job]:
        """Finished search jobs whose results are not in the ledger yet (a crash between the two)."""
        ids = [r[0] for r in self._db().execute(
            "SELECT job_id FROM jobs WHERE operation = 'StartFaceSearch' AND status IN ('SUCCEEDED', 'FAILED') AND recorded = 0"
        ).fetchall()]
        return [self.job(i, any_account=True) for i in ids]


# --- the four operations on the service ------------------------------------------------------------


class VideoService(FaceService):
    """FaceService with the stored-video operations (the wire finds them by name, as every other)."""

    def __init__(self, *args: Any, settings: Any = None, **kwargs: Any) -> None:
        """``settings``: where the job queue lives (beside the store) and the S3 root; default: the engine's."""
        super().__init__(*args, **kwargs)
        self.video_settings = settings or self.engine.settings
        self._jobs: VideoJobs | None = None

    @property
    def video_jobs(self) -> VideoJobs:
        if self._jobs is None:
            s = self.video_settings
            self._jobs = VideoJobs(self, Path(s.store).parent / "video-jobs.sqlite", s3_root=s.s3_root)
        return self._jobs

    def start_face_detection(self, video: Any, *, client_request_token: str | None = None,
                             notification_channel: dict | None = None, face_attributes: str | None = None,
                             job_tag: str | None = None) -> StartJobResult:
        api_model.check("StartFaceDetection", Video=video if isinstance(video, dict) else {},
                        ClientRequestToken=client_request_token, NotificationChannel=notification_channel,
                        FaceAttributes=face_attributes, JobTag=job_tag)
        request = {"Video": _video_record(video), "NotificationChannel": notification_channel,
                   "FaceAttributes": face_attributes, "JobTag": job_tag}
        return self.video_jobs.start("StartFaceDetection", video, request, client_request_token)

    def start_face_search(self, video: Any, collection_id: str, *, client_request_token: str | None = None,
                          face_match_threshold: float | None = None, notification_channel: dict | None = None,
                          job_tag: str | None = None, limits: Limits | None = None) -> StartJobResult:
        """Identification: ``limits`` (the gate's grant) are kept with the job and applied when it runs."""
        api_model.check("StartFaceSearch", Video=video if isinstance(video, dict) else {}, CollectionId=collection_id,
                        ClientRequestToken=client_request_token, FaceMatchThreshold=face_match_threshold,
                        NotificationChannel=notification_channel, JobTag=job_tag)
        m = self._model_of(collection_id)  # the collection exists and its model is installed: checked now, not later
        if not m.calibrated:
            self._identification(m, collection_id, face_match_threshold, DEFAULT_FACE_MATCH_THRESHOLD, limits, None)
        request = {"Video": _video_record(video), "CollectionId": collection_id, "FaceMatchThreshold": face_match_threshold,
                   "NotificationChannel": notification_channel, "JobTag": job_tag}
        return self.video_jobs.start("StartFaceSearch", video, request, client_request_token, limits)

    def get_face_detection(self, job_id: str, *, max_results: int | None = None,
                           next_token: str | None = None) -> GetFaceDetectionResult:
        api_model.check("GetFaceDetection", JobId=job_id, MaxResults=max_results, NextToken=next_token)
        job = self._video_job(job_id, "StartFaceDetection")
        common = dict(job_status=job.wire_status, job_id=job.job_id, status_message=job.status_message,
                      video=_wire_video(job), job_tag=job.request.get("JobTag"),
                      video_metadata=job.metadata)
        if job.status != "SUCCEEDED":
            return GetFaceDetectionResult(**common)
        rows, token = self.video_jobs.page(job, "TIMESTAMP", max_results, next_token)
        return GetFaceDetectionResult(**common, next_token=token, faces=[json.loads(b) for _, _, b in rows])

    def get_face_search(self, job_id: str, *, max_results: int | None = None, next_token: str | None = None,
                        sort_by: str | None = None, limits: Limits | None = None) -> GetFaceSearchResult:
        """Each sampled appearance of each tracked person (PersonMatch), with the candidates its
        track's search returned. ``limits`` is the gate's (reading a search's results is identification)."""
        api_model.check("GetFaceSearch", JobId=job_id, MaxResults=max_results, NextToken=next_token, SortBy=sort_by)
        job = self._video_job(job_id, "StartFaceSearch")
        common = dict(job_status=job.wire_status, job_id=job.job_id, status_message=job.status_message,
                      video=_wire_video(job), job_tag=job.request.get("JobTag"), video_metadata=job.metadata,
                      identification=Identification(**job.identification) if job.identification else None,
                      results_ledger_entry=job.results_entry)
        if job.status == "SUCCEEDED" and job.results_entry is None:  # no candidate leaves before the ledger has them
            return GetFaceSearchResult(**{**common, "job_status": "IN_PROGRESS",
                                          "status_message": "the results are being written to the ledger"})
        if job.status != "SUCCEEDED":
            return GetFaceSearchResult(**common)
        rows, token = self.video_jobs.page(job, sort_by or "TIMESTAMP", max_results, next_token)
        matches = self.video_jobs.track_matches(job)
        persons = [{"timestamp": ts, "person": json.loads(b), "face_matches": matches.get(p, [])} for ts, p, b in rows]
        return GetFaceSearchResult(**common, next_token=token, persons=persons)

    def _video_job(self, job_id: str, operation: str) -> Job:
        job = self.video_jobs.job(job_id)
        if job.operation != operation:
            raise ResourceNotFoundError(f"no {operation} job {job_id}")
        return job


# --- analysis of samples (here, or in worker processes / on Ray) -------------------------------------


@dataclass(frozen=True, eq=False)
class Sample:
    """One sampled frame's faces: what tracking and the results need, never the pixels."""

    timestamp_ms: int
    details: tuple
    qualities: tuple
    vectors: tuple  # templates, when the job searches


def _analyse_frame(engine, frame: video.SampledFrame, attributes, embed: bool) -> Sample:
    faces = engine.detect(frame.pixels).faces[:MAX_FACES_PER_IMAGE]
    vectors = tuple(e.template.vector for e in engine.embed_faces(faces)) if embed and faces else ()
    return Sample(frame.timestamp_ms, tuple(FaceDetail.of(f, attributes) for f in faces),
                  tuple(f.quality for f in faces), vectors)


def _analyse_segment(task: tuple) -> tuple[float, list[Sample]]:
    """A segment of a job, in a worker process (vision.workers: local processes or Ray), with the
    worker's engine for the job's model."""
    from faceledger.vision.workers import worker_engine

    path, start, end, fps, model, attributes, embed = task
    engine = worker_engine()
    if str(engine.model) != model:
        engine = engine.with_model(model.partition("@")[0])
        if str(engine.model) != model:
            raise InvalidParameterError(f"this worker has {engine.model}, not the job's {model}: install the same weights")
    return start, [_analyse_frame(engine, f, attributes, embed)
                   for f in video.sample_frames(Path(path), fps, start_ms=start, end_ms=end)]


# --- helpers ---------------------------------------------------------------------------------------


def _rank(q) -> float:
    """How good a sample is to search with: size (capped), sharpness, and how frontal."""
    frontal = max(0.0, math.cos(math.radians(q.pose.yaw))) * max(0.0, math.cos(math.radians(q.pose.pitch)))
    return min(q.face_size, 200.0) * (0.5 + q.sharpness / 200.0) * frontal


def _metadata(info: video.VideoInfo) -> VideoMetadata:
    return VideoMetadata(info.codec, info.duration_millis, info.format, info.frame_rate, info.frame_height,
                         info.frame_width, info.color_range)


def _video_record(v: Any) -> dict:
    return v if isinstance(v, dict) else {"File": str(v)}


def _wire_video(job: Job) -> dict | None:
    v = job.request.get("Video") or {}
    return v if "S3Object" in v else None


def _limits_record(limits: Limits) -> dict:
    return {"max_fpir": limits.max_fpir, "quality_floor": dataclasses.asdict(limits.quality_floor)}


def _limits_of(record: dict | None) -> Limits | None:
    if record is None:
        return None
    return Limits(record["max_fpir"], QualityFloor(**record["quality_floor"]))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
