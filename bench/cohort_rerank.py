"""How much a cohort-normalised search misses by re-ranking cosine neighbours (issue 9).

With ``score_normalisation = "cohort"`` a search fetches ``Scoring.candidates(k)`` = max(4k, k+64)
nearest neighbours by cosine and re-ranks them by normalised score (scoring.py), because the store's
index ranks by cosine. A face whose normalised score would put it in the top k but whose cosine
leaves it outside the candidates is not returned. Measured here against the exact answer (every
gallery face scored): gallery = every FairFace and LFW template (25k faces), probes = 1,000 LFW
images of people with another image in the gallery; recall@k of the exact normalised top k, and
how often the probe's person is missed (an image of them in the exact top k, none in the re-ranked).

    .venv/bin/python bench/cohort_rerank.py
"""

from __future__ import annotations

import time

import numpy as np

from faceledger import Settings
from faceledger.models.registry import model_id
from faceledger.scoring.scoring import Scoring
from fairness_checks import load_templates  # bench/ is the script directory


def main() -> None:
    t0 = time.perf_counter()
    settings = Settings.load()
    scoring = Scoring.of(str(model_id(settings)), "cohort")
    ffv, _, _, _, imgs, lv, _ = load_templates(settings)
    gallery = np.concatenate([lv, ffv])
    names = np.array([n for n, _ in imgs] + [""] * len(ffv))
    people, counts = np.unique(names[: len(lv)], return_counts=True)
    repeated = set(people[counts > 1])
    rng = np.random.default_rng(0)
    probes = rng.choice([k for k in range(len(lv)) if names[k] in repeated], 1000, replace=False)
    ks = (1, 5, 10, 50)
    found = {k: 0 for k in ks}
    mate_lost = {k: 0 for k in ks}
    stats = scoring.normaliser.stats(gallery)
    for p in probes:
        cos = gallery @ gallery[p]
        cos[p] = -np.inf  # the probe itself is not in the gallery
        exact = scoring.normaliser.normalise(cos, scoring.normaliser.stats(gallery[p]), stats)  # Scoring.scores, stats once
        exact[p] = -np.inf
        by_exact = np.argsort(-exact)
        for k in ks:
            cand = np.argpartition(-cos, scoring.candidates(k))[: scoring.candidates(k)]
            reranked = cand[np.argsort(-exact[cand])][:k]
            truth = by_exact[:k]
            found[k] += len(np.intersect1d(truth, reranked))
            # the person is missed: the exact top k holds one of their other images, the re-ranked none
            mate_lost[k] += int((names[truth] == names[p]).any() and not (names[reranked] == names[p]).any())
    print(f"gallery {len(gallery):,} faces, {len(probes):,} probes ({time.perf_counter() - t0:.0f} s)")
    for k in ks:
        print(f"k={k:3d}: candidates {scoring.candidates(k):4d}; recall of the exact top {k}: "
              f"{found[k] / (k * len(probes)):.4f}; probes whose person is missed: {mate_lost[k]}")


if __name__ == "__main__":
    main()
