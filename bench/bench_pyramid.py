"""The detection pyramid against the former single 1024 copy, on the same images, per FairFace group:
at their own size (224 px: one level, so the same faces by construction; measured anyway) and
upscaled by --scale (bicubic, JPEG q92) as a large photo of the same face would be, where the
pyramid starts at 320. Detection rates (primary detector alone / with the fallback) per annotated
group, time per image, for both settings on the same seeded sample; the LFW sample likewise.

    .venv/bin/python bench/bench_pyramid.py [--per-group 40] [--lfw 200] [--scale 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from blocks import load
from faceledger import Settings
from faceledger.evaluation.datasets import LFW, FairFace
from faceledger.evaluation.protocols import detection_rates, fairface_groups


def upscaled(groups: dict[str, list[Path]], folder: Path, scale: int) -> dict[str, list[Path]]:
    out = {}
    for g, paths in groups.items():
        out[g] = []
        for p in paths:
            dst = folder / f"{g.replace(' ', '_')}-{p.parent.name}-{p.stem}.jpg"
            img = Image.open(p).convert("RGB")
            img.resize((img.width * scale, img.height * scale), Image.BICUBIC).save(dst, quality=92)
            out[g].append(dst)
    return out


def sample(groups: dict[str, list[Path]], n: int, seed: int = 0) -> dict[str, list[Path]]:
    rng = np.random.default_rng(seed)
    return {g: [ps[i] for i in sorted(rng.choice(len(ps), min(n, len(ps)), replace=False))] for g, ps in sorted(groups.items())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--per-group", type=int, default=40)
    ap.add_argument("--lfw", type=int, default=200)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    base = Settings.load()
    configs = {"former (one 1024 copy)": base.replace(detect_max_side=1024, detect_pyramid_max_side=1024),
               f"pyramid ({base.detect_max_side} to {base.detect_pyramid_max_side})": base}
    groups = sample(fairface_groups(FairFace.locate(base)), args.per_group)
    lfw_all = LFW.locate(base).images()
    groups["LFW"] = lfw_all[:: max(1, len(lfw_all) // args.lfw)][: args.lfw]
    print(f"{load()}; {sum(map(len, groups.values()))} images")
    with tempfile.TemporaryDirectory() as tmp:
        sets = {"own size": groups, f"x{args.scale}": upscaled(groups, Path(tmp), args.scale)}
        for label, gs in sets.items():
            results = {}
            for name, s in configs.items():
                t = time.perf_counter()
                results[name] = {r.group: r for r in detection_rates(gs, s, workers=args.workers)}
                secs = (time.perf_counter() - t) / sum(map(len, gs.values()))
                print(f"{label}, {name}: {1000 * secs:.0f} ms per image (incl. landmarks, chips, quality)")
            print(f"{'group':22} " + "  ".join(f"{n[:24]:>24}" for n in configs) + "   (primary / with fallback)")
            for g in gs:
                row = []
                for name in configs:
                    r = results[name][g]
                    row.append(f"{100 * r.primary / r.images:6.1f}% / {100 * r.any / r.images:6.1f}%")
                print(f"{g:22} " + "  ".join(f"{x:>24}" for x in row) + f"   n={len(gs[g])}")
    print(load())


if __name__ == "__main__":
    main()
