"""Score files made from images with this engine, labelled with the dataset's own annotations.

FairFace has no identities: every pair of distinct images is a non-mated comparison, which is
exactly what per-group false match rates need (groups: annotated race x gender). LFW has
identities: all mated pairs, plus a seeded sample of non-mated pairs or all of them (groups:
annotated gender per image, or annotated race per person).
Templates come from the template cache; failures to acquire are counted per group.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faceledger.evaluation.audit import Scores
from faceledger.evaluation.datasets import read_manifest, LFW, FairFace
from faceledger.errors import DatasetError, InvalidParameterError
from faceledger.evaluation.protocols import Advance, acquire
from faceledger.scoring.normalisation import Normaliser
from faceledger.settings import Settings


@dataclass
class ImageAudit:
    scores: Scores  # template cosines
    images: dict[str, int]  # per group
    failures_to_acquire: dict[str, int]
    normalised: Scores | None = None  # the same pairs' normalised scores, when a normaliser was given


def _sample(groups: dict[str, list], per_group: int | None, rng) -> dict[str, list]:
    out = {}
    for g, items in sorted(groups.items()):
        if per_group and len(items) > per_group:
            items = [items[i] for i in sorted(rng.choice(len(items), per_group, replace=False))]
        out[g] = items
    return out


def fairface_scores(settings: Settings, *, per_group: int | None = None, seed: int = 0, detect: bool = False,
                    workers: int | None = None, advance: Advance | None = None, on_total=None,
                    normaliser: Normaliser | None = None) -> ImageAudit:
    """All pairs of distinct FairFace images (pre-aligned chips unless ``detect``)."""
    items = fairface_items(settings, per_group=per_group, seed=seed)
    return _image_audit(items, settings, prealigned=not detect, expected=None, nonmated=None, seed=seed,
                        workers=workers, advance=advance, on_total=on_total, normaliser=normaliser)


Item = tuple  # (path, subject, group): subject any hashable, group a label


def fairface_items(settings: Settings, *, per_group: int | None = None, seed: int = 0) -> list[Item]:
    """FairFace images as (path, subject, group) items, a seeded sample of ``per_group`` per
    race x gender group; no identities, so every image is its own subject."""
    groups: dict[str, list[Path]] = defaultdict(list)
    for r in FairFace.locate(settings).records():
        groups[f"{r.race} {r.gender}"].append(r.path)
    chosen = _sample(groups, per_group, np.random.default_rng(seed))
    return [(p, i, g) for i, (p, g) in enumerate((p, g) for g, ps in chosen.items() for p in ps)]


def _image_audit(items: list[Item], settings: Settings, *, prealigned: bool, expected, nonmated: int | None,
                 seed: int, workers, advance, on_total, normaliser: Normaliser | None = None) -> ImageAudit:
    """Templates for the items' images (cached), then pairs: every mated pair, and every non-mated
    pair (``nonmated=None``) or a seeded sample of that many. Scores are template cosines, and
    with a ``normaliser`` also the same pairs' normalised scores (for the side-by-side report)."""
    paths = [p for p, _, _ in items]
    if on_total:
        on_total(len(paths))
    got = acquire(paths, settings, prealigned=prealigned, expected=expected, workers=workers, advance=advance)
    names = sorted({g for _, _, g in items})
    images = {g: 0 for g in names}
    fta = {g: 0 for g in names}
    subject_codes: dict = {}
    vectors, person, code = [], [], []
    for p, subject, g in items:
        images[g] += 1
        v = got[Path(p)].vector
        if v is None:
            fta[g] += 1
            continue
        vectors.append(v)
        person.append(subject_codes.setdefault(subject, len(subject_codes)))
        code.append(names.index(g))
    if len(vectors) < 2:
        raise DatasetError(f"{len(vectors)} usable image(s): an audit needs comparisons")
    v = np.asarray(vectors, np.float32)
    person_a = np.asarray(person, np.int32)
    code_a = np.asarray(code, np.int16)
    a, b, n_mated = _pairs(person_a, nonmated, np.random.default_rng(seed))
    score = np.empty(len(a), np.float32)
    normed = np.empty(len(a), np.float32) if normaliser is not None else None
    stats = normaliser.stats(v) if normaliser is not None else None
    block = 5_000_000  # cosines in blocks: 72M pairs never gather 72M x 128 floats at once
    if normaliser is not None:
        block = normaliser.block(block)
    for start in range(0, len(a), block):
        x, y = a[start : start + block], b[start : start + block]
        cos = np.einsum("ij,ij->i", v[x], v[y])
        score[start : start + len(x)] = cos
        if normed is not None:
            normed[start : start + len(x)] = normaliser.normalise(cos, stats.take(x), stats.take(y))
    mated = np.zeros(len(a), bool)
    mated[:n_mated] = True
    ga, gb, pa, pb = code_a[a], code_a[b], person_a[a], person_a[b]
    s = Scores(score, mated, ga, gb, names, pa, pb)
    return ImageAudit(s, images, fta, None if normed is None else Scores(normed, mated, ga, gb, names, pa, pb))


def _pairs(person: np.ndarray, nonmated: int | None, rng) -> tuple[np.ndarray, np.ndarray, int]:
    """Index pairs, mated ones first: all pairs, or all mated plus ``nonmated`` sampled others."""
    if nonmated is None:
        a, b = np.triu_indices(len(person), k=1)
        a, b = a.astype(np.int32), b.astype(np.int32)
        same = person[a] == person[b]
        if same.any():
            order = np.argsort(~same, kind="stable")
            a, b = a[order], b[order]
        return a, b, int(np.count_nonzero(same))
    by_person: dict[int, list[int]] = defaultdict(list)
    for k, pi in enumerate(person):
        by_person[int(pi)].append(k)
    mi, mj = [], []
    for ks in by_person.values():
        for x in range(len(ks)):
            for y in range(x + 1, len(ks)):
                mi.append(ks[x])
                mj.append(ks[y])
    ni = rng.integers(0, len(person), nonmated * 2)
    nj = rng.integers(0, len(person), nonmated * 2)
    keep = person[ni] != person[nj]
    ni, nj = ni[keep][:nonmated], nj[keep][:nonmated]
    return np.concatenate([np.asarray(mi, np.int64), ni]), np.concatenate([np.asarray(mj, np.int64), nj]), len(mi)


def _lfw_gender(lfw: LFW) -> dict[str, str]:
    labels = {}
    for gender, name in (("female", "female_names.txt"), ("male", "male_names.txt")):
        path = lfw.root / "labels" / name
        if not path.is_file():
            raise DatasetError(f"{path} is missing: LFW's gender annotations (Afifi & Abdelhamed 2017)")
        for line in path.read_text().split():
            labels.setdefault(line.strip(), set()).add(gender)
    # images named in both lists carry no usable label
    return {k: next(iter(v)) for k, v in labels.items() if len(v) == 1}


def _lfw_race(lfw: LFW) -> dict[str, str]:
    """Person name -> annotated race, for people with exactly one label (comma-joined labels,
    such as "african,caucasian", name no single group and are left out)."""
    path = lfw.root / "labels" / "lfw_race_dict.json"
    if not path.is_file():
        raise DatasetError(f"{path} is missing: LFW's race annotations (USC SAIL, 866 people)")
    labels = json.loads(path.read_text())
    return {name: race for name, race in labels.items() if "," not in race}


def lfw_scores(settings: Settings, *, by: str = "gender", people: int | None = None, nonmated: int | None = 2_000_000,
               seed: int = 0, workers: int | None = None, advance: Advance | None = None, on_total=None,
               normaliser: Normaliser | None = None) -> ImageAudit:
    """All mated pairs of LFW people with two or more images, and a seeded sample of non-mated
    pairs (``nonmated=None``: every non-mated pair). Groups: the annotated gender of each image
    (``by='gender'``) or the annotated race of each person (``by='race'``, 866 people labelled)."""
    items = lfw_items(settings, by=by, people=people, seed=seed)
    return _image_audit(items, settings, prealigned=False, expected=LFW.expected_face, nonmated=nonmated, seed=seed,
                        workers=workers, advance=advance, on_total=on_total, normaliser=normaliser)


def lfw_items(settings: Settings, *, by: str = "gender", people: int | None = None, seed: int = 0) -> list[Item]:
    """LFW images as (path, person, group) items: groups by annotated gender per image or race
    per person; ``people``: a seeded sample of that many people."""
    lfw = LFW.locate(settings)
    if by == "gender":
        gender = _lfw_gender(lfw)
        label = lambda person, path: gender.get(path.name)  # noqa: E731
    elif by == "race":
        race = _lfw_race(lfw)
        label = lambda person, path: race.get(person)  # noqa: E731
    else:
        raise InvalidParameterError("LFW groups are by gender or by race")
    rng = np.random.default_rng(seed)
    persons = {n: [(p, label(n, p)) for p in ps] for n, ps in lfw.people().items()}
    persons = {n: [(p, g) for p, g in ps if g] for n, ps in persons.items()}
    persons = {n: ps for n, ps in persons.items() if ps}
    if people:
        keep = set(rng.choice(len(persons), min(people, len(persons)), replace=False).tolist())
        persons = dict(item for k, item in enumerate(sorted(persons.items())) if k in keep)
    return [(p, n, g) for n, ps in sorted(persons.items()) for p, g in ps]


def manifest_scores(settings: Settings, manifest: Path, *, prealigned: bool = False, nonmated: int | None = None,
                    seed: int = 0, workers: int | None = None, advance: Advance | None = None,
                    on_total=None, normaliser: Normaliser | None = None) -> ImageAudit:
    """Any labelled image set: a CSV with columns ``path`` (relative to the manifest's folder, or
    absolute), ``group``, and optionally ``subject`` (without it every image is its own subject
    and every pair non-mated, as for FairFace)."""
    items = read_manifest(manifest)
    return _image_audit(items, settings, prealigned=prealigned, expected=None, nonmated=nonmated, seed=seed,
                        workers=workers, advance=advance, on_total=on_total, normaliser=normaliser)
