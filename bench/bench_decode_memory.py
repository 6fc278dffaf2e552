"""Server memory under concurrent decompression-sized images, with and without the decode budget.

A 77 KB 16-bit grey PNG declares 6300 x 6300 = 39.7 M pixels. The server runs in a child process
(auth none, the open policy); N clients send DetectFaces with that image at once while this
script samples the child's resident set every 10 ms. Printed: idle RSS, peak RSS and the rise,
for the default budget (decode_budget_bytes = 1 GiB) and, as the baseline, no budget (1 TiB).

    python bench/bench_decode_memory.py [--clients 6] [--budget BYTES]

Measured figures are in docs/configuration.md (decode_budget_bytes).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.malformed import png16_bomb  # noqa: E402

SERVER = """
import sys, uvicorn
from faceledger.settings import Settings
from faceledger.interfaces.http.app import create_app
root, port, budget = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
s = Settings.load().replace(store=root + "/store.sqlite", ledger=root + "/ledger.sqlite", keys_file=root + "/keys.json",
                            auth="none", policy="open", decode_budget_bytes=budget)
uvicorn.run(create_app(s), host="127.0.0.1", port=port, log_level="warning")
"""


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(budget: int, clients: int = 6) -> dict:
    """Idle and peak RSS of a fresh server process while ``clients`` send the 16-bit PNG at once."""
    import httpx

    body = json.dumps({"Image": {"Bytes": base64.b64encode(png16_bomb()).decode()}}).encode()
    headers = {"X-Amz-Target": "RekognitionService.DetectFaces", "Content-Type": "application/x-amz-json-1.1"}
    with tempfile.TemporaryDirectory() as root:
        port = _free_port()
        child = subprocess.Popen([sys.executable, "-c", SERVER, root, str(port), str(budget)], env=os.environ.copy())
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(600):
                try:
                    if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            # warm up: a face-less 1024 x 1024 image runs both detectors at their largest input (the
            # MMOD fallback's ONNX Runtime arena keeps ~100-200 MB from then on, whatever the budget)
            small = json.dumps({"Image": {"Bytes": base64.b64encode(png16_bomb(1024)).decode()}}).encode()
            httpx.post(url + "/", headers=headers, content=small, timeout=60)
            time.sleep(0.5)
            idle = _rss(child.pid)
            peak, done, statuses = idle, threading.Event(), []

            def sample() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, _rss(child.pid))
                    time.sleep(0.01)

            def send() -> None:
                statuses.append(httpx.post(url + "/", headers=headers, content=body, timeout=600).status_code)

            sampler = threading.Thread(target=sample)
            sampler.start()
            start = time.perf_counter()
            senders = [threading.Thread(target=send) for _ in range(clients)]
            for t in senders:
                t.start()
            for t in senders:
                t.join()
            seconds = time.perf_counter() - start
            done.set()
            sampler.join()
        finally:
            child.terminate()
            child.wait(timeout=30)
    return {"budget": budget, "clients": clients, "idle": idle, "peak": peak, "rise": peak - idle,
            "seconds": seconds, "statuses": sorted(statuses)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--budget", type=int, default=1024**3)
    args = parser.parse_args()
    mib = 2**20
    rows = [("no budget (baseline)", measure(2**40, args.clients)), (f"budget {args.budget / mib:,.0f} MiB", measure(args.budget, args.clients))]
    base = rows[0][1]["rise"]
    print(f"{args.clients} concurrent DetectFaces of a 77 KB 16-bit PNG, 6300x6300 (39.7 M pixels)")
    print(f"{'':24} {'idle MiB':>9} {'peak MiB':>9} {'rise MiB':>9} {'x baseline':>10} {'seconds':>8}  statuses")
    for name, r in rows:
        print(f"{name:24} {r['idle'] / mib:9.0f} {r['peak'] / mib:9.0f} {r['rise'] / mib:9.0f} {r['rise'] / base:10.2f} "
              f"{r['seconds']:8.1f}  {r['statuses']}")


if __name__ == "__main__":
    main()
