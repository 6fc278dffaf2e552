"""The moratorium preset's quality floor, refusal rate by FairFace race x gender group.

Mean brightness mostly measures skin tone (docs/quality.md); this bench prints, for each of the
14 groups (N faces each, default 200), the share of probes the preset's floor refuses, and the
same under the old brightness floor (min_brightness 25) as the named baseline, with max/min
across groups. Then the synthetic bad probes the floor exists for: LFW faces blurred, under-
exposed (gain and gamma) and the real faces of the same sample, with the share refused.

    python bench/quality_floor_groups.py [--per-group 200]
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-group", type=int, default=200)
    ap.add_argument("--lfw", type=int, default=100)
    args = ap.parse_args()
    settings = Settings.load()
    engine = FaceEngine(settings)
    floor = Policy.load("moratorium").quality_floor
    baseline = dataclasses.replace(floor, min_brightness=25.0, min_highlight=0.0, max_shadow=100.0, min_contrast=0.0)
    start = time.perf_counter()
    by_group: dict[str, list] = defaultdict(list)
    for r in FairFace.locate(settings).records():
        key = f"{r.race} / {r.gender}"
        if len(by_group[key]) < args.per_group:
            by_group[key].append(r)
    rates = {}
    print(f"{'group':34} {'n':>4} {'floor':>7} {'brightness 25 (baseline)':>25}")
    for key in sorted(by_group):
        faces = [d.faces[0] for d in (engine.detect(r.path, prealigned=True) for r in by_group[key]) if d.faces]
        new = np.mean([bool(floor.failures(f.quality)) for f in faces])
        old = np.mean([bool(baseline.failures(f.quality)) for f in faces])
        rates[key] = (new, old)
        print(f"{key:34} {len(faces):4} {100 * new:6.1f}% {100 * old:24.1f}%")
    for i, name in enumerate(("floor", "baseline")):
        values = [v[i] for v in rates.values()]
        print(f"{name}: max/min across {len(values)} groups {max(values) / max(min(values), 1e-9):.2f} "
              f"({100 * min(values):.1f}% .. {100 * max(values):.1f}%)")
    lfw = LFW.locate(settings).images()[:: 13233 // args.lfw][: args.lfw]
    for kind in ("real", "blurred", "dark"):
        faces = [d.faces[0] for d in (engine.detect(degrade(p, kind)) for p in lfw) if d.faces]
        refused = np.mean([bool(floor.failures(f.quality)) for f in faces])
        old = np.mean([bool(baseline.failures(f.quality)) for f in faces])
        print(f"LFW {kind:8} {len(faces):4} faces detected of {len(lfw)}: floor refuses {100 * refused:5.1f}%, "
              f"baseline {100 * old:5.1f}%")
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
