"""Verification accuracy on LFW's View 2 protocol, and detection rates on FairFace.

LFW View 2: 10 folds of 300 matched and 300 mismatched pairs; for each fold the threshold is the
one that maximises accuracy on the other nine, and accuracy is measured on the held-out fold.
LFW centres the labelled person at a fixed scale, so when an image holds several faces the one
that best overlaps that expected box is taken (the benchmark's own convention).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from faceledger.evaluation.datasets import LFW, FairFace, Pair
from faceledger.models.registry import model_id
from faceledger.errors import FaceledgerError
from faceledger.settings import Settings
from faceledger.evaluation.template_cache import TemplateCache, file_digest
from faceledger.vision.workers import parallel_map, worker_engine

Advance = Callable[[int], None]


# --- acquisition (templates for files, in worker processes, cached) ------------------------------


@dataclass(frozen=True)
class Acquired:
    vector: np.ndarray | None  # None: failure to acquire
    detector: str  # which detector found the face: "hog", "mmod", "prealigned" or "none"


Box = tuple[float, float, float, float]  # left, top, width, height as ratios of the image


def _versioned(detector: str) -> str:
    """BlazeFace's name carries its output version (vision/blazeface.OUTPUT_VERSION): a change to
    its boxes or predictor seeds must not reuse cached templates."""
    if detector == "blazeface":
        from faceledger.vision.blazeface import OUTPUT_VERSION

        return f"blazeface-v{OUTPUT_VERSION}"
    return detector


def recipe(settings: Settings, prealigned: bool, expected: Box | None) -> str:
    if prealigned:
        return "prealigned"
    return (
        f"{_versioned(settings.detector)}+{_versioned(settings.fallback_detector)}/hog{settings.hog_upsample}"
        f"/mmod{settings.mmod_upsample}/max{settings.detect_max_side}-{settings.detect_pyramid_max_side}"
        f"/min{settings.min_face_size}"
        f"/expect{expected}"
    )


def choose_face(faces, expected: Box | None):
    """The face a dataset labels: best overlap with its expected box, else the largest."""
    if expected is None:
        return faces[0]
    el, et, ew, eh = expected

    def overlap(f) -> tuple[float, float]:
        b = f.bounding_box
        iw = max(0.0, min(b.left + b.width, el + ew) - max(b.left, el))
        ih = max(0.0, min(b.top + b.height, et + eh) - max(b.top, et))
        inter = iw * ih
        iou = inter / (b.width * b.height + ew * eh - inter)
        centre = (b.left + b.width / 2 - el - ew / 2) ** 2 + (b.top + b.height / 2 - et - eh / 2) ** 2
        return iou, -centre

    return max(faces, key=overlap)


def _acquire_one(job: tuple[str, bool, Box | None]) -> tuple[str, np.ndarray | None, str]:
    path, prealigned, expected = job
    engine = worker_engine()
    try:
        detection = engine.detect(path, prealigned=prealigned)
    except FaceledgerError:
        return path, None, "none"
    if not detection.faces:
        return path, None, "none"
    face = choose_face(detection.faces, expected)
    return path, engine.embed_faces([face])[0].template.vector, face.detector


def acquire(
    paths: Sequence[Path],
    settings: Settings,
    *,
    prealigned: bool = False,
    expected: Box | None = None,
    workers: int | None = None,
    advance: Advance | None = None,
) -> dict[Path, Acquired]:
    """Templates for ``paths``, from the cache where possible, computing the rest in parallel.

    ``expected``: where the dataset puts its labelled face, to choose among several faces.
    """
    model = str(model_id(settings))
    rec = recipe(settings, prealigned, expected)
    cache = TemplateCache(settings.cache_dir / "templates.sqlite")
    out: dict[Path, Acquired] = {}
    digests: dict[str, str] = {}
    todo: list[str] = []
    for p in paths:
        digest = file_digest(p)
        hit = cache.get(model, rec, digest)
        if hit is None:
            digests[str(p)] = digest
            todo.append(str(p))
        else:
            out[Path(p)] = Acquired(*hit)
    if advance and len(out):
        advance(len(out))
    pending: list[tuple[str, np.ndarray | None, str]] = []

    def record(result: tuple[str, np.ndarray | None, str]) -> None:
        path, vector, det = result
        out[Path(path)] = Acquired(vector, det)
        pending.append((digests[path], vector, det))
        if len(pending) >= 64:  # commit as we go: an interrupted run keeps its work
            cache.put_many(model, rec, pending)
            pending.clear()
        if advance:
            advance(1)

    try:
        for result in parallel_map(_acquire_one, [(p, prealigned, expected) for p in todo], settings, workers):
            record(result)
    finally:
        cache.put_many(model, rec, pending)
        cache.close()
    return out


# --- the 10-fold protocol ------------------------------------------------------------------------


def best_threshold(scores: np.ndarray, mated: np.ndarray) -> float:
    """The threshold (score >= t means 'same') with the highest accuracy; ties -> the middle one."""
    order = np.sort(np.unique(scores))
    candidates = np.concatenate([[order[0] - 1e-6], (order[:-1] + order[1:]) / 2, [order[-1] + 1e-6]])
    correct = [(np.sum(mated & (scores >= t)) + np.sum(~mated & (scores < t))) for t in candidates]
    best = np.flatnonzero(np.asarray(correct) == max(correct))
    return float(candidates[best[len(best) // 2]])


@dataclass(frozen=True)
class FoldResult:
    fold: int
    threshold: float
    accuracy: float
    pairs: int


@dataclass
class LfwResult:
    folds: list[FoldResult]
    images: int
    failures_to_acquire: list[str]
    detectors: dict[str, int]
    seconds: float
    pairs_with_failure: int = 0
    mean: float = field(init=False)
    std: float = field(init=False)

    def __post_init__(self) -> None:
        acc = np.array([f.accuracy for f in self.folds])
        self.mean = float(acc.mean())
        self.std = float(acc.std(ddof=1)) if len(acc) > 1 else 0.0


def ten_fold(folds: list[list[tuple[float | None, bool]]]) -> list[FoldResult]:
    """Scores per fold (None = a face was not acquired: counted as a 'different' decision)."""
    results = []
    for k in range(len(folds)):
        train = [(s, m) for j, fold in enumerate(folds) if j != k for s, m in fold if s is not None]
        scores = np.array([s for s, _ in train])
        mated = np.array([m for _, m in train], dtype=bool)
        t = best_threshold(scores, mated)
        correct = sum((s is not None and s >= t) == m for s, m in folds[k])
        results.append(FoldResult(k + 1, t, correct / len(folds[k]), len(folds[k])))
    return results


def evaluate_lfw(
    lfw: LFW,
    settings: Settings,
    *,
    pairs_per_fold: int | None = None,
    workers: int | None = None,
    advance: Advance | None = None,
    on_total: Callable[[int], None] | None = None,
) -> LfwResult:
    folds = lfw.pairs()
    if pairs_per_fold:  # a quick run: the same number of matched and mismatched pairs per fold
        half = pairs_per_fold // 2 or 1
        folds = [[p for p in f if p.mated][:half] + [p for p in f if not p.mated][:half] for f in folds]
    paths = sorted({p for f in folds for pair in f for p in (pair.a, pair.b)})
    if on_total:
        on_total(len(paths))
    start = time.perf_counter()
    acquired = acquire(paths, settings, expected=lfw.expected_face, workers=workers, advance=advance)
    seconds = time.perf_counter() - start

    def score(pair: Pair) -> float | None:
        a, b = acquired[pair.a].vector, acquired[pair.b].vector
        return None if a is None or b is None else float(np.dot(a, b))

    scored = [[(score(p), p.mated) for p in fold] for fold in folds]
    return LfwResult(
        folds=ten_fold(scored),
        images=len(paths),
        failures_to_acquire=[str(p) for p in paths if acquired[p].vector is None],
        detectors=dict(Counter(a.detector for a in acquired.values())),
        seconds=seconds,
        pairs_with_failure=sum(s is None for fold in scored for s, _ in fold),
    )


# --- detection rate on FairFace ------------------------------------------------------------------


@dataclass(frozen=True)
class GroupRate:
    group: str
    images: int
    primary: int  # found by the primary detector
    any: int  # found by the primary or the fallback


def _detect_one(path: str) -> tuple[str, str]:
    """Which detector found a face in ``path`` ("none" when neither did): acquisition needs the
    largest face only (max_faces=1, the detection pyramid where the image is large)."""
    try:
        faces = worker_engine().detect(path, max_faces=1).faces
    except FaceledgerError:
        return path, "none"
    return path, faces[0].detector if faces else "none"


def detection_rates(
    groups: dict[str, list[Path]],
    settings: Settings,
    *,
    per_group: int | None = None,
    seed: int = 0,
    workers: int | None = None,
    advance: Advance | None = None,
    on_total: Callable[[int], None] | None = None,
) -> list[GroupRate]:
    """How often the primary detector, and the fallback after it, find a face, by group.

    On face datasets every image holds a face, so every miss is a failure to acquire.
    """
    rng = np.random.default_rng(seed)
    chosen: dict[str, list[Path]] = {}
    for group, paths in sorted(groups.items()):
        if per_group and len(paths) > per_group:
            paths = [paths[i] for i in sorted(rng.choice(len(paths), per_group, replace=False))]
        chosen[group] = paths
    all_paths = [p for ps in chosen.values() for p in ps]
    if on_total:
        on_total(len(all_paths))
    found: dict[str, str] = {}
    for path, detector in parallel_map(_detect_one, [str(p) for p in all_paths], settings, workers):
        found[path] = detector
        if advance:
            advance(1)
    return [
        GroupRate(
            group,
            len(ps),
            sum(found[str(p)] == settings.detector for p in ps),
            sum(found[str(p)] != "none" for p in ps),
        )
        for group, ps in chosen.items()
    ]


def fairface_groups(fairface: FairFace) -> dict[str, list[Path]]:
    """FairFace images by annotated race group (annotator-perceived labels, never inferred)."""
    groups: dict[str, list[Path]] = defaultdict(list)
    for r in fairface.records():
        groups[r.race].append(r.path)
    return dict(groups)


