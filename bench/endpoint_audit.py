"""The endpoint audit against a real `faceledger serve` (HTTP, SigV4) on this machine, next to the
same pairs scored in-process by the same engine: do per-group error counts agree to the last error?
And the identification protocol's run time and calls per second.

    PYTHONPATH=. python bench/endpoint_audit.py verification --people 1000 --mated 600 --nonmated 1200
    PYTHONPATH=. python bench/endpoint_audit.py identification --gallery 500 --probes 100
    PYTHONPATH=. python bench/endpoint_audit.py compare --people 1000 --mated 600 --nonmated 1200

``compare`` runs the command a user runs, `faceledger audit endpoint --compare-with engine`, against
the server, and says whether the endpoint's and the engine's per-group counts agree.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import uvicorn

from faceledger import FaceEngine, Settings
from faceledger.evaluation import endpoint_audit as ea
from faceledger.evaluation.audit import Scores, audit
from faceledger.evaluation.audit_images import lfw_items
from faceledger.evaluation.endpoint_client import Endpoint, Journal
from faceledger.governance.app import open_service
from faceledger.governance.keys import KeyStore
from faceledger.interfaces.http.app import create_app
from faceledger.service import api_model
from faceledger.service.operations import FaceService
from faceledger.store.sqlite import SQLiteStore

HEADERS = {"X-Faceledger-Purpose": "research-audit", "X-Faceledger-Case": "BENCH-1"}


def serve(root: Path, engine):
    s = Settings.load().replace(store=root / "store.sqlite", keys_file=root / "keys.json", auth="sigv4",
                                ledger=root / "ledger.sqlite")
    key, secret = KeyStore(s.keys_file).create("bench", principal="bench", roles=("admin",), purposes=("research-audit",))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uv = uvicorn.Server(uvicorn.Config(create_app(s, open_service(s, engine=engine)), host="127.0.0.1", port=port,
                                       log_level="warning"))
    threading.Thread(target=uv.run, daemon=True).start()
    while not uv.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", key.access_key_id, secret


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("protocol", choices=["verification", "identification", "compare"])
    ap.add_argument("--people", type=int, default=1000)
    ap.add_argument("--mated", type=int, default=600)
    ap.add_argument("--nonmated", type=int, default=1200)
    ap.add_argument("--gallery", type=int, default=500)
    ap.add_argument("--probes", type=int, default=100)
    ap.add_argument("--concurrency", type=int, default=2)
    args = ap.parse_args()
    engine = FaceEngine(Settings.load())
    root = Path(tempfile.mkdtemp(prefix="endpoint-bench-"))
    url, key, secret = serve(root, engine)
    endpoint = Endpoint(Journal(root / "journal.sqlite"), endpoint_url=url, region="us-east-1", headers=HEADERS,
                        access_key=key, secret_key=secret, concurrency=args.concurrency)
    if args.protocol == "compare":
        return compare(args, root, url, key, secret)
    if args.protocol == "verification":
        items = lfw_items(Settings.load(), by="gender", people=args.people)
        images = ea.Images(items)
        pairs = ea.verification_pairs(items, nonmated=args.nonmated, mated=args.mated)
        print(f"LFW: {len({s for _, s, _ in items}):,} people, {len(items):,} images, {len(pairs):,} pairs")
        result = ea.run_verification(endpoint, images, pairs, concurrency=args.concurrency)
        print(f"endpoint: {result.calls:,} calls in {result.seconds:.0f} s ({result.calls / result.seconds:.2f} calls/s), "
              f"{len(result.rows):,} scored, failures to acquire {result.failures_to_acquire}, censored {result.censored}")
        service = FaceService(engine, SQLiteStore(root / "local.sqlite"), normalisation=Settings.load().score_normalisation)
        t0 = time.monotonic()
        local = {}
        for i, j, _ in pairs:
            try:
                answer = api_model.output("CompareFaces", service.compare_faces(images.data(i), images.data(j),
                                                                                similarity_threshold=0))
            except Exception as exc:  # noqa: BLE001 - a refusal is an answer
                answer = {"Error": {"Code": getattr(exc, "code", type(exc).__name__)}}
            local[(str(images.items[i][0]), str(images.items[j][0]))] = ea.score_of_compare(answer)[0]
        print(f"in-process: {len(pairs):,} comparisons in {time.monotonic() - t0:.0f} s")
        rows = result.rows
        same = sum(local[(r["path_a"], r["path_b"])] == r["score"] for r in rows)
        unscored_local = sum(v is None for v in local.values())
        print(f"identical scores: {same:,} of {len(rows):,}; pairs unscored in-process {unscored_local}, "
              f"over the wire {len(pairs) - len(rows)}")
        inproc = Scores.from_labels([local[(r["path_a"], r["path_b"])] for r in rows], [r["mated"] for r in rows],
                                    [r["group_a"] for r in rows], [r["group_b"] for r in rows],
                                    [r["subject_a"] for r in rows], [r["subject_b"] for r in rows])
        kw = dict(targets=(1e-2,), thresholds=(40.0, 80.0, 99.0), resamples=0)
        for a, b in zip(audit(result.scores, **kw).points, audit(inproc, **kw).points):
            for ga, gb in zip(a.groups, b.groups):
                print(f"  {a.name:>16} {ga.group:>7}: endpoint FMR {ga.fmr.errors}/{ga.fmr.trials} FNMR "
                      f"{ga.fnmr.errors}/{ga.fnmr.trials}; in-process FMR {gb.fmr.errors}/{gb.fmr.trials} FNMR "
                      f"{gb.fnmr.errors}/{gb.fnmr.trials}; equal {(ga.fmr.errors, ga.fnmr.errors) == (gb.fmr.errors, gb.fnmr.errors)}")
    else:
        items = lfw_items(Settings.load(), by="gender")
        images = ea.Images(items)
        design = ea.identification_design(items, gallery=args.gallery, probes=args.probes)
        cid = ea.collection_id_for(images, design)
        result = ea.run_identification(endpoint, images, design, cid, concurrency=args.concurrency)
        print(f"identification: gallery {len(design.gallery):,}, {len(design.mated_probes) + len(design.nonmated_probes):,} "
              f"probes; {result.calls:,} calls in {result.seconds:.0f} s ({result.calls / result.seconds:.2f} calls/s); "
              f"refused probes {result.failures_to_acquire}; lowest similarity returned "
              f"{result.extra['lowest_similarity_returned']:.1f}")
        rates = ea.identification_rates(images, design, result, (80.0, 99.0),
                                        gallery_sizes=(args.gallery // 10, args.gallery // 2))
        print(ea.aclu_table(rates, len(design.gallery)))


def compare(args, root: Path, url: str, key: str, secret: str) -> None:
    """`faceledger audit endpoint --compare-with engine`, as a user runs it, timed."""
    out = root / "compare-out"
    cmd = [sys.executable, "-m", "faceledger", "audit", "endpoint", "--dataset", "lfw", "--people", str(args.people),
           "--mated", str(args.mated), "--nonmated", str(args.nonmated), "--endpoint-url", url, "--region", "us-east-1",
           "--out", str(out), "--concurrency", str(args.concurrency), "--compare-with", "engine", "--yes", "--json",
           "--target-fmr", "1e-2", "--target-fmr", "1e-3", *[a for h, v in HEADERS.items() for a in ("--header", f"{h}={v}")]]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": key, "AWS_SECRET_ACCESS_KEY": secret, "AWS_CONFIG_FILE": "/dev/null",
           "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    t0 = time.monotonic()
    run = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    if run.returncode:
        raise SystemExit(run.stderr[-3000:])
    report = json.loads(run.stdout)
    (name,) = report["scorings"]
    engine = report["scorings"][name]
    print(f"{report['comparisons']:,} pairs both scored ({report['mated']:,} mated), scored by one only "
          f"{report['pairs_scored_by_one']}; endpoint {report['calls_sent']:,} calls in {report['seconds']} s, engine "
          f"{report['compare_with']['seconds']} s; whole command {wall:.0f} s")
    print(f"failures to acquire: endpoint {report['failures_to_acquire']}, engine {report['compare_with']['failures_to_acquire']}")
    equal = True
    for a, b in zip(report["points"], engine["points"]):
        for ga, gb in zip(a["groups"], b["groups"]):
            same = [ga[k]["errors"] for k in ("fmr", "fnmr")] == [gb[k]["errors"] for k in ("fmr", "fnmr")]
            equal &= same
            print(f"  {a['name']:>16} {ga['group']:>7}: endpoint (threshold {a['threshold']:.4g}) FMR "
                  f"{ga['fmr']['errors']}/{ga['fmr']['trials']} FNMR {ga['fnmr']['errors']}/{ga['fnmr']['trials']}; "
                  f"{name} (threshold {b['threshold']:.4g}) FMR {gb['fmr']['errors']}/{gb['fmr']['trials']} FNMR "
                  f"{gb['fnmr']['errors']}/{gb['fnmr']['trials']}; equal {same}")
    print(f"every group's counts equal at every shared operating point: {equal}; report in {out}")


if __name__ == "__main__":
    main()
