"""`faceledger video detect|search FILE`: the stored-video jobs, run in this process with a progress bar.

Each command starts the job through the gate (policy, ledger), runs it here, and prints its
results (every page); --json prints the operation's output as the wire carries it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from faceledger.interfaces.cli.collections import CaseOpt, MaxFmrOpt, PurposeOpt, _Gated
from faceledger.interfaces.cli.options import member_option
from faceledger.interfaces.cli.common import EXIT_NEGATIVE, JsonOpt, RayOpt, err, errors, out, pool, progress, review_hint
from faceledger.service import api_model

WorkersOpt = typer.Option(None, "--workers", help="Worker processes for the job's 30-second segments "
                          "(default: this process, streaming).")
video_app = typer.Typer(no_args_is_help=True, help="Faces in stored video (H.264 in MP4 or MOV), sampled at 5 fps.")


def _run(gated: _Gated, start: str, get: str, start_call, get_call, as_json: bool, workers=None) -> dict:
    """Start through the gate, run here under a progress bar, then every page of Get through the gate.
    ``start_call(service, **gate_args)`` and ``get_call(service, job_id, **gate_args)`` are handed
    the service only inside the gate's call."""
    from faceledger.governance.video import run_one

    if workers:
        gated.gate.service.video_jobs.workers = workers

    job_id = gated.gate.call(gated.ctx, start, lambda **x: start_call(gated.gate.service, **x)).job_id
    with progress() as bar:
        task = bar.add_task(f"{start} {job_id[:8]} (video seconds)", total=None)

        def advance(t_ms: int, duration_ms: int) -> None:
            bar.update(task, completed=round(t_ms / 1000, 1), total=round(duration_ms / 1000, 1))

        done = run_one(gated.gate, job_id, advance if not as_json else None)
        if bar.tasks[0].total:
            bar.update(task, completed=bar.tasks[0].total)
    if done is None:
        err.print(f"job {job_id} was taken by another worker; read it with the server's {get}")
    merged: dict = {}
    token = None
    while True:
        r = gated.gate.call(gated.ctx, get, lambda **x: get_call(gated.gate.service, job_id, next_token=token, **x))
        page = api_model.output(get, r)
        for key in ("Faces", "Persons"):
            if key in page:
                merged.setdefault(key, []).extend(page.pop(key))
        merged.update({k: v for k, v in page.items() if k != "NextToken"})
        token = page.get("NextToken")
        if not token:
            return merged


@video_app.command("detect")
def detect(
    file: Path,
    attributes: str = member_option("StartFaceDetection", "FaceAttributes", "--attributes", default="DEFAULT",
                                    note="ALL: every landmark type."),
    workers: Optional[int] = WorkersOpt,
    ray: Optional[str] = RayOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Faces in every sampled frame of FILE (not identification: no purpose needed). Exit 1: no face."""
    with errors(as_json):
        gated = _Gated()
        r = _run(gated, "StartFaceDetection", "GetFaceDetection",
                 lambda svc, **x: svc.start_face_detection(file, face_attributes=attributes, **x),
                 lambda svc, job_id, **x: svc.get_face_detection(job_id, **x), as_json, pool(workers, ray))
        faces = r.get("Faces", [])
        if as_json:
            print(json.dumps(r))
        else:
            _status(r)
            table = Table("time (s)", "faces", "boxes (left, top)", title="faces by sampled frame", title_justify="left")
            by_time: dict[int, list] = {}
            for f in faces:
                by_time.setdefault(f["Timestamp"], []).append(f["Face"]["BoundingBox"])
            for t, boxes in sorted(by_time.items()):
                table.add_row(f"{t / 1000:.2f}", str(len(boxes)),
                              "  ".join(f"({b['Left']:.2f}, {b['Top']:.2f})" for b in boxes))
            out.print(table if faces else "no face in any sampled frame")
    if r.get("JobStatus") != "SUCCEEDED" or not faces:
        raise typer.Exit(EXIT_NEGATIVE)


@video_app.command("search")
def search(
    file: Path,
    collection: str = member_option("StartFaceSearch", "CollectionId", "--collection", default=...,
                                    note="The collection searched for every person seen."),
    threshold: Optional[float] = member_option("StartFaceSearch", "FaceMatchThreshold", "--threshold", note="Default 80."),
    max_fmr: Optional[float] = MaxFmrOpt,
    purpose: Optional[str] = PurposeOpt,
    case: Optional[str] = CaseOpt,
    workers: Optional[int] = WorkersOpt,
    ray: Optional[str] = RayOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Search COLLECTION for every person seen in FILE (identification: --purpose and --case as the
    policy requires). One row per tracked appearance. Exit 1: no candidate."""
    from faceledger.scoring.calibration import similarity_of_fmr

    if max_fmr is not None:
        by_rate = similarity_of_fmr(max_fmr)
        threshold = by_rate if threshold is None else max(threshold, by_rate)
    with errors(as_json):
        gated = _Gated(purpose, case)
        r = _run(gated, "StartFaceSearch", "GetFaceSearch",
                 lambda svc, **x: svc.start_face_search(file, collection, face_match_threshold=threshold, **x),
                 lambda svc, job_id, **x: svc.get_face_search(job_id, sort_by="INDEX", **x), as_json, pool(workers, ray))
        persons = r.get("Persons", [])
        matched = [p for p in persons if p["FaceMatches"]]
        if as_json:
            print(json.dumps(r))
        else:
            _status(r)
            table = Table("person", "seen (s)", "samples", "candidate", "similarity", "FMR", title="people in the video",
                          title_justify="left")
            tracks: dict[int, list] = {}
            for p in persons:
                tracks.setdefault(p["Person"]["Index"], []).append(p)
            for index, seen in sorted(tracks.items()):
                best = seen[0]["FaceMatches"][0] if seen[0]["FaceMatches"] else None
                table.add_row(str(index), f"{seen[0]['Timestamp'] / 1000:.1f}-{seen[-1]['Timestamp'] / 1000:.1f}",
                              str(len(seen)),
                              (best["Face"].get("ExternalImageId") or best["Face"]["FaceId"]) if best else "-",
                              f"{best['Similarity']:.1f}" if best else "-",
                              f"{best['FalseMatchRate']:.1e}" if best and best.get("FalseMatchRate") is not None else "-")
            out.print(table if persons else "no face in any sampled frame")
            ident = r.get("Identification") or {}
            if ident:
                out.print(f"threshold {ident['EffectiveThreshold']:.1f} for a gallery of {ident['GallerySize']} faces")
            if r.get("ResultsLedgerEntry"):
                out.print("[dim]Candidates are leads for a person to review, never an identification "
                          f"({review_hint(r['ResultsLedgerEntry'])}).[/]", soft_wrap=True)
    if r.get("JobStatus") != "SUCCEEDED" or not matched:
        raise typer.Exit(EXIT_NEGATIVE)


def _status(r: dict) -> None:
    meta = r.get("VideoMetadata") or {}
    out.print(f"job {r.get('JobId')}: {r.get('JobStatus')}"
              + (f" ({r['StatusMessage']})" if r.get("StatusMessage") else "")
              + (f"; {meta['Codec']} {meta['FrameWidth']}x{meta['FrameHeight']}, {meta['DurationMillis'] / 1000:.1f} s, "
                 f"{meta['FrameRate']:.2f} fps" if meta else ""))
