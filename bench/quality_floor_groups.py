"""The moratorium preset's quality floor, refusal rate by FairFace race x gender group.

Prints, for each of the 14 groups (N faces each, default 200), the share of probes the preset's
floor refuses and the share each criterion refuses (sharpness, exposure, yaw, pitch; a probe can
fail several), the max/min ratio across groups with a bootstrap 95% interval (faces resampled
within each group), and what sampling alone would give. The named baseline, in the same run, is
the previous preset floor (yaw 30, pitch 25). Then the bad probes the floor exists for: LFW faces
blurred (Gaussian, radius 4), under-exposed (gain 0.3, gamma 1.5), FairFace faces seen in profile
or turned 45 degrees or more (found by eye: tests/test_quality_floor.py's PROFILES) and their
mirror images, and the same LFW faces as taken.

Each face's raw criteria come from a cache (evaluation/quality_cache.py, keyed by code and model
versions), so after one run that measures them (tens of minutes for every FairFace face on a busy
2-core machine) a re-run or a ``--sweep`` of other floors takes about a minute. ``--estimator`` checks the yaw estimator for group bias
apart from the photos: the mirror image must read -yaw, and on faces that an independent proxy
(the agreement of a face's template with its mirror image's) calls frontal, the groups' yaw
should read alike.

    FACELEDGER_DETECTOR=blazeface python bench/quality_floor_groups.py [--per-group 200] [--lfw 200]
        [--set max_abs_yaw=40 ...] [--sweep] [--estimator]

FairFace images are pre-aligned crops: they are measured as such (the detector does not run on
them); LFW images go through the configured detector. Demographic labels are read here, in the
bench, never by the engine.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from faceledger import FaceEngine, Settings  # noqa: E402
from faceledger.evaluation.datasets import LFW, FairFace  # noqa: E402
from faceledger.evaluation.quality_cache import criteria_for  # noqa: E402
from faceledger.governance.policy import Policy  # noqa: E402
from faceledger.vision.quality import QualityFloor  # noqa: E402

CRITERIA = ("sharpness", "exposure", "yaw", "pitch", "other")
#: The preset's floor before this bench chose its pose limits from recognition errors.
PREVIOUS = QualityFloor(min_sharpness=30, min_highlight=20, min_contrast=15, max_abs_yaw=30, max_abs_pitch=25,
                        min_face_size=60)
#: FairFace faces seen in profile or turned 45 degrees or more, checked by eye (the test's list).
PROFILES = ("val/2580.jpg", "val/606.jpg", "val/1634.jpg", "val/237.jpg", "val/640.jpg", "val/1603.jpg",
            "val/295.jpg", "val/1597.jpg")


def criteria(failures: list[str]) -> set[str]:
    """The floor's failure messages -> the criteria they name."""
    out = set()
    for f in failures:
        if f.startswith("sharpness"):
            out.add("sharpness")
        elif f.startswith(("under-exposed", "washed out", "flat exposure", "brightness")):
            out.add("exposure")
        elif f.startswith("yaw"):
            out.add("yaw")
        elif f.startswith("pitch"):
            out.add("pitch")
        else:
            out.add("other")
    return out


def ratio_ci(refused: dict[str, np.ndarray], reps: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """max/min of the groups' refusal rates, and its bootstrap 95% interval (faces resampled within
    each group)."""
    rng = np.random.default_rng(seed)
    rates = np.array([v.mean() for v in refused.values()])
    boot = np.stack([rng.choice(v, size=(reps, len(v))).mean(1) for v in refused.values()], axis=1)
    r = boot.max(1) / np.maximum(boot.min(1), 1e-9)
    return float(rates.max() / max(rates.min(), 1e-9)), float(np.quantile(r, 0.025)), float(np.quantile(r, 0.975))


def null_ratio(refused: dict[str, np.ndarray], seed: int = 0) -> tuple[float, float]:
    """Median and 95th percentile of max/min if every group were refused at the pooled rate."""
    sizes = np.array([len(v) for v in refused.values()])
    pooled = sum(v.sum() for v in refused.values()) / sizes.sum()
    draws = np.random.default_rng(seed).binomial(sizes, pooled, size=(10000, len(sizes))) / sizes
    null = draws.max(1) / np.maximum(draws.min(1), 1e-9)
    return float(np.median(null)), float(np.quantile(null, 0.95))


def summary(floor: QualityFloor, groups: dict, probes: dict) -> str:
    refused = {k: np.array([bool(floor.failures(c.quality)) for c in v]) for k, v in groups.items()}
    rates = [v.mean() for v in refused.values()]
    ratio, lo, hi = ratio_ci(refused)
    bad = " ".join(f"{kind} {100 * np.mean([bool(floor.failures(c.quality)) for c in cs]):5.1f}%"
                   for kind, cs in probes.items())
    return (f"refused {100 * min(rates):4.1f}-{100 * max(rates):4.1f}%, max/min {ratio:.2f} [{lo:.2f}, {hi:.2f}]; "
            f"probes refused: {bad}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-group", type=int, default=200)
    ap.add_argument("--lfw", type=int, default=200)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="a candidate floor: the preset's with these fields changed")
    ap.add_argument("--sweep", action="store_true", help="the spread and the bad probes over a grid of floors")
    ap.add_argument("--estimator", action="store_true", help="check the yaw estimator for group bias")
    ap.add_argument("--mirror", type=int, default=50, help="faces per group for the mirror symmetry check")
    args = ap.parse_args()
    settings = Settings.load()
    engine = FaceEngine(settings)
    floor = Policy.load("moratorium").quality_floor
    for item in args.set:
        name, _, value = item.partition("=")
        floor = dataclasses.replace(floor, **{name: float(value)})
    start = time.perf_counter()
    ff = FairFace.locate(settings)
    by_group: dict[str, list] = defaultdict(list)
    for r in ff.records():
        key = f"{r.race} / {r.gender}"
        if len(by_group[key]) < args.per_group:
            by_group[key].append(r.path)
    every = criteria_for([p for v in by_group.values() for p in v], engine, prealigned=True)
    groups = {k: [every[p] for p in sorted_paths if every[p] is not None]
              for k, sorted_paths in sorted(by_group.items())}
    lfw = LFW.locate(settings).images()[:: 13233 // args.lfw][: args.lfw]
    probes = {}
    for kind in ("real", "blurred", "dark"):
        got = criteria_for(lfw, engine, variant=kind, expected=LFW.expected_face)
        probes[f"LFW {kind}"] = [c for c in got.values() if c is not None]
    profiles = [ff.root / n for n in PROFILES]
    probes["profiles"] = [c for v in ("real", "mirrored")
                          for c in criteria_for(profiles, engine, variant=v, prealigned=True).values() if c]
    print(f"detector: FairFace pre-aligned (no detector), LFW {settings.detector} (+{settings.fallback_detector}); "
          f"{sum(map(len, groups.values()))} FairFace faces, {len(probes['LFW real'])} LFW, "
          f"{len(probes['profiles'])} profiles and mirror images")
    print(f"floor: {floor}")
    print(f"{'group':30} {'n':>5} {'floor':>6} " + " ".join(f"{c:>9}" for c in CRITERIA[:4]) + f" {'previous':>9}")
    rows = {}
    for key, cs in groups.items():
        rows[key] = [criteria(floor.failures(c.quality)) for c in cs]
        n = len(cs)
        share = {c: sum(c in s for s in rows[key]) / n for c in CRITERIA}
        print(f"{key:30} {n:5} {100 * sum(bool(s) for s in rows[key]) / n:5.1f}% "
              + " ".join(f"{100 * share[c]:8.1f}%" for c in CRITERIA[:4])
              + f" {100 * np.mean([bool(PREVIOUS.failures(c.quality)) for c in cs]):8.1f}%")
    refused = {k: np.array([bool(s) for s in v]) for k, v in rows.items()}
    ratio, lo, hi = ratio_ci(refused)
    med, p95 = null_ratio(refused)
    print(f"floor:    max/min {ratio:.2f}, bootstrap 95% interval [{lo:.2f}, {hi:.2f}]; sampling alone (every group "
          f"at the pooled rate): median {med:.2f}, 95th percentile {p95:.2f}")
    print(f"  candidate: {summary(floor, groups, probes)}")
    print(f"  previous:  {summary(PREVIOUS, groups, probes)}  (baseline)")
    for c in CRITERIA[:4]:
        r = {k: np.mean([c in s for s in v]) for k, v in rows.items()}
        print(f"  {c:9} alone: {100 * min(r.values()):.1f}% .. {100 * max(r.values()):.1f}%")
    for label, part in (("gender", lambda k: k.split(" / ")[1]), ("race", lambda k: k.split(" / ")[0])):
        pooled: dict[str, list] = defaultdict(list)
        for k, v in rows.items():
            pooled[part(k)].extend(v)
        print(f"pooled by {label}: " + ", ".join(
            f"{p} {100 * np.mean([bool(s) for s in v]):.1f}% (yaw {100 * np.mean(['yaw' in s for s in v]):.1f}%)"
            for p, v in sorted(pooled.items())))
    if args.sweep:
        print("\nsweep (the candidate floor with these fields changed):")
        for yaw, pitch, sharp in itertools.product((30, 35, 40, 45, 50), (25, 30, 35), (30, 25, 20)):
            f = dataclasses.replace(floor, max_abs_yaw=yaw, max_abs_pitch=pitch, min_sharpness=sharp)
            print(f"  yaw {yaw} pitch {pitch} sharpness {sharp}: {summary(f, groups, probes)}")
    if args.estimator:
        estimator(engine, by_group, groups, args.mirror, floor)
    print(f"({time.perf_counter() - start:.0f} s)")


def estimator(engine: FaceEngine, by_group: dict, groups: dict, mirror: int, floor: QualityFloor) -> None:
    """The yaw estimator checked apart from the photos: mirror symmetry per group, and the groups'
    yaw on faces an independent proxy calls frontal."""
    print(f"\nyaw estimator: mirror symmetry (first {mirror} faces per group; yaw(image) + yaw(mirror) is 0 for an "
          "unbiased estimator) and yaw on faces the mirror agreement calls frontal")
    cos_all = np.concatenate([[c.mirror_cos for c in v] for v in groups.values()])
    frontal_cut = float(np.quantile(cos_all, 0.5))
    print(f"{'group':30} {'mean sum':>9} {'|sum| p90':>9} {'median |yaw|':>12} {'frontal: median |yaw|':>22} "
          f"{'> 30':>6} {'5-pt med':>8} {'mirror cos med':>14}")
    for key, cs in groups.items():
        paths = by_group[key][:mirror]
        real = criteria_for(paths, engine, prealigned=True)
        mirr = criteria_for(paths, engine, variant="mirrored", prealigned=True)
        sums = np.array([real[p].quality.pose.yaw + mirr[p].quality.pose.yaw for p in paths if real[p] and mirr[p]])
        yaw = np.array([abs(c.quality.pose.yaw) for c in cs])
        cos = np.array([c.mirror_cos for c in cs])
        front = cos >= frontal_cut
        yaw5 = np.array([abs(c.pose5.yaw) for c in cs])
        print(f"{key:30} {sums.mean():9.2f} {np.quantile(np.abs(sums), 0.9):9.2f} {np.median(yaw):12.1f} "
              f"{np.median(yaw[front]):15.1f} (n {front.sum():3}) {100 * np.mean(yaw[front] > 30):5.1f}% "
              f"{np.median(yaw5[front]):8.1f} {np.median(cos):14.4f}")
    # the proxy's relation to yaw, per group: median |yaw| by mirror-agreement band (pooled bands)
    edges = np.quantile(cos_all, [0, 0.2, 0.4, 0.6, 0.8, 1.0])
    print("median |yaw| by band of mirror agreement (pooled quintiles, lowest agreement first):")
    for key, cs in groups.items():
        yaw = np.array([abs(c.quality.pose.yaw) for c in cs])
        cos = np.array([c.mirror_cos for c in cs])
        band = np.clip(np.searchsorted(edges, cos, side="right") - 1, 0, 4)
        print(f"  {key:30} " + " ".join(f"{np.median(yaw[band == b]) if (band == b).any() else float('nan'):5.1f}"
                                        f" ({(band == b).sum():3})" for b in range(5)))
    # Refusal standardised to one pose mix: each group's refusal rate within each band of the
    # independent proxy, averaged with the pooled band weights (equal: quintiles). If the floor
    # treats equally turned faces alike, the standardised rates agree even where the photos'
    # pose mixes differ.
    rng = np.random.default_rng(0)
    std, boot = {}, []
    bands = {}
    for key, cs in groups.items():
        cos = np.array([c.mirror_cos for c in cs])
        bands[key] = (np.clip(np.searchsorted(edges, cos, side="right") - 1, 0, 4),
                      np.array([bool(floor.failures(c.quality)) for c in cs]))
    def standardised(band, ref):
        return np.mean([ref[band == b].mean() for b in range(5) if (band == b).any()])
    for key, (band, ref) in bands.items():
        std[key] = standardised(band, ref)
    for _ in range(1000):
        r = []
        for band, ref in bands.values():
            i = rng.integers(0, len(ref), len(ref))
            r.append(standardised(band[i], ref[i]))
        boot.append(max(r) / max(min(r), 1e-9))
    # what the standardised max/min would be if group labels meant nothing (faces shuffled among groups)
    all_band = np.concatenate([b for b, _ in bands.values()])
    all_ref = np.concatenate([r for _, r in bands.values()])
    cuts = np.cumsum([len(r) for _, r in bands.values()])[:-1]
    null = []
    for _ in range(1000):
        perm = rng.permutation(len(all_ref))
        r = [standardised(b, f) for b, f in zip(np.split(all_band[perm], cuts), np.split(all_ref[perm], cuts))]
        null.append(max(r) / max(min(r), 1e-9))
    print("floor refusal standardised to the pooled mix of mirror agreement (quintiles): " + ", ".join(
        f"{k} {100 * v:.1f}%" for k, v in std.items()))
    print(f"  max/min {max(std.values()) / max(min(std.values()), 1e-9):.2f}, bootstrap 95% interval "
          f"[{np.quantile(boot, 0.025):.2f}, {np.quantile(boot, 0.975):.2f}]; with group labels shuffled: median "
          f"{np.median(null):.2f}, 95th percentile {np.quantile(null, 0.95):.2f}; share in the lowest agreement quintile "
          "(the proxy's most turned): " + ", ".join(f"{k} {100 * np.mean(b == 0):.0f}%" for k, (b, _) in bands.items()))


if __name__ == "__main__":
    main()
