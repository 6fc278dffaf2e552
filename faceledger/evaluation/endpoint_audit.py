"""The audit of a live face recognition endpoint: any service speaking Rekognition's face API
(Amazon's, faceledger's, another), measured per demographic group on labelled images.

Two protocols:

- ``verification``: CompareFaces on every sampled mated pair and a seeded sample of non-mated pairs,
  within and across groups, with ``SimilarityThreshold=0`` so that every score comes back. The
  score of a pair is the Similarity of the target's largest face (the endpoint compares the
  source's largest face). An endpoint that withholds a score (a face listed in UnmatchedFaces,
  which in Rekognition's shape carries no Similarity) gives a *censored* pair: it is kept at score
  0 and counted, and the report says below which similarity its rates cannot be read.
- ``identification`` (the design of the ACLU's 2018 test of Rekognition): a collection, a gallery
  indexed one face per person, probes of people in and not in the gallery searched with
  ``FaceMatchThreshold=0`` and ``MaxFaces`` as high as the API allows, the collection deleted at
  the end even when the audit fails (a SIGKILL leaves it for the resumed run to finish and delete).
  FPIR and FNIR per group against threshold and gallery size, and false matches at 80 and 99.

Both write a score file in the audit's own format (``faceledger audit scores`` re-runs it), every
response the endpoint returned (JSON lines, beside the scores), and the report.
"""

from __future__ import annotations

import csv
import json
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from faceledger.errors import EndpointError, InvalidParameterError
from faceledger.evaluation.audit import Scores, wilson
from faceledger.evaluation.audit_images import Item, _pairs
from faceledger.evaluation.endpoint_client import Endpoint, Plan, digest, fit_image

#: Rekognition's largest MaxFaces for SearchFacesByImage.
MAX_SEARCH_FACES = 4096
#: Refusals that are the answer for this image (no face, unusable image), not a failure to retry.
NO_FACE_CODES = {"InvalidParameterException", "InvalidImageFormatException", "ImageTooLargeException"}


def _no_face(code: str) -> bool:
    return code in NO_FACE_CODES


def _map(fn, items, concurrency: int) -> list:
    """``fn`` over ``items`` on threads, results in order; the first failure (or Ctrl-C) cancels
    every call not yet started, so a failed audit stops sending."""
    pool = ThreadPoolExecutor(concurrency)
    futures = [pool.submit(fn, x) for x in items]
    try:
        return [f.result() for f in futures]
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        pool.shutdown(wait=True)


class Images:
    """Image bytes as sent (fitted to the endpoint's limit) and their digests, read once each."""

    def __init__(self, items: Sequence[Item]) -> None:
        self.items = list(items)
        self._digests: dict[int, str] = {}

    def data(self, i: int) -> bytes:
        return fit_image(Path(self.items[i][0]).read_bytes())

    def digest(self, i: int) -> str:
        if i not in self._digests:
            self._digests[i] = digest(self.data(i))
        return self._digests[i]


# --- verification ---------------------------------------------------------------------------------


def verification_pairs(items: Sequence[Item], *, nonmated: int, mated: int | None = None, seed: int = 0) -> list[tuple[int, int, bool]]:
    """Every mated pair (or a seeded sample of ``mated``) and a seeded sample of ``nonmated``
    non-mated pairs, within and across groups as they fall; each unordered pair once."""
    codes: dict = {}
    person = np.asarray([codes.setdefault(s, len(codes)) for _, s, _ in items], np.int64)
    rng = np.random.default_rng(seed)
    a, b, n_mated = _pairs(person, nonmated, rng)
    seen, out = set(), []
    m_idx = np.arange(n_mated)
    if mated is not None and mated < n_mated:
        m_idx = np.sort(rng.choice(n_mated, mated, replace=False))
    for k in list(m_idx) + list(range(n_mated, len(a))):
        i, j = int(a[k]), int(b[k])
        key = (min(i, j), max(i, j))
        if i == j or key in seen:
            continue
        seen.add(key)
        out.append((i, j, k < n_mated))
    return out


def compare_key(images: Images, i: int, j: int) -> str:
    return f"CompareFaces:{images.digest(i)}:{images.digest(j)}"


def score_of_compare(response: dict) -> tuple[float | None, bool, int]:
    """(score, censored, target faces) of a CompareFaces answer: the Similarity of the target's
    largest face; None when either image had no face; censored when that face came back in
    UnmatchedFaces (no Similarity: the endpoint withheld it, so it is below what it reports)."""
    if "Error" in response:
        return None, False, 0
    faces = [(m["Face"]["BoundingBox"], m.get("Similarity")) for m in response.get("FaceMatches", [])]
    faces += [(f["BoundingBox"], None) for f in response.get("UnmatchedFaces", [])]
    if not faces:
        return None, False, 0
    box, sim = max(faces, key=lambda f: f[0].get("Width", 0) * f[0].get("Height", 0))
    return (0.0, True, len(faces)) if sim is None else (float(sim), False, len(faces))


def plan_verification(endpoint_name: str, images: Images, pairs, done: set[str], prices) -> Plan:
    keys = [compare_key(images, i, j) for i, j, _ in pairs]
    used = {i for i, j, _ in pairs} | {j for i, j, _ in pairs}
    return Plan("verification", endpoint_name, len(used), {"CompareFaces": len(keys)},
                {"CompareFaces": sum(k in done for k in keys)}, prices)


@dataclass
class EndpointScores:
    """What an endpoint audit measured: the scores (audit format), per pair the raw answers, and
    the pairs or probes it could not score."""

    scores: Scores
    rows: list[dict]
    failures_to_acquire: dict[str, int]
    censored: int
    calls: int  # answered by the endpoint in this run (the rest came from the journal)
    seconds: float
    extra: dict = field(default_factory=dict)


def run_verification(endpoint: Endpoint, images: Images, pairs, *, concurrency: int = 4,
                     advance: Callable[[int], None] | None = None) -> EndpointScores:
    start = time.monotonic()

    def one(pair):
        i, j, _ = pair
        response = endpoint.call(compare_key(images, i, j), "CompareFaces", permanent=_no_face,
                                 SourceImage={"Bytes": images.data(i)}, TargetImage={"Bytes": images.data(j)},
                                 SimilarityThreshold=0)
        if advance:
            advance(1)
        return response

    responses = _map(one, pairs, concurrency)
    rows, fta, censored = [], {}, 0
    for (i, j, mated), response in zip(pairs, responses):
        (pa, sa, ga), (pb, sb, gb) = images.items[i], images.items[j]
        score, cut, faces = score_of_compare(response)
        if score is None:
            for g in {ga, gb}:
                fta[g] = fta.get(g, 0) + 1
            continue
        censored += cut
        rows.append({"score": score, "mated": mated, "group_a": ga, "group_b": gb, "subject_a": str(sa),
                     "subject_b": str(sb), "path_a": str(pa), "path_b": str(pb), "censored": cut,
                     "target_faces": faces, "response": response})
    if not rows:
        raise EndpointError("the endpoint scored no pair: every image was refused or had no face")
    s = Scores.from_labels([r["score"] for r in rows], [r["mated"] for r in rows], [r["group_a"] for r in rows],
                           [r["group_b"] for r in rows], [r["subject_a"] for r in rows], [r["subject_b"] for r in rows])
    return EndpointScores(s, rows, fta, censored, endpoint.sent, time.monotonic() - start)


def write_scores(result: EndpointScores, path: Path) -> Path:
    """The score file (CSV, the audit's own columns plus where each score came from) and, beside
    it, every answer the endpoint returned (``<name>.responses.jsonl``, one line per row)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = ["score", "mated", "group_a", "group_b", "subject_a", "subject_b", "path_a", "path_b", "censored"]
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(columns)
        for r in result.rows:
            w.writerow([repr(r["score"]) if isinstance(r["score"], float) else r["score"],
                        int(r["mated"]), *(r[c] for c in columns[2:8]), int(r["censored"])])
    raw = path.with_name(path.stem + ".responses.jsonl")
    answers = result.extra.get("_answers") or [{"path_a": r["path_a"], "path_b": r["path_b"], "response": r["response"]}
                                               for r in result.rows]
    with open(raw, "w") as fh:
        for a in answers:
            fh.write(json.dumps(a, default=str) + "\n")
    return raw


# --- identification ---------------------------------------------------------------------------------


@dataclass
class IdentificationDesign:
    gallery: list[int]  # item indices, one per person
    mated_probes: list[int]  # another image of a gallery person
    nonmated_probes: list[int]  # an image of a person not in the gallery


def identification_design(items: Sequence[Item], *, gallery: int, probes: int, seed: int = 0) -> IdentificationDesign:
    """A gallery of ``gallery`` people, one image each (people with two or more images first, so
    that mated probes exist), and ``probes`` probes, half of people in the gallery (another of
    their images) and half of people not in it (as the ACLU's probes of members of Congress)."""
    by_subject: dict = {}
    for k, (_, s, _) in enumerate(items):
        by_subject.setdefault(s, []).append(k)
    rng = np.random.default_rng(seed)
    subjects = list(by_subject)
    order = [subjects[k] for k in rng.permutation(len(subjects))]
    half = probes // 2
    multi = [s for s in order if len(by_subject[s]) >= 2]
    single = [s for s in order if len(by_subject[s]) < 2]
    outside_n = probes - min(half, len(multi))
    if len(subjects) < gallery + outside_n:
        raise InvalidParameterError(f"{len(subjects):,} people in the dataset: too few for a gallery of {gallery:,} "
                                    f"and {outside_n:,} probes of people outside it")
    # people outside the gallery: from those with a single image first, so the gallery keeps mates
    outside = (single + multi[::-1])[:outside_n]
    chosen = [s for s in multi if s not in set(outside)] + [s for s in single if s not in set(outside)]
    in_gallery = chosen[:gallery]
    if len(in_gallery) < gallery:
        raise InvalidParameterError(f"only {len(in_gallery):,} people left for a gallery of {gallery:,}")
    mated = [by_subject[s][1] for s in in_gallery if len(by_subject[s]) >= 2][:half]
    return IdentificationDesign([by_subject[s][0] for s in in_gallery], mated, [by_subject[s][0] for s in outside])


def collection_id_for(images: Images, design: IdentificationDesign) -> str:
    """A collection name derived from the gallery, so a resumed run finds its own collection."""
    return "faceledger-audit-" + digest("".join(images.digest(i) for i in design.gallery).encode())[:16]


def plan_identification(endpoint_name: str, images: Images, design: IdentificationDesign, cid: str, done: set[str],
                        prices) -> Plan:
    search = [f"SearchFacesByImage:{cid}:{images.digest(i)}" for i in design.mated_probes + design.nonmated_probes]
    index = [f"IndexFaces:{cid}:{images.digest(i)}" for i in design.gallery]
    finished = all(k in done for k in search)
    calls = {"CreateCollection": 0 if finished else 1, "IndexFaces": 0 if finished else len(index),
             "SearchFacesByImage": len(search), "DeleteCollection": 0 if finished else 1}
    return Plan("identification", endpoint_name, len(design.gallery) + len(search), calls,
                {"IndexFaces": 0 if finished else sum(k in done for k in index),
                 "CreateCollection": int(not finished and f"CreateCollection:{cid}" in done),
                 "SearchFacesByImage": sum(k in done for k in search)}, prices,
                stored_faces=0 if finished else len(index))


def run_identification(endpoint: Endpoint, images: Images, design: IdentificationDesign, cid: str, *,
                       concurrency: int = 4, advance: Callable[[int], None] | None = None,
                       max_faces: int = MAX_SEARCH_FACES) -> EndpointScores:
    """Index the gallery, search every probe, delete the collection (also when anything fails)."""
    start = time.monotonic()
    probes = design.mated_probes + design.nonmated_probes
    keys = [f"SearchFacesByImage:{cid}:{images.digest(i)}" for i in probes]
    finished = all(endpoint.journal.get(k) is not None for k in keys)
    indexed: dict[str, int] = {}
    if not finished:
        try:
            _create(endpoint, cid)

            def index(i):
                r = endpoint.call(f"IndexFaces:{cid}:{images.digest(i)}", "IndexFaces", permanent=_no_face,
                                  CollectionId=cid, Image={"Bytes": images.data(i)}, ExternalImageId=f"g{i}",
                                  MaxFaces=1, QualityFilter="NONE")
                if advance:
                    advance(1)
                return r

            for i, r in zip(design.gallery, _map(index, design.gallery, concurrency)):
                indexed[f"g{i}"] = len(r.get("FaceRecords", []))

            def search(pair):
                i, key = pair
                r = endpoint.call(key, "SearchFacesByImage", permanent=_no_face, CollectionId=cid,
                                  Image={"Bytes": images.data(i)}, FaceMatchThreshold=0,
                                  MaxFaces=min(max_faces, MAX_SEARCH_FACES), QualityFilter="NONE")
                if advance:
                    advance(1)
                return r

            _map(search, list(zip(probes, keys)), concurrency)
        finally:
            _delete(endpoint, cid)
    responses = [endpoint.journal.get(k) for k in keys]
    return _identification_scores(images, design, probes, responses, indexed, endpoint.sent, time.monotonic() - start)


def _create(endpoint: Endpoint, cid: str) -> None:
    key = f"CreateCollection:{cid}"
    if endpoint.journal.get(key) is not None:
        return  # created by an earlier run of this audit that did not get to delete it
    endpoint.call(key, "CreateCollection", CollectionId=cid)


def _delete(endpoint: Endpoint, cid: str) -> None:
    """Delete the gallery; the journal forgets it, so a later run indexes it again."""
    from botocore.exceptions import ClientError

    from botocore.exceptions import BotoCoreError

    for attempt in range(5):
        try:
            endpoint.client.delete_collection(CollectionId=cid)
            break
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
                break
            last = str(exc)
        except BotoCoreError as exc:  # a dropped connection: try again
            last = str(exc)
        time.sleep(0.5 * 2**attempt)
    else:
        raise EndpointError(f"could not delete the audit's collection {cid} ({last}): delete it by hand")
    endpoint.journal.forget(f"CreateCollection:{cid}")
    endpoint.journal.forget(f"IndexFaces:{cid}:")


def _identification_scores(images: Images, design, probes, responses, indexed, calls, seconds) -> EndpointScores:
    """One score row per candidate returned (probe x gallery face), and per probe its answer."""
    gallery = {f"g{i}": i for i in design.gallery}
    rows, answers, fta, lowest, truncated = [], [], {}, math.inf, 0
    for i, response in zip(probes, responses):
        pa, sa, ga = images.items[i]
        answers.append({"probe": i, "path": str(pa), "mated_probe": i in set(design.mated_probes), "response": response})
        if response is None or "Error" in response:
            fta[ga] = fta.get(ga, 0) + 1
            continue
        matches = response.get("FaceMatches", [])
        truncated += len(matches) >= min(MAX_SEARCH_FACES, len(gallery))
        for m in matches:
            g = gallery.get(m["Face"].get("ExternalImageId", ""))
            if g is None:
                continue  # a face this audit did not index: not part of the gallery
            pb, sb, gb = images.items[g]
            lowest = min(lowest, float(m["Similarity"]))
            rows.append({"score": float(m["Similarity"]), "mated": sa == sb, "group_a": ga, "group_b": gb,
                         "subject_a": str(sa), "subject_b": str(sb), "path_a": str(pa), "path_b": str(pb),
                         "censored": False, "probe": i, "gallery": g})
    if not rows:
        raise EndpointError("the endpoint returned no candidate for any probe: nothing to measure")
    s = Scores.from_labels([r["score"] for r in rows], [r["mated"] for r in rows], [r["group_a"] for r in rows],
                           [r["group_b"] for r in rows], [r["subject_a"] for r in rows], [r["subject_b"] for r in rows])
    complete = lowest <= 0.0 or truncated == 0 and all(
        len((a["response"] or {}).get("FaceMatches", [])) == len(gallery) for a in answers if "Error" not in (a["response"] or {"Error": 1}))
    extra = {"probes": len(probes), "gallery": len(design.gallery), "lowest_similarity_returned": lowest,
             "truncated_lists": truncated, "complete_candidate_lists": bool(complete),
             "gallery_faces_indexed": sum(1 for v in indexed.values() if v) if indexed else None}
    return EndpointScores(s, rows, fta, 0, calls, seconds, {**extra, "_answers": answers, "_probes": probes})


@dataclass
class IdentificationRates:
    group: str
    threshold: float
    gallery: int
    mated_probes: int
    missed: int  # mated probes whose mate is not returned at or above the threshold (FNIR)
    nonmated_probes: int
    false_matched: int  # non-mated probes with any candidate at or above the threshold (FPIR)

    @property
    def fnir(self) -> float:
        return self.missed / self.mated_probes if self.mated_probes else math.nan

    @property
    def fpir(self) -> float:
        return self.false_matched / self.nonmated_probes if self.nonmated_probes else math.nan

    def to_dict(self) -> dict:
        lo, hi = wilson(self.false_matched, self.nonmated_probes)
        flo, fhi = wilson(self.missed, self.mated_probes)
        return {"group": self.group, "threshold": self.threshold, "gallery": self.gallery,
                "nonmated_probes": self.nonmated_probes, "false_matched": self.false_matched, "fpir": self.fpir,
                "fpir_ci": [lo, hi], "mated_probes": self.mated_probes, "missed": self.missed, "fnir": self.fnir,
                "fnir_ci": [flo, fhi]}


def identification_rates(images: Images, design: IdentificationDesign, result: EndpointScores,
                         thresholds: Sequence[float] = (80.0, 99.0), gallery_sizes: Sequence[int] | None = None,
                         seed: int = 0) -> list[IdentificationRates]:
    """FPIR and FNIR per probe group at each threshold, for the whole gallery and for seeded
    sub-galleries (the candidates a search returned, restricted to the sub-gallery's faces: exact
    when the endpoint returned the whole list, as FaceMatchThreshold=0 asks)."""
    sizes = sorted(set(gallery_sizes or []) | {len(design.gallery)})
    order = np.random.default_rng(seed).permutation(len(design.gallery))
    candidates: dict[int, list[tuple[int, float]]] = {}
    for r in result.rows:
        candidates.setdefault(r["probe"], []).append((r["gallery"], r["score"]))
    mated = set(design.mated_probes)
    answered = {a["probe"] for a in result.extra["_answers"] if "Error" not in (a["response"] or {"Error": 1})}
    mate_of = {images.items[g][1]: g for g in design.gallery}
    out = []
    for n in sizes:
        sub = {design.gallery[k] for k in order[:n]}
        for t in thresholds:
            counts: dict[str, list[int]] = {}
            for i in result.extra["_probes"]:
                if i not in answered:
                    continue
                _, subject, group = images.items[i]
                c = counts.setdefault(group, [0, 0, 0, 0])  # mated, missed, nonmated, false
                cands = [(g, s) for g, s in candidates.get(i, []) if g in sub]
                if i in mated:
                    mate = mate_of.get(subject)
                    if mate not in sub:
                        continue
                    c[0] += 1
                    c[1] += not any(g == mate and s >= t for g, s in cands)
                else:
                    c[2] += 1
                    c[3] += any(s >= t for _, s in cands)
            out += [IdentificationRates(g, t, n, *v) for g, v in sorted(counts.items())]
    return out


def aclu_table(rates: Sequence[IdentificationRates], gallery: int) -> str:
    """The ACLU-style table in Markdown: false matches by group at 80 and 99 on the whole gallery."""
    lines = ["| probe group | threshold | non-mated probes | falsely matched | FPIR (95% CI) | mated probes | missed | FNIR |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rates:
        if r.gallery != gallery:
            continue
        d = r.to_dict()
        ci = d["fpir_ci"]
        lines.append(f"| {r.group} | {r.threshold:g} | {r.nonmated_probes:,} | {r.false_matched:,} | "
                     f"{_pct(r.fpir)} ({_pct(ci[0])} to {_pct(ci[1])}) | {r.mated_probes:,} | {r.missed:,} | {_pct(r.fnir)} |")
    return "\n".join(lines)


def _pct(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return "0%" if abs(x) < 1e-12 else f"{100 * x:.3g}%"  # a Wilson bound of 0 computes as 7e-18
