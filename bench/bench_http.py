"""The HTTP service under load: requests/s and p50/p99 latency of DetectFaces and
SearchFacesByImage through boto3 (SigV4-signed) with 1, 4 and 16 concurrent clients on loopback,
against the same calls made in process (the baseline), in the same run.

The key is an investigator's for the purpose access-control, so the default policy (moratorium)
allows its searches; each concurrency level sends at least --min-requests requests (per client:
the larger of --requests-per-client and what that needs), so p99 is read from enough samples.

    .venv/bin/python bench/bench_http.py [--workers 2] [--requests-per-client 20] [--min-requests 64]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import numpy as np
from botocore.config import Config

from faceledger import Settings
from faceledger.governance.app import open_service
from faceledger.evaluation.datasets import LFW
from faceledger.governance.keys import KeyStore


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--requests-per-client", type=int, default=20)
    ap.add_argument("--min-requests", type=int, default=64)
    ap.add_argument("--gallery", type=int, default=200)
    args = ap.parse_args()
    lfw = LFW.locate(Settings.load())
    images = [p.read_bytes() for p in lfw.images()[::400][:32]]
    gallery = lfw.images()[1::60][: args.gallery]

    with tempfile.TemporaryDirectory() as tmp:
        s = Settings.load(store=Path(tmp) / "s.sqlite", keys_file=Path(tmp) / "keys.json", ledger=Path(tmp) / "ledger.sqlite")
        svc = open_service(s)
        svc.create_collection("bench")
        for p in gallery:
            svc.index_faces("bench", p, quality_filter="NONE")
        # a search needs a purpose the policy allows, carried by the key (its only one: stated by default)
        key, secret = KeyStore(s.keys_file).create("bench", roles=("investigator",), purposes=("access-control",))
        calls = {
            "DetectFaces": (lambda img: svc.detect_faces(img), lambda c, img: c.detect_faces(Image={"Bytes": img})),
            "SearchFacesByImage": (
                lambda img: svc.search_faces_by_image("bench", img),
                lambda c, img: c.search_faces_by_image(CollectionId="bench", Image={"Bytes": img}),
            ),
        }
        inproc = {}
        for op, (local, _) in calls.items():
            times = []
            for img in images:  # the same images the clients send, each once
                t = time.perf_counter()
                try:
                    local(img)
                except Exception:  # an image without a face is a fair request too
                    pass
                times.append(time.perf_counter() - t)
            inproc[op] = np.array(times)
        svc.store.close()

        port = free_port()
        env = {**os.environ, "FACELEDGER_STORE": str(s.store), "FACELEDGER_KEYS_FILE": str(s.keys_file),
               "FACELEDGER_LEDGER": str(s.ledger)}
        server = subprocess.Popen(
            [sys.executable, "-m", "faceledger.interfaces.cli.main", "serve", "--port", str(port), "--workers", str(args.workers)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            cfg = Config(retries={"max_attempts": 1}, max_pool_connections=32, read_timeout=300)
            make = lambda: boto3.client("rekognition", endpoint_url=url, region_name=s.region,  # noqa: E731
                                        aws_access_key_id=key.access_key_id, aws_secret_access_key=secret, config=cfg)
            for _ in range(200):
                try:
                    make().list_collections()
                    break
                except Exception:
                    time.sleep(0.2)
            print(f"server: {args.workers} worker process(es); gallery {len(gallery)} faces; images 250x250 LFW")
            print(f"{'operation':20} {'clients':>7} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'in-process p50 ms':>18} {'overhead':>9}")
            for op, (_, remote) in calls.items():
                base = float(np.median(inproc[op])) * 1000
                for clients in (1, 4, 16):
                    per_client = max(args.requests_per_client, -(-args.min_requests // clients))
                    def worker(i: int) -> list[float]:
                        c, out = make(), []
                        for j in range(per_client):
                            img = images[(i * 7 + j) % len(images)]
                            t = time.perf_counter()
                            try:
                                remote(c, img)
                            except c.exceptions.InvalidParameterException:
                                pass
                            out.append(time.perf_counter() - t)
                        return out
                    t = time.perf_counter()
                    with ThreadPoolExecutor(clients) as pool:
                        lat = np.array([x for r in pool.map(worker, range(clients)) for x in r])
                    wall = time.perf_counter() - t
                    p50, p99 = np.percentile(lat, [50, 99]) * 1000
                    print(f"{op:20} {clients:7} {len(lat) / wall:7.1f} {p50:8.1f} {p99:8.1f} {base:18.1f} {p50 / base:8.2f}x")
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
