"""Score files made from images with this engine, labelled with the dataset's own annotations.

FairFace has no identities: every pair of distinct images is a non-mated comparison, which is
exactly what per-group false match rates need (groups: annotated race x gender). LFW has
identities: all mated pairs, plus a seeded sample of non-mated pairs (groups: annotated gender).
Templates come from the template cache; failures to acquire are counted per group.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audit import Scores
from .datasets import LFW, FairFace
from .errors import DatasetError
from .evaluation import Advance, acquire
from .settings import Settings


@dataclass
class ImageAudit:
    scores: Scores
    images: dict[str, int]  # per group
    failures_to_acquire: dict[str, int]


def _sample(groups: dict[str, list], per_group: int | None, rng) -> dict[str, list]:
    out = {}
    for g, items in sorted(groups.items()):
        if per_group and len(items) > per_group:
            items = [items[i] for i in sorted(rng.choice(len(items), per_group, replace=False))]
        out[g] = items
    return out


def fairface_scores(settings: Settings, *, per_group: int | None = None, seed: int = 0, detect: bool = False,
                    workers: int | None = None, advance: Advance | None = None, on_total=None) -> ImageAudit:
    """All pairs of distinct FairFace images (pre-aligned chips unless ``detect``)."""
    groups: dict[str, list[Path]] = defaultdict(list)
    for r in FairFace.locate(settings).records():
        groups[f"{r.race} {r.gender}"].append(r.path)
    chosen = _sample(groups, per_group, np.random.default_rng(seed))
    paths = [p for ps in chosen.values() for p in ps]
    if on_total:
        on_total(len(paths))
    got = acquire(paths, settings, prealigned=not detect, workers=workers, advance=advance)
    names = sorted(chosen)
    vectors, codes, fta = [], [], {}
    for code, g in enumerate(names):
        ok = [got[p].vector for p in chosen[g] if got[p].vector is not None]
        fta[g] = len(chosen[g]) - len(ok)
        vectors += ok
        codes += [code] * len(ok)
    v = np.asarray(vectors, np.float32)
    c = np.asarray(codes, np.int16)
    i, j = np.triu_indices(len(v), k=1)
    score = np.empty(len(i), np.float32)
    for start in range(0, len(i), 5_000_000):  # cosine of every pair, in blocks
        a, b = i[start : start + 5_000_000], j[start : start + 5_000_000]
        score[start : start + len(a)] = np.einsum("ij,ij->i", v[a], v[b])
    s = Scores(score, np.zeros(len(i), bool), c[i], c[j], names, i.astype(np.int32), j.astype(np.int32))
    return ImageAudit(s, {g: len(chosen[g]) for g in names}, fta)


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


def lfw_scores(settings: Settings, *, people: int | None = None, nonmated: int = 2_000_000, seed: int = 0,
               workers: int | None = None, advance: Advance | None = None, on_total=None) -> ImageAudit:
    """All mated pairs of LFW people with two or more images, and a seeded sample of non-mated
    pairs; groups are the annotated gender of each image."""
    lfw = LFW.locate(settings)
    gender = _lfw_gender(lfw)
    rng = np.random.default_rng(seed)
    persons = {n: [p for p in ps if p.name in gender] for n, ps in lfw.people().items()}
    persons = {n: ps for n, ps in persons.items() if ps}
    if people:
        keep = sorted(rng.choice(len(persons), min(people, len(persons)), replace=False))
        persons = dict(item for k, item in enumerate(sorted(persons.items())) if k in set(keep))
    paths = [p for ps in persons.values() for p in ps]
    if on_total:
        on_total(len(paths))
    got = acquire(paths, settings, expected=LFW.expected_face, workers=workers, advance=advance)
    names = ["female", "male"]
    rows = [(p, got[p].vector, pi, names.index(gender[p.name])) for pi, (n, ps) in enumerate(sorted(persons.items())) for p in ps]
    fta = {g: sum(1 for p, v, _, c in rows if v is None and names[c] == g) for g in names}
    images = {g: sum(1 for *_, c in rows if names[c] == g) for g in names}
    rows = [r for r in rows if r[1] is not None]
    v = np.asarray([r[1] for r in rows], np.float32)
    person = np.asarray([r[2] for r in rows], np.int32)
    code = np.asarray([r[3] for r in rows], np.int16)
    mi, mj = [], []
    by_person: dict[int, list[int]] = defaultdict(list)
    for k, pi in enumerate(person):
        by_person[int(pi)].append(k)
    for ks in by_person.values():
        for x in range(len(ks)):
            for y in range(x + 1, len(ks)):
                mi.append(ks[x])
                mj.append(ks[y])
    ni = rng.integers(0, len(v), nonmated * 2)
    nj = rng.integers(0, len(v), nonmated * 2)
    keep = person[ni] != person[nj]
    ni, nj = ni[keep][:nonmated], nj[keep][:nonmated]
    a = np.concatenate([np.asarray(mi, np.int64), ni])
    b = np.concatenate([np.asarray(mj, np.int64), nj])
    score = np.einsum("ij,ij->i", v[a], v[b])
    mated = np.zeros(len(a), bool)
    mated[: len(mi)] = True
    s = Scores(score, mated, code[a], code[b], names, person[a], person[b])
    return ImageAudit(s, images, fta)
