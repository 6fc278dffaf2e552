"""The moratorium preset's quality floor, refusal rate by FairFace race x gender group.

Prints, for each of the 14 groups (N faces each, default 200), the share of probes the preset's
floor refuses and the share each criterion refuses (sharpness, exposure, yaw, pitch; a probe can
fail several), so the cause of any spread is visible. The named baseline, measured in the same
run, is the previous floor: the same cut-offs on the previous measures (sharpness as the
Laplacian variance of luma, which follows skin tone; pose from the 5 landmarks, which follows
nose length). Then pooled rates by gender and by race, and the bad probes the floor exists for:
LFW faces blurred, under-exposed (gain and gamma), and the same faces as taken, with the share
refused.

    python bench/quality_floor_groups.py [--per-group 200] [--lfw 100]

Demographic labels are read here, in the bench, never by the engine.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from faceledger import FaceEngine, Settings  # noqa: E402
from faceledger.evaluation.datasets import LFW, FairFace  # noqa: E402
from faceledger.governance.policy import Policy  # noqa: E402
from faceledger.vision import quality  # noqa: E402

CRITERIA = ("sharpness", "exposure", "yaw", "pitch", "other")


def degrade(path: Path, kind: str) -> bytes:
    """An LFW image blurred, or under-exposed as a camera would (gain then display gamma)."""
    img = Image.open(path).convert("RGB")
    if kind == "blurred":
        img = img.filter(ImageFilter.GaussianBlur(4))
    elif kind == "dark":
        x = np.asarray(img, np.float32) / 255.0
        img = Image.fromarray((255.0 * (0.3 * x) ** 1.5).clip(0, 255).astype(np.uint8))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


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


def previous_sharpness(chip: np.ndarray) -> float:
    """The previous measure: 100 v / (v + 25), v = variance of the Laplacian of luma itself."""
    g = quality._luma(quality._inner(chip))
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4.0 * g[1:-1, 1:-1]
    v = float(lap.var())
    return 100.0 * v / (v + 25.0)


def previous_quality(face, width: int, height: int):
    points = np.array([[m.x * width, m.y * height] for m in face.landmarks])
    return dataclasses.replace(face.quality, sharpness=previous_sharpness(face.chip), pose=quality.pose(points))


def spread(rates: dict[str, float]) -> str:
    lo, hi = min(rates.values()), max(rates.values())
    return f"max/min {hi / max(lo, 1e-9):.2f} ({100 * lo:.1f}% .. {100 * hi:.1f}%)"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-group", type=int, default=200)
    ap.add_argument("--lfw", type=int, default=100)
    args = ap.parse_args()
    settings = Settings.load()
    engine = FaceEngine(settings)
    floor = Policy.load("moratorium").quality_floor
    start = time.perf_counter()
    by_group: dict[str, list] = defaultdict(list)
    for r in FairFace.locate(settings).records():
        key = f"{r.race} / {r.gender}"
        if len(by_group[key]) < args.per_group:
            by_group[key].append(r)
    rows: dict[str, list[tuple[set[str], bool]]] = {}
    print(f"{'group':30} {'n':>5} {'floor':>6} " + " ".join(f"{c:>9}" for c in CRITERIA[:4]) + f" {'previous floor':>15}")
    for key in sorted(by_group):
        rows[key] = []
        for r in by_group[key]:
            d = engine.detect(r.path, prealigned=True)
            f = d.faces[0]
            rows[key].append((criteria(floor.failures(f.quality)),
                              bool(floor.failures(previous_quality(f, d.width, d.height)))))
        n = len(rows[key])
        share = {c: sum(c in s for s, _ in rows[key]) / n for c in CRITERIA}
        print(f"{key:30} {n:5} {100 * sum(bool(s) for s, _ in rows[key]) / n:5.1f}% "
              + " ".join(f"{100 * share[c]:8.1f}%" for c in CRITERIA[:4])
              + f" {100 * sum(p for _, p in rows[key]) / n:14.1f}%", flush=True)
    floor_rate = {k: np.mean([bool(s) for s, _ in v]) for k, v in rows.items()}
    prev_rate = {k: np.mean([p for _, p in v]) for k, v in rows.items()}
    print(f"floor:          {spread(floor_rate)} across {len(rows)} groups")
    sizes = np.array([len(v) for v in rows.values()])
    pooled_rate = sum(sum(bool(s) for s, _ in v) for v in rows.values()) / sizes.sum()
    draws = np.random.default_rng(0).binomial(sizes, pooled_rate, size=(10000, len(sizes))) / sizes
    null = draws.max(1) / np.maximum(draws.min(1), 1e-9)
    print(f"  sampling alone (every group refused at the pooled {100 * pooled_rate:.1f}%, these group sizes): "
          f"max/min median {np.median(null):.2f}, 95th percentile {np.quantile(null, 0.95):.2f}")
    print(f"previous floor: {spread(prev_rate)} (baseline)")
    for c in CRITERIA[:4]:
        print(f"  {c:9} alone: {spread({k: np.mean([c in s for s, _ in v]) for k, v in rows.items()})}")
    for label, part in (("gender", lambda k: k.split(" / ")[1]), ("race", lambda k: k.split(" / ")[0])):
        pooled: dict[str, list] = defaultdict(list)
        for k, v in rows.items():
            pooled[part(k)].extend(v)
        print(f"pooled by {label}: " + ", ".join(
            f"{p} {100 * np.mean([bool(s) for s, _ in v]):.1f}% (yaw {100 * np.mean(['yaw' in s for s, _ in v]):.1f}%)"
            for p, v in sorted(pooled.items())))
    lfw = LFW.locate(settings).images()[:: 13233 // args.lfw][: args.lfw]
    for kind in ("real", "blurred", "dark"):
        got = [(d, d.faces[0]) for d in (engine.detect(degrade(p, kind)) for p in lfw) if d.faces]
        refused = [criteria(floor.failures(f.quality)) for _, f in got]
        prev = np.mean([bool(floor.failures(previous_quality(f, d.width, d.height))) for d, f in got])
        why = ", ".join(f"{c} {100 * np.mean([c in s for s in refused]):.0f}%" for c in CRITERIA[:4])
        print(f"LFW {kind:8} {len(got):4} faces detected of {len(lfw)}: floor refuses "
              f"{100 * np.mean([bool(s) for s in refused]):5.1f}% ({why}), previous floor {100 * prev:5.1f}%")
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
