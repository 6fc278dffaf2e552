"""Label-free score normalisation against the demographic differential (issue 9, not yet default).

One global threshold treats groups unequally because each part of face space has its own
impostor distribution: East Asian women's templates sit closer to each other than White men's.
The normaliser measures, for every template, how close it lies to a cohort, and rescales each
comparison by both sides' cohort statistics (adaptive symmetric normalisation, ASN):

    s' = ((s - mu_a) / sd_a + (s - mu_b) / sd_b) / 2

with mu, sd the mean and deviation of the template's ``top_k`` highest cosines to the cohort.
With ``pair_weight`` w > 0 the location of side a is pair-level: (1 - w) mu_a + w <n_a, b>, where
n_a is the mean of a's top-k centroids, so strangers from one neighbourhood are discounted and
strangers from far apart are not (docs/fairness.md measures w = 0.5 and 1; the shipped file has 0).
A second, coarse step removes what ASN leaves per region of face space: ``K`` clusters of the
fit data, each with an offset that moves its within-cluster threshold for ``OFFSET_FMR`` onto the
global one (the pair gets the mean of its two clusters' offsets).

The cohort is **k-means centroids** of the fit half's templates, never a template of its own:
a centroid is kept only when it averages images of at least MIN_IDENTITIES identities and, at the
engine's match score, matches the images of no identity unless it matches MIN_IDENTITIES or more. Nothing here reads a demographic
label: fitting takes templates and (to drop mated pairs) identity names only; labels are read by
evaluation code alone (tests/test_normalisation.py enforces the boundary). Same data and seed
in, byte-identical file out: k-means is plain numpy with a seeded k-means++ start.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

from faceledger.scoring.calibration import CalibrationMissingError, threshold_for_fmr

FORMAT = "faceledger-normaliser/1"
#: A cohort centroid is kept only when it averages images of at least this many identities.
MIN_IDENTITIES = 3
OFFSET_FMR = 1e-3
#: Coarse clusters, each with an offset (the shipped fit; 16 starve on the fit half, docs/fairness.md).
CLUSTERS = 8
_DIGITS = 7  # stored floats: fixed digits, so the file regenerates byte for byte


class TemplateStats(NamedTuple):
    """What ``Normaliser.normalise`` reads of one side of a pair, for a batch of templates."""

    mean: np.ndarray  # of the template's top-k cohort cosines
    sd: np.ndarray
    cluster: np.ndarray  # its offset cluster
    near: np.ndarray | None = None  # pair-level only: the mean of its top-k centroids
    vector: np.ndarray | None = None  # pair-level only: the template itself

    def take(self, rows: np.ndarray) -> "TemplateStats":
        """The statistics of ``rows``: one side of a block of pairs."""
        return TemplateStats(*(None if x is None else x[rows] for x in self))


@dataclass(frozen=True)
class Normaliser:
    model: str
    centroids: np.ndarray  # (C, d) unit vectors: the cohort
    top_k: int
    clusters: np.ndarray  # (K, d) unit vectors
    offsets: np.ndarray  # (K,)
    pair_weight: float = 0.0  # 0: ASN's per-template location; > 0: partly pair-level (see above)

    def stats(self, vectors: np.ndarray) -> TemplateStats:
        """Per template: mean and deviation of its top-k cohort cosines, and its cluster; with a
        pair weight also the mean of its top-k centroids and the template itself."""
        v = np.atleast_2d(np.asarray(vectors, np.float32))
        sims = v @ self.centroids.T
        cluster = (v @ self.clusters.T).argmax(1)
        if not self.pair_weight:
            top = -np.sort(-sims, axis=1)[:, : self.top_k]
            return TemplateStats(top.mean(1), np.maximum(top.std(1), 1e-6), cluster)
        idx = np.argpartition(-sims, self.top_k, axis=1)[:, : self.top_k]
        top = np.take_along_axis(sims, idx, 1)
        near = self.centroids[idx].mean(1).astype(np.float32)
        return TemplateStats(top.mean(1), np.maximum(top.std(1), 1e-6), cluster, near, v)

    def normalise(self, cosines: np.ndarray, a: TemplateStats, b: TemplateStats) -> np.ndarray:
        """Normalised scores of pairs whose sides have statistics a and b (aligned, or one side a
        single template against many)."""
        ma, mb = a.mean, b.mean
        if self.pair_weight:
            w = self.pair_weight
            ma = (1 - w) * ma + w * np.sum(a.near * b.vector, axis=-1)  # how close b lies to a's neighbourhood
            mb = (1 - w) * mb + w * np.sum(b.near * a.vector, axis=-1)
        asn = ((cosines - ma) / a.sd + (cosines - mb) / b.sd) / 2
        return asn - (self.offsets[a.cluster] + self.offsets[b.cluster]) / 2

    def block(self, pairs: int) -> int:
        """How many pairs to score at once: a pair-level normaliser gathers two more (block, d)
        arrays per side, so it takes smaller blocks."""
        return min(pairs, 500_000) if self.pair_weight else pairs

    def to_dict(self) -> dict:
        r = lambda x: np.round(np.asarray(x, np.float64), _DIGITS).tolist()  # noqa: E731
        return {"format": FORMAT, "model": self.model, "top_k": self.top_k, "centroids": _pack(self.centroids),
                "clusters": _pack(self.clusters), "offsets": r(self.offsets),
                **({"pair_weight": float(self.pair_weight)} if self.pair_weight else {}),
                "note": "centroids: k-means means of 3+ identities' templates each (no person's own template), "
                        "little-endian float16, base64; fitted on FairFace (CC BY 4.0, Karkkainen & Joo 2021) and LFW"}

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")) + "\n"

    @property
    def digest(self) -> str:
        """Identifies this fitted state: a calibration of normalised scores names the normaliser it assumes."""
        return hashlib.sha256(self.dumps().encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict) -> "Normaliser":
        if d.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} file")
        return cls(d["model"], _unpack(d["centroids"]), int(d["top_k"]), _unpack(d["clusters"]),
                   np.asarray(d["offsets"], np.float64), float(d.get("pair_weight", 0.0)))


def _pack(x: np.ndarray) -> dict:
    """float16 (cosines move by < 1e-3 of a template's cohort deviation): a quarter of the JSON digits' size."""
    a = np.ascontiguousarray(np.asarray(x, "<f2"))
    return {"shape": list(a.shape), "float16": base64.b64encode(a.tobytes()).decode()}


def _unpack(d: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(d["float16"]), "<f2").reshape(d["shape"]).astype(np.float32)


def _as_stored(x: np.ndarray) -> np.ndarray:
    """Round through float16 as the file does, so fitting computes with the values that ship."""
    return np.asarray(x, "<f2").astype(np.float32)


#: Normalisers that ship, one per model name, in faceledger/data/ (`faceledger calibration fit --normalisation cohort`).
SHIPPED = {"dlib-resnet-v1-flip": "normaliser-dlib-resnet-v1-flip.json"}


class NormaliserMissingError(CalibrationMissingError):
    """Score normalisation was asked for a model no normaliser was fitted for."""


FITTED = "normaliser.json"  # in a model's folder, beside its fitted calibrations


def for_model(model: str, directory: Path | None = None) -> Normaliser:
    """The normaliser for a model id (``name@digest``): one fitted into ``directory`` (the model's
    folder) when there is one, else the shipped one; the digest must match too."""
    name = model.partition("@")[0]
    if directory is not None and (Path(directory) / FITTED).is_file():
        path = Path(directory) / FITTED
        norm, where = _load(str(path), path.stat().st_mtime_ns), str(path)
    else:
        ref = resources.files("faceledger").joinpath("data", SHIPPED.get(name, f"normaliser-{name}.json"))
        if not ref.is_file():
            raise NormaliserMissingError(f"no score normaliser for model {name}: use score_normalisation = none, "
                                         f"or fit one with `faceledger calibration fit --model {name} "
                                         "--normalisation cohort`")
        norm, where = _shipped(name), "the shipped normaliser"
    if norm.model != model:
        raise NormaliserMissingError(f"{where} is for {norm.model}, not {model}: refit it")
    return norm


@lru_cache(maxsize=None)
def _shipped(name: str) -> Normaliser:
    ref = resources.files("faceledger").joinpath("data", SHIPPED.get(name, f"normaliser-{name}.json"))
    return Normaliser.from_dict(json.loads(ref.read_text()))


@lru_cache(maxsize=16)
def _load(path: str, mtime_ns: int) -> Normaliser:
    return Normaliser.from_dict(json.loads(Path(path).read_text()))


def kmeans(x: np.ndarray, k: int, *, iterations: int = 20, seed: int = 0) -> np.ndarray:
    """Spherical k-means (unit centroids), seeded k-means++ start; deterministic for given input."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x, np.float32)
    centres = [x[rng.integers(len(x))]]
    closest = 1.0 - x @ centres[0]
    for _ in range(1, k):
        p = np.maximum(closest, 0).astype(np.float64)
        centres.append(x[rng.choice(len(x), p=p / p.sum())])
        closest = np.minimum(closest, 1.0 - x @ centres[-1])
    c = np.stack(centres)
    for _ in range(iterations):
        nearest = np.concatenate([(x[s : s + 4096] @ c.T).argmax(1) for s in range(0, len(x), 4096)])
        sums = np.zeros_like(c, dtype=np.float64)
        np.add.at(sums, nearest, x)
        empty = np.bincount(nearest, minlength=k) == 0
        sums[empty] = c[empty]  # a centre that lost every point stays where it was
        c = (sums / np.linalg.norm(sums, axis=1, keepdims=True)).astype(np.float32)
    return c


def pair_scores(v: np.ndarray, i: np.ndarray, j: np.ndarray, normaliser: Normaliser | None = None,
                block: int = 4_000_000) -> np.ndarray:
    """Scores of the pairs (v[i], v[j]): cosines, or normalised by ``normaliser``; in blocks, so
    tens of millions of pairs never gather their vectors at once."""
    out = np.empty(len(i), np.float32)
    stats = normaliser.stats(v) if normaliser is not None else None
    if normaliser is not None:
        block = normaliser.block(block)
    for s in range(0, len(i), block):
        a, b = i[s : s + block], j[s : s + block]
        c = np.einsum("ij,ij->i", v[a], v[b])
        if normaliser is not None:
            c = normaliser.normalise(c, stats.take(a), stats.take(b))
        out[s : s + len(a)] = c
    return out


def fit(model: str, vectors: np.ndarray, identities: np.ndarray, *, cohort: int = 3000, top_k: int = 30,
        clusters: int = CLUSTERS, min_pairs: int = 20_000, seed: int = 0, match_cosine: float | None = None,
        pair_weight: float = 0.0) -> Normaliser:
    """From the fit half's templates and identity names (pairs of one identity are not
    impostor pairs); no demographic label is an argument. ``match_cosine``: the score at which
    the engine would call two faces one person; a centroid that matches the images of only one
    or two identities there would identify them, and is dropped. ``clusters=0``: no offsets."""
    v = np.asarray(vectors, np.float32)
    ident = np.unique(np.asarray(identities), return_inverse=True)[1]  # codes: 78M pairs of names would not fit
    centroids = kmeans(v, cohort, seed=seed)
    sims = v @ centroids.T
    members = sims.argmax(1)
    keep = np.zeros(len(centroids), bool)
    for c in range(len(centroids)):
        people = len(np.unique(ident[members == c]))
        matched = 0 if match_cosine is None else len(np.unique(ident[sims[:, c] >= match_cosine]))
        keep[c] = people >= MIN_IDENTITIES and (matched == 0 or matched >= MIN_IDENTITIES)
    centroids = _as_stored(centroids[keep])  # of fewer people it could be someone's face
    if not clusters:  # one cluster with no offset
        return Normaliser(model, centroids, top_k, np.zeros((1, v.shape[1]), np.float32), np.zeros(1), pair_weight)
    coarse = _as_stored(kmeans(v, clusters, iterations=30, seed=seed + 1))
    base = Normaliser(model, centroids, top_k, coarse, np.zeros(clusters), pair_weight)
    cl = base.stats(v).cluster
    i, j = np.triu_indices(len(v), 1)
    keep = ident[i] != ident[j]
    i, j = i[keep], j[keep]
    scores = pair_scores(v, i, j, base)
    global_t = threshold_for_fmr(scores, OFFSET_FMR)
    offsets = np.zeros(clusters)
    for c in range(clusters):
        within = (cl[i] == c) & (cl[j] == c)
        if within.sum() >= min_pairs:  # too few pairs: no offset rather than a noisy one
            offsets[c] = threshold_for_fmr(scores[within], OFFSET_FMR) - global_t
    return Normaliser(model, centroids, top_k, coarse, np.round(offsets, _DIGITS), pair_weight)  # as stored
