"""What each quality-filter level rejects on real faces (LFW and FairFace), by reason.

    .venv/bin/python bench/quality_levels.py [--images 500]
"""

from __future__ import annotations

import argparse
from collections import Counter

from faceledger import FaceEngine, Settings
from faceledger.evaluation.datasets import LFW, FairFace
from faceledger.vision.quality import reasons


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=500)
    args = ap.parse_args()
    settings = Settings.load()
    engine = FaceEngine(settings)
    lfw_paths = LFW.locate(settings).images()[:: 13233 // args.images][: args.images]
    ff = FairFace.locate(settings).records()
    ff_sample = ff[:: max(1, len(ff) // args.images)][: args.images]
    for name, paths, prealigned in (("LFW", lfw_paths, False), ("FairFace (pre-aligned)", [r.path for r in ff_sample], True)):
        faces = [d.faces[0] for d in (engine.detect(p, prealigned=prealigned) for p in paths) if d.faces]
        print(f"\n{name}: {len(faces)} faces from {len(paths)} images")
        report(faces)
        if prealigned:  # every FairFace image yields a face here, so faces line up with records
            print("  by annotated race group (quality filters must not reject some groups more):")
            groups = sorted({r.race for r in ff_sample})
            for g in groups:
                print(f"  - {g}")
                report([f for f, r in zip(faces, ff_sample) if r.race == g], indent="      ")


def report(faces, indent: str = "  ") -> None:
    for level in ("LOW", "MEDIUM", "HIGH"):
        why = [reasons(f.quality, level) for f in faces]
        counts = Counter(r for rs in why for r in rs)
        rejected = sum(bool(rs) for rs in why)
        detail = ", ".join(f"{k} {100 * v / len(faces):.1f}%" for k, v in counts.most_common())
        print(f"{indent}{level:6} rejects {100 * rejected / len(faces):5.1f}% of {len(faces)}  ({detail or 'none'})")


if __name__ == "__main__":
    main()
