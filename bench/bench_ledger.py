"""What the ledger's protections cost, measured in one run against the pre-issue-20 path.

Baseline: one entry per request appended to the SQLite ledger (synchronous=FULL, one fsync per
commit), nothing published outside the database: what the gate did before write-ahead and heads.
Now: the gate's write-ahead (an intent entry before the request runs, an outcome entry after),
each append also publishing its tip to the heads directory; plus the cost of signing heads and of
verifying against them. Prints entries/s and requests/s and their ratios to the baseline.

    python bench/bench_ledger.py [--requests 1000]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from faceledger.governance.gate import Gate
from faceledger.governance.ledger import HeadLog, HeadSigner, Ledger, Signer, verify_ledger
from faceledger.governance.policy import Context, Policy, Principal

ROUNDS = 10
CTX = Context(Principal("bench", ("admin",), ("*",)), None, "CASE-1", "http")
BODY = {"operation": "IndexFaces", "principal": "bench", "roles": ["admin"], "purpose": None, "case_reference": "CASE-1",
        "interface": "http", "collection": "c", "image_sha256": ["0" * 64], "policy": {"name": "moratorium", "digest": "0" * 64},
        "decision": {"allowed": True, "reason": "role admin"}, "outcome": "ok", "result": {"indexed_face_ids": ["f"]}}


def rate(n: int, fn) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1000)
    n = ap.parse_args().requests
    root = Path(tempfile.mkdtemp(prefix="bench-ledger-"))

    before = Ledger(root / "before.sqlite")
    heads = HeadLog(root / "after-heads")
    after = Ledger(root / "after.sqlite", heads)
    gate = Gate(None, Policy.load("moratorium"), after)
    # the disk is shared and fsync times wander: alternate short rounds and take each one's median
    rounds: dict[str, list[float]] = {"base": [], "tips": [], "requests": []}
    for r in range(ROUNDS):
        rounds["base"].append(rate(n // ROUNDS, lambda i: before.append({**BODY, "i": i})))  # one entry = one request
        rounds["tips"].append(rate(n // ROUNDS, lambda i: after.append({**BODY, "i": i})))
        rounds["requests"].append(rate(n // ROUNDS, lambda i: gate.call(CTX, "CreateCollection",
                                                                          lambda: {"collection_arn": "arn"}, collection="c")))
    base_entries, tip_entries, requests = (statistics.median(rounds[k]) for k in ("base", "tips", "requests"))

    signer = Signer.generate(root / "key.pem")
    start = time.perf_counter()
    hs = HeadSigner(Ledger(root / "after.sqlite", create=False), heads, signer, every_entries=1000)
    hs.round(force=True)
    sign_s = time.perf_counter() - start
    total = after.end()[0]
    start = time.perf_counter()
    chain_only = before.verify()
    chain_s = (time.perf_counter() - start) / max(1, chain_only[0]) * total
    start = time.perf_counter()
    report = verify_ledger(Ledger(root / "after.sqlite", create=False), heads, signer.public_hex)
    verify_s = time.perf_counter() - start
    assert report.intact, report.problems

    print(f"ledger appends, {n} each in {ROUNDS} alternating rounds, medians (SQLite, synchronous=FULL, {root})")
    print(f"  baseline: entries/s {base_entries:8.1f}   = requests/s (one entry per request)")
    print(f"  now:      entries/s {tip_entries:8.1f}   ratio {tip_entries / base_entries:.2f}x (each also publishes its tip)")
    print(f"  now:      requests/s {requests:7.1f}   ratio {requests / base_entries:.2f}x (intent + outcome per request)")
    print(f"signing heads over {total} entries (verify first, one head per 1000 and the end): {sign_s:.2f} s, "
          f"{len(hs.signed)} heads")
    print(f"verify of {total} entries: chain alone {chain_s:.3f} s (scaled), against heads and tips {verify_s:.3f} s, "
          f"ratio {verify_s / chain_s:.2f}x")


if __name__ == "__main__":
    main()
