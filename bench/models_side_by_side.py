"""Every model on the same protocols, side by side (docs/models.md).

For each model: LFW View 2 10-fold accuracy; its own calibration fitted on the fit half of the
people (FairFace + LFW, as `faceledger calibration fit --model` does, written into the model's
folder) and, on held-out people, the share of LFW same-person pairs kept at a stated FMR of 1e-3
and 1e-4 (TAR), and FairFace's per-group FMR at a stated 1e-3 (groups within 2x, Max/GeoMean);
embedding time per face at batch 1 and 32, against dlib's network in the same run. With
``--fusion``: a score-level fusion of the two first models (the sum of their cosines; only a
bench variant, never shipped) measured the same way.

    .venv/bin/python bench/models_side_by_side.py --models dlib-resnet-v1-flip hse-faceres mobileface

Zoo models are fetched (`faceledger models fetch`) when missing. Templates are cached, so a rerun
costs the fitting and the timing only. It takes ~1 hour on 2 cores the first time.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time

import numpy as np

from faceledger import Settings
from faceledger.evaluation.calibration_fit import dataset_sources, fit, fit_half, in_fit_half, validate
from faceledger.evaluation.datasets import LFW
from faceledger.evaluation.protocols import acquire, evaluate_lfw, ten_fold
from faceledger.models import zoo
from faceledger.models.registry import ModelNotFoundError, Registry
from faceledger.scoring.calibration import Calibration, fitted_name
from faceledger.evaluation.calibration_fit import dumps


def ensure(registry: Registry, settings: Settings, name: str):
    try:
        return registry.get(name)
    except ModelNotFoundError:
        path, manifest = zoo.convert(name, settings.cache_dir)
        return registry.add(path, manifest)


def templates(settings: Settings, workers: int):
    return lambda title, paths, **kw: acquire(paths, settings, workers=workers, **kw)


def lfw_pairs_of_held_out_people(lfw: LFW, got) -> np.ndarray:
    """LFW View 2's same-person pairs whose person is in the held-out half: their cosines (each
    pair as the protocol lists it, so no one person's many photos dominate)."""
    v = lambda path: getattr(got.get(path), "vector", None)  # noqa: E731
    out = []
    for fold in lfw.pairs():
        for p in fold:
            if p.mated and not in_fit_half(p.a.parent.name) and v(p.a) is not None and v(p.b) is not None:
                out.append(float(np.dot(v(p.a), v(p.b))))
    return np.array(out)


def timing(settings: Settings, names: list[str], chips_of, repeats: int = 3) -> dict:
    """ms per face at batch 1 and 32, single-threaded, alternating models block by block."""
    registry = Registry.of(settings)
    embedders = {n: registry.embedder(registry.get(n), threads=1) for n in names}
    out = {n: {1: [], 32: []} for n in names}
    for _ in range(repeats):
        for batch in (1, 32):
            for n, e in embedders.items():
                chips = chips_of[n]
                t = time.perf_counter()
                done = 0
                for start in range(0, len(chips), batch):
                    e.embed(list(chips[start:start + batch]))
                    done += len(chips[start:start + batch])
                out[n][batch].append(1000 * (time.perf_counter() - t) / done)
    return {n: {b: float(np.median(v)) for b, v in d.items()} for n, d in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["dlib-resnet-v1-flip", "hse-faceres", "mobileface"])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timing-faces", type=int, default=64)
    ap.add_argument("--fusion", action="store_true", help="Also the first two models' fused template.")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    base = Settings.load()
    registry = Registry.of(base)
    lfw = LFW.locate(base)
    rows, sources_of, lfw_of = {}, {}, {}
    for name in args.models:
        entry = ensure(registry, base, name)
        settings = base.replace(model=name)
        t0 = time.perf_counter()
        print(f"[{name}] LFW 10-fold", file=sys.stderr)
        r = evaluate_lfw(lfw, settings, workers=args.workers)
        print(f"[{name}] calibration (FairFace + LFW, fit half of the people)", file=sys.stderr)
        sources = sources_of[name] = dataset_sources(settings, None, None, templates(settings, args.workers))
        got = lfw_of[name] = acquire(lfw.images(), settings, expected=LFW.expected_face, workers=args.workers)
        rows[name] = measure(entry.id, sources, lfw, got, write_to=None if entry.builtin else entry.folder / fitted_name())
        rows[name].update({"lfw_10fold": r.mean, "lfw_10fold_std": r.std,
                           "failures_to_acquire": len(r.failures_to_acquire), "seconds": time.perf_counter() - t0})
        print(json.dumps(rows[name]), file=sys.stderr)
    if args.fusion:
        a, b = args.models[:2]
        name = f"{a}+{b}"
        fused_sources = [fuse_sources(x, y) for x, y in zip(sources_of[a], sources_of[b])]
        fused_lfw = {p: Fused(fuse(lfw_of[a][p].vector, lfw_of[b][p].vector)) for p in lfw_of[a] if p in lfw_of[b]}
        rows[name] = measure(name + "@fusion", fused_sources, lfw, fused_lfw)
        rows[name].update(lfw_10fold_of(lfw, fused_lfw))
        print(json.dumps(rows[name]), file=sys.stderr)
    # embedding time: the same LFW faces, each model's own chips
    from faceledger.vision.engine import FaceEngine

    faces = lfw.images()[: args.timing_faces]
    chips_of = {}
    for name in args.models:
        engine = FaceEngine(base, model=name)
        chips_of[name] = np.stack([engine.detect(p).faces[0].chip for p in faces])
    speed = timing(base, args.models, chips_of)
    for name in rows:
        for n in name.split("+"):
            rows[name]["ms_per_face_batch1"] = rows[name].get("ms_per_face_batch1", 0) + speed[n][1]
            rows[name]["ms_per_face_batch32"] = rows[name].get("ms_per_face_batch32", 0) + speed[n][32]
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    ref = args.models[0]
    print(f"| model | LFW 10-fold | TAR @ stated 1e-3 / 1e-4 (held-out people) | FairFace groups within 2x "
          f"of 1e-3 | Max/GeoMean @1e-3 | ms/face b1 / b32 (x {ref}) |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {100 * r['lfw_10fold']:.2f}% +- {100 * r['lfw_10fold_std']:.2f} | "
              f"{100 * r['tar_at_1e-3']:.1f}% / {100 * r['tar_at_1e-4']:.1f}% | "
              f"{r['fairface_groups_within_2x_at_1e-3']}/{r['fairface_groups']} | "
              f"{r['fairface_max_over_geomean_at_1e-3']:.2f} | {r['ms_per_face_batch1']:.1f} / "
              f"{r['ms_per_face_batch32']:.1f} ({r['ms_per_face_batch1'] / rows[ref]['ms_per_face_batch1']:.2f} / "
              f"{r['ms_per_face_batch32'] / rows[ref]['ms_per_face_batch32']:.2f}) |")


class Fused:
    def __init__(self, vector):
        self.vector = vector


def fuse(a, b):
    """The pair as one template: each half scaled by 1/sqrt(2), so the cosine is the mean of the two."""
    if a is None or b is None:
        return None
    return (np.concatenate([a, b]) / math.sqrt(2)).astype(np.float32)


def fuse_sources(x, y):
    """The same images' templates of two models, as one source of fused templates."""
    from faceledger.evaluation.calibration_fit import Source

    where = {n: i for i, n in enumerate(y.names)}
    keep = [i for i, n in enumerate(x.names) if n in where]
    other = [where[x.names[i]] for i in keep]
    vectors = np.stack([fuse(x.vectors[i], y.vectors[j]) for i, j in zip(keep, other)])
    pick = lambda lst, idx: None if lst is None else [lst[i] for i in idx]  # noqa: E731
    return Source(x.name, pick(x.names, keep), vectors, pick(x.identities, keep), pick(x.groups, keep))


def lfw_10fold_of(lfw: LFW, got) -> dict:
    v = lambda path: getattr(got.get(path), "vector", None)  # noqa: E731
    folds = [[(None if v(p.a) is None or v(p.b) is None else float(np.dot(v(p.a), v(p.b))), p.mated)
              for p in fold] for fold in lfw.pairs()]
    acc = [f.accuracy for f in ten_fold(folds)]
    return {"lfw_10fold": float(np.mean(acc)), "lfw_10fold_std": float(np.std(acc)), "failures_to_acquire": 0}


def measure(model, sources, lfw: LFW, got, write_to=None) -> dict:
    """Fit a calibration on the fit half of the people, then read the held-out half through it."""
    content, held = fit(sources, str(model), progress=lambda m: print(f"  {m}", file=sys.stderr))
    cal = Calibration.from_dict(content)
    content["validation"] = validate(cal, held)
    if write_to is not None:
        write_to.write_text(dumps(content))
    mated = lfw_pairs_of_held_out_people(lfw, got)
    groups = {g.split(": ", 1)[1]: rows_[0] for g, rows_ in content["validation"]["groups"].items()
              if g.startswith("fairface")}
    ratios = [row["observed"] / 1e-3 for row in groups.values()]
    geo = math.exp(np.mean([math.log(max(row["observed"], 1e-9)) for row in groups.values()]))
    return {
        "model": str(model),
        "tar_at_1e-3": float(np.mean(mated >= cal.threshold_for_fmr(1e-3))),
        "tar_at_1e-4": float(np.mean(mated >= cal.threshold_for_fmr(1e-4))),
        "held_out_mated_pairs": len(mated),
        "held_out_fmr_at_1e-3": [o for o in content["validation"]["overall"] if o["target"] == 1e-3][0]["observed"],
        "fairface_groups_within_2x_at_1e-3": sum(0.5 <= x <= 2 for x in ratios), "fairface_groups": len(ratios),
        "fairface_max_over_geomean_at_1e-3": max(row["observed"] for row in groups.values()) / geo,
    }


if __name__ == "__main__":
    main()
