"""A cache of each face's raw quality criteria, so a quality floor can be swept offline.

Measuring a face (detection, the face mesh, the chip's measures) costs tens of milliseconds; the
floor's cut-offs are then a comparison. Storing the raw criteria per image (keyed by the code and
models that measured them, the acquisition recipe, a variant such as "blurred", and the file's
SHA-256) turns a half-hour measurement into a sweep of a minute or less. A change to the quality, engine,
alignment or landmark code, or to a model, gives a new key, so a stale measure is never read.

Besides what the floor reads, each record holds the 5-point pose (the previous estimator) and the
agreement of the face's template with its mirror image's (cosine of the two halves of a
mirror-averaged template): an independent proxy for pose, which needs no 3-D model of the head.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image, ImageFilter

from faceledger.errors import FaceledgerError
from faceledger.evaluation.protocols import choose_face, recipe
from faceledger.evaluation.template_cache import file_digest
from faceledger.vision import alignment, engine as engine_mod, landmarks, quality
from faceledger.vision.engine import Face, FaceEngine
from faceledger.vision.quality import Pose, Quality

_SCHEMA = """
CREATE TABLE IF NOT EXISTS criteria (
    key TEXT NOT NULL,
    variant TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    record TEXT,
    PRIMARY KEY (key, variant, sha256)
)
"""

#: What a variant does to the image before it is measured (the floor's bad probes, and the mirror
#: image for the pose estimator's symmetry check).
VARIANTS = ("real", "blurred", "dark", "mirrored")


def degrade(path: Path, variant: str) -> bytes | np.ndarray:
    """The image as the variant makes it: blurred (Gaussian, radius 4), under-exposed as a camera
    would (gain 0.3 then display gamma 1.5), mirrored left-right, or as taken."""
    img = Image.open(path).convert("RGB")
    if variant == "blurred":
        img = img.filter(ImageFilter.GaussianBlur(4))
    elif variant == "dark":
        x = np.asarray(img, np.float32) / 255.0
        img = Image.fromarray((255.0 * (0.3 * x) ** 1.5).clip(0, 255).astype(np.uint8))
    elif variant == "mirrored":
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    elif variant != "real":
        raise ValueError(f"unknown variant {variant!r}")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def code_key(engine: FaceEngine, prealigned: bool, expected) -> str:
    """What the measures depend on: the code that takes them, the models, the recipe."""
    h = hashlib.sha256()
    for mod in (quality, engine_mod, alignment, landmarks):
        h.update(inspect.getsource(mod).encode())
    h.update(f"{engine.model}|{engine.settings.landmark_model}|{recipe(engine.settings, prealigned, expected)}".encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Criteria:
    """One face's raw measures (None fields: no face was found)."""

    quality: Quality
    pose5: Pose  # from the 5 landmarks (the previous estimator)
    mirror_cos: float  # cosine of the templates of the chip and of its mirror image
    detector: str
    #: the engine's template of the face, kept when asked (``templates=True``) for error-by-quality curves
    template: np.ndarray | None = None

    def __eq__(self, other) -> bool:
        return isinstance(other, Criteria) and self.to_json() == other.to_json()

    def to_json(self) -> str:
        q, p = self.quality, self.quality.pose
        return json.dumps({"brightness": q.brightness, "sharpness": q.sharpness, "highlight": q.highlight,
                           "shadow": q.shadow, "roll": p.roll, "yaw": p.yaw, "pitch": p.pitch,
                           "face_size": q.face_size, "confidence": q.confidence,
                           "pose5": [self.pose5.roll, self.pose5.yaw, self.pose5.pitch],
                           "mirror_cos": self.mirror_cos, "detector": self.detector,
                           "template": None if self.template is None else [float(x) for x in self.template]})

    @classmethod
    def from_json(cls, text: str) -> "Criteria":
        d = json.loads(text)
        q = Quality(d["brightness"], d["sharpness"], d["highlight"], d["shadow"], Pose(d["roll"], d["yaw"], d["pitch"]),
                    d["face_size"], d["confidence"])
        t = d.get("template")
        return cls(q, Pose(*d["pose5"]), d["mirror_cos"], d["detector"], None if t is None else np.asarray(t, np.float32))


def measure(engine: FaceEngine, plain: FaceEngine, image, *, prealigned: bool, expected,
            template: bool = False) -> Criteria | None:
    """The criteria of the image's face (the dataset's labelled one among several); ``plain``: the
    same model without mirror averaging, for the mirror agreement."""
    try:
        d = engine.detect(image, prealigned=prealigned)
    except FaceledgerError:
        return None
    if not d.faces:
        return None
    face: Face = choose_face(d.faces, expected)
    points = np.array([[m.x * d.width, m.y * d.height] for m in face.landmarks])
    mirrored = Face(face.bounding_box, face.confidence, face.landmarks, face.quality, face.detector,
                    np.ascontiguousarray(face.chip[:, ::-1]))
    a, b = (e.template.vector for e in plain.embed_faces([face, mirrored]))
    t = engine.embed_faces([face])[0].template.vector if template else None
    return Criteria(face.quality, quality.pose(points), float(np.dot(a, b)), face.detector, t)


class QualityCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)

    def get(self, key: str, variant: str, sha256: str) -> tuple[bool, Criteria | None]:
        row = self._db.execute("SELECT record FROM criteria WHERE key=? AND variant=? AND sha256=?",
                               (key, variant, sha256)).fetchone()
        if row is None:
            return False, None
        return True, None if row[0] is None else Criteria.from_json(row[0])

    def put_many(self, key: str, variant: str, rows: list[tuple[str, Criteria | None]]) -> None:
        with self._db:
            self._db.executemany("INSERT OR REPLACE INTO criteria VALUES (?, ?, ?, ?)",
                                 [(key, variant, sha, None if c is None else c.to_json()) for sha, c in rows])

    def close(self) -> None:
        self._db.close()


def criteria_for(
    paths: Iterable[Path],
    engine: FaceEngine,
    *,
    variant: str = "real",
    prealigned: bool = False,
    expected=None,
    cache_path: Path | None = None,
    templates: bool = False,
    cached_only: bool = False,
    advance: Callable[[int], None] | None = None,
) -> dict[Path, Criteria | None]:
    """Criteria per image, from the cache where possible, measuring the rest (in this process:
    the bench shares a small machine) and committing as it goes. ``templates``: also the face's
    template (a cached record without one is measured again). ``cached_only``: measure nothing,
    leave out what the cache lacks (to look at a partial cache while another process fills it)."""
    cache = QualityCache(cache_path or engine.settings.cache_dir / "quality_criteria.sqlite")
    key = code_key(engine, prealigned, expected)
    plain = None
    out: dict[Path, Criteria | None] = {}
    pending: list[tuple[str, Criteria | None]] = []
    try:
        for p in paths:
            p = Path(p)
            sha = file_digest(p)
            hit, got = cache.get(key, variant, sha)
            if not hit or (templates and got is not None and got.template is None):
                if cached_only:
                    continue
                if plain is None:
                    plain = engine.with_model(engine.model.name.removesuffix("-flip"))
                image = p if variant == "real" else degrade(p, variant)
                got = measure(engine, plain, image, prealigned=prealigned, expected=expected, template=templates)
                pending.append((sha, got))
                if len(pending) >= 64:
                    cache.put_many(key, variant, pending)
                    pending.clear()
            out[p] = got
            if advance:
                advance(1)
    finally:
        cache.put_many(key, variant, pending)
        cache.close()
    return out
