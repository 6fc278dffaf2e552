"""1:N identification on LFW through the store's search, against exact numpy search (same run).

Gallery: the first image of each of the 1,680 people with two or more images. Probes: all their
other images. Reports the rank-1 hit rate; the share of probes whose best non-mated score clears
each calibrated similarity (each such probe would put a stranger on the candidate list); and, at
the gallery-aware threshold the policy sets for a false positive identification bound (FMR =
bound / gallery size), the observed share of probes listing a stranger, against the bound.

    .venv/bin/python bench/bench_identification.py
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from faceledger import Settings
from faceledger.evaluation.datasets import LFW
from faceledger.models.registry import model_id
from faceledger.scoring.calibration import for_model
from faceledger.scoring.calibration import similarity_of_fmr
from faceledger.evaluation.protocols import acquire
from faceledger.store import NewFace, SQLiteStore


def main() -> None:
    settings = Settings.load()
    lfw = LFW.locate(settings)
    people = {n: ps for n, ps in lfw.people().items() if len(ps) >= 2}
    paths = [p for ps in people.values() for p in ps]
    t = time.perf_counter()
    got = acquire(paths, settings, expected=LFW.expected_face)
    print(f"templates for {len(paths):,} images in {time.perf_counter() - t:.0f} s (cached ones are free)")
    gallery = [(n, got[ps[0]].vector) for n, ps in people.items() if got[ps[0]].vector is not None]
    probes = [(n, got[p].vector) for n, ps in people.items() for p in ps[1:] if got[p].vector is not None]
    names = [n for n, _ in gallery]
    model = model_id(settings)
    matrix = np.stack([v for _, v in gallery])

    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStore(Path(tmp) / "s.sqlite")
        store.create_collection("lfw", str(model))
        stored = store.add_faces("lfw", [NewFace(v, (0, 0, 1, 1), 100.0, n) for n, v in gallery])
        owner = {s.face_id: n for s, (n, _) in zip(stored, gallery)}
        t = time.perf_counter()
        store_results = [store.search("lfw", v, 2) for _, v in probes]
        store_s = time.perf_counter() - t
        store.close()
    t = time.perf_counter()
    exact = [np.argsort(-(matrix @ v))[:2] for _, v in probes]
    exact_s = time.perf_counter() - t

    rank1_store = np.mean([owner[r[0][0].face_id] == n for (n, _), r in zip(probes, store_results)])
    rank1_exact = np.mean([names[e[0]] == n for (n, _), e in zip(probes, exact)])
    cal = for_model(str(model))
    # exact best stranger and own-gallery score per probe, for the gallery-aware threshold
    sims = np.stack([matrix @ v for _, v in probes])
    own = np.array([names.index(n) for n, _ in probes])
    mate = sims[np.arange(len(probes)), own]
    sims[np.arange(len(probes)), own] = -2
    stranger = sims.max(axis=1)
    print(f"gallery {len(gallery):,} people, {len(probes):,} probes")
    print(f"rank-1 hit rate: store search {100 * rank1_store:.2f}%   exact numpy (baseline) {100 * rank1_exact:.2f}%")
    print(f"search time per probe: store {1000 * store_s / len(probes):.3f} ms   numpy {1000 * exact_s / len(probes):.3f} ms")
    for threshold in (42.9, 57.1, 80, 99):
        rate = np.mean(cal.similarity(stranger) >= threshold)
        print(f"probes whose best stranger has similarity >= {threshold}: {100 * rate:.2f}% ({int(round(rate * len(probes)))})")
    for bound in (0.1, 0.01):
        t = cal.threshold_for_fmr(bound / len(gallery))
        fpir = np.mean(stranger >= t)
        hit = np.mean(mate >= t)
        print(f"gallery-aware threshold for FPIR <= {bound:g} (similarity {similarity_of_fmr(bound / len(gallery)):.1f}): "
              f"observed share of probes listing a stranger {100 * fpir:.2f}%, own gallery image found {100 * hit:.1f}%")


if __name__ == "__main__":
    main()
