"""The face engine: one object that turns images into faces, templates and comparisons.

It composes the layers below (imaging, detection, alignment, embedding, quality) and holds no
module-level state: every model lives on the instance, so two engines with different settings can
coexist in one process.
"""

from __future__ import annotations

import copy
import math
import threading

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from faceledger.vision import alignment, imaging, quality
from faceledger.vision import landmarks as landmarks_mod
from faceledger.vision.detection import DETECTORS, LANDMARK_TYPES, DetectedFace, FaceFinder, Landmarker, LazyDetector, make_detector
from faceledger.models.embedding import Embedder, Template, cosine
from faceledger.models.manifest import Manifest
from faceledger.models.registry import Registry
from faceledger.models import threads as threads_mod
from faceledger.errors import FaceledgerError, InvalidParameterError, NoFaceError
from faceledger.vision.imaging import DecodedImage, ImageSource
from faceledger.models.files import ModelId
from faceledger.vision.quality import Quality, QualityFilter
from faceledger.settings import Settings


#: Per model name: (D50, K) of the logistic similarity map below, fitted on LFW View 2 so that
#: the most accurate 1:1 threshold reads ~80 and the median different-person pair ~10.
SIMILARITY_MAPS = {"dlib-resnet-v1": (0.489, 24.0), "dlib-resnet-v1-flip": (0.476, 24.0),
                   # the int8 copy: the default's map (their templates agree to cosine >= 0.998)
                   "dlib-resnet-v1-flip-int8": (0.476, 24.0)}


def to_similarity(cos: float, model: str = "dlib-resnet-v1-flip") -> float:
    """Similarity on the cloud API's 0-100 scale, a decreasing logistic of template distance.

    d = |a - b| = sqrt(2 - 2 cos) for unit templates; similarity = 100 / (1 + exp(K (d - D50))).
    For the default model on LFW, same-person pairs have median d 0.29 (similarity 99), different
    people 0.57 (10), and the most accurate 1:1 threshold, d 0.42, reads 80: the cloud API's
    default threshold keeps a familiar meaning. This is the engine's own, uncalibrated map (the
    engine sits above the calibration layer): the service, the CLI and the HTTP API report the
    calibrated Similarity, a function of the false match rate (calibration.py), and pass it to
    ``compare(similarity=...)``; models without a calibration fall back to this one.
    """
    if model.partition("@")[0] not in SIMILARITY_MAPS:  # a model with no map of its own: 100 x cosine
        return 100.0 * min(1.0, max(0.0, float(cos)))
    d50, k = SIMILARITY_MAPS[model.partition("@")[0]]
    d = math.sqrt(max(0.0, 2.0 - 2.0 * cos))
    z = k * (d - d50)
    return 0.0 if z > 700 else 100.0 / (1.0 + math.exp(z))


@dataclass(frozen=True)
class BoundingBox:
    """As ratios of the (upright) image's width and height, like the cloud API's."""

    left: float
    top: float
    width: float
    height: float


@dataclass(frozen=True)
class Landmark:
    type: str
    x: float  # ratio of image width
    y: float  # ratio of image height


@dataclass(frozen=True, eq=False)
class Face:
    bounding_box: BoundingBox
    confidence: float
    landmarks: tuple[Landmark, ...]
    quality: Quality
    detector: str  # "hog", "mmod", "blazeface" or "prealigned"
    chip: np.ndarray = field(repr=False)  # the chip the engine's model makes its template from
    #: The cloud API's landmark types (all 30, vision/landmarks.py) from the face mesh; empty with
    #: ``landmark_model = "none"``. ``landmarks`` above are dlib's 5 points, which alignment uses.
    face_landmarks: tuple[Landmark, ...] = ()


@dataclass(frozen=True)
class Detection:
    faces: list[Face]
    width: int
    height: int
    orientation: imaging.OrientationCorrection


@dataclass(frozen=True, eq=False)
class EmbeddedFace:
    face: Face
    template: Template


@dataclass(frozen=True)
class CompareMatch:
    face: Face
    similarity: float  # 0-100
    score: float  # the templates' cosine (or normalised cosine), which the calibration maps to a false match rate


@dataclass(frozen=True)
class CompareResult:
    source_face: Face
    source_similarity_threshold: float
    matches: list[CompareMatch]  # at or above the threshold, best first
    unmatched: list[CompareMatch]  # below it, best first (the cloud API omits their similarity)
    source_orientation: imaging.OrientationCorrection
    target_orientation: imaging.OrientationCorrection


_UNSET = object()


class FaceEngine:
    """``detect``, ``embed`` and ``compare`` on any image source (bytes, path, array)."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        detector: str | None = None,
        fallback_detector: str | None = None,
        embedder: Embedder | None = None,
        model: str | None = None,
    ) -> None:
        """``model``: a registry name (``faceledger models list``); default: the settings' model."""
        s = settings or Settings.load()
        if detector is not None or fallback_detector is not None:
            s = s.replace(
                detector=detector or s.detector,
                fallback_detector=fallback_detector or s.fallback_detector,
            )
        self.settings = s
        #: this process's pools (ONNX Runtime, faiss, BLAS), sized by the one `threads` setting
        self.threads = threads_mod.apply(threads_mod.resolve(s.threads))
        names = [s.detector] + ([s.fallback_detector] if s.fallback_detector not in ("none", s.detector) else [])
        def make(n):
            return make_detector(n, hog_upsample=s.hog_upsample, mmod_upsample=s.mmod_upsample, mmod_backend=s.mmod_backend,
                                 cache_dir=s.cache_dir, threads=self.threads, package_cache=s.package_cache,
                                 allow_download=s.allow_downloads)

        for n in names[1:]:  # a fallback is made on first use: its settings are checked now
            if n not in DETECTORS:
                raise InvalidParameterError(f"unknown detector {n!r}; choose one of {', '.join(DETECTORS)}")
            if n == "mmod" and s.mmod_backend not in ("onnx", "dlib"):
                raise InvalidParameterError(f"mmod_backend must be onnx or dlib, not {s.mmod_backend!r}")
        detectors = [make(names[0])] + [LazyDetector(n, lambda n=n: make(n)) for n in names[1:]]
        self._landmarker = Landmarker(s.cache_dir)
        self._mesh = None  # the face mesh, made on first use (face_mesh)
        self._finder = FaceFinder(detectors, self._landmarker, max_side=s.detect_max_side, min_face_size=s.min_face_size,
                                  pyramid_max_side=s.detect_pyramid_max_side)
        self._registry = Registry.of(s)
        if embedder is None:
            entry = self._registry.get(model) if model else self._registry.resolve(s)
            embedder = self._registry.embedder(entry, backend=s.embedder, threads=self.threads)
        self._embedder = embedder
        self.manifest: Manifest = getattr(embedder, "manifest", None) or self._registry.get(embedder.model.name).manifest
        # dlib's models are not documented as thread-safe: one call at a time per engine. A server
        # gets parallel CPU use from worker processes, each with its own engine.
        self._lock = threading.Lock()
        # Decoding runs outside the lock (it is thread-safe and often the slower half), so its
        # memory is bounded by a budget instead: the pixels of a request count until detection is done.
        self._budget = imaging.DecodeBudget(s.decode_budget_bytes)

    @property
    def model(self) -> ModelId:
        return self._embedder.model

    def with_model(self, name: str) -> "FaceEngine":
        """An engine for another model that shares this one's detectors (and its lock)."""
        entry = self._registry.get(name)
        if entry.id == self.model:
            return self
        twin = copy.copy(self)
        twin._embedder = self._registry.embedder(entry, backend=self.settings.embedder, threads=self.threads)
        twin.manifest = entry.manifest
        return twin

    def load(self, image: ImageSource) -> DecodedImage:
        return imaging.load_image(image, max_bytes=self.settings.max_image_bytes, max_pixels=self.settings.max_image_pixels)

    # --- detection -------------------------------------------------------------------------------

    def detect(self, image: ImageSource, *, prealigned: bool = False, max_faces: int | None = None) -> Detection:
        """Every face in the image, largest first. ``prealigned``: the image is one face chip.
        ``max_faces=1`` asks for the largest face only, which a coarse copy finds (FaceFinder)."""
        s = self.settings
        image = imaging.read_source(image, max_bytes=s.max_image_bytes)
        cost = imaging.decode_cost(image, max_bytes=s.max_image_bytes, max_pixels=s.max_image_pixels) \
            if isinstance(image, bytes) else 0
        with self._budget.hold(cost):  # the full-size pixels live only inside this block
            decoded = self.load(image)
            pixels = decoded.pixels
            width, height, orientation = decoded.width, decoded.height, decoded.orientation
            with self._lock:
                if prealigned:
                    faces = [self._prealigned_face(pixels)]
                else:
                    found = self._finder.find(pixels, largest_only=max_faces == 1)
                    faces = [self._to_face(pixels, f) for f in found]
            del decoded, pixels
        if max_faces is not None:
            if max_faces < 1:
                raise InvalidParameterError(f"max_faces must be at least 1, not {max_faces}")
            faces = faces[:max_faces]
        return Detection(faces, width, height, orientation)

    def detect_many(self, images: Sequence[ImageSource]) -> list["Detection | FaceledgerError | OSError"]:
        """``detect`` (every face) for several images, each step run over all of them before the next
        (decode, detector, landmarks, chips, face mesh, quality): the same faces, templates-to-be
        and errors as ``detect`` one image at a time, with less CPU an image (each model's weights
        stay in the cache between its calls; bulk indexing, bench/profile_prepare.py). An image that
        cannot be read or decoded gives its error in its place. Images whose pixels together exceed
        the decode budget are detected one at a time, as ``detect`` does."""
        s = self.settings
        out: list = [None] * len(images)
        sources, costs = {}, {}
        for i, image in enumerate(images):
            try:
                sources[i] = imaging.read_source(image, max_bytes=s.max_image_bytes)
                costs[i] = imaging.decode_cost(sources[i], max_bytes=s.max_image_bytes, max_pixels=s.max_image_pixels) \
                    if isinstance(sources[i], bytes) else 0
            except (FaceledgerError, OSError) as exc:
                out[i] = exc
        if sum(costs.values()) > self._budget.capacity:
            for i in sources:
                try:
                    out[i] = self.detect(sources[i])
                except (FaceledgerError, OSError) as exc:
                    out[i] = exc
            return out
        with self._budget.hold(sum(costs.values())):  # every image's full-size pixels live only inside this block
            decoded = {}
            for i, source in sources.items():
                try:
                    decoded[i] = self.load(source)
                except (FaceledgerError, OSError) as exc:
                    out[i] = exc
            order = list(decoded)
            pixels = [decoded[i].pixels for i in order]
            with self._lock:
                found = self._finder.find_many(pixels)
                chips = [[alignment.align(p, f.landmarks) for f in fs] for p, fs in zip(pixels, found)]
                meshes = [[self._mesh_points(p, (f.left, f.top, f.width, f.height), f.landmarks) for f in fs]
                          for p, fs in zip(pixels, found)]
                for i, p, fs, cs, ms in zip(order, pixels, found, chips, meshes):
                    faces = [self._face(p, c, (f.left, f.top, f.width, f.height), f.landmarks, f.confidence, f.detector,
                                        mesh=m) for f, c, m in zip(fs, cs, ms)]
                    d = decoded[i]
                    out[i] = Detection(faces, d.width, d.height, d.orientation)
            del decoded, pixels
        return out

    def _model_chip(self, pixels: np.ndarray, points: np.ndarray, reference: np.ndarray) -> np.ndarray:
        """The chip the model declares; dlib's 150-pixel chip (``reference``) when that is it."""
        m = self.manifest
        a = m.alignment
        if (a.template, a.padding, m.input_size) == ("dlib-chip", alignment.CHIP_PADDING, (alignment.CHIP_SIZE,) * 2):
            return reference
        return alignment.chip_for(pixels, points, a.template, m.input_size, a.padding, a.scale)

    def _to_face(self, pixels: np.ndarray, f: DetectedFace) -> Face:
        chip = alignment.align(pixels, f.landmarks)
        return self._face(pixels, chip, (f.left, f.top, f.width, f.height), f.landmarks, f.confidence, f.detector)

    @property
    def face_mesh(self):
        """MediaPipe's face mesh (models/facemesh.py), made on first use; None when the settings
        say ``landmark_model = "none"``."""
        if self.settings.landmark_model == "none":
            return None
        if self.settings.landmark_model != "facemesh":
            raise InvalidParameterError(f"landmark_model is facemesh or none, not {self.settings.landmark_model!r}")
        if self._mesh is None:
            from faceledger.models.facemesh import FaceMesh

            self._mesh = FaceMesh(self.settings.package_cache or self.settings.cache_dir, self.settings.cache_dir,
                                  allow_download=self.settings.allow_downloads, threads=self.threads)
        return self._mesh

    def _mesh_points(self, pixels: np.ndarray, box, points: np.ndarray) -> np.ndarray | None:
        """The face mesh's 468 points in image pixels, (x, y, depth on x's scale); None when the
        settings turn the mesh off."""
        from faceledger.models.facemesh import INPUT_SIZE

        mesh = self.face_mesh
        if mesh is None:
            return None
        geometry = landmarks_mod.crop_geometry(box, points)
        found = mesh.run(landmarks_mod.crop(pixels, geometry, INPUT_SIZE)[None])[0]
        return landmarks_mod.to_image_3d(found, geometry, INPUT_SIZE)

    def _prealigned_face(self, pixels: np.ndarray) -> Face:
        h, w = pixels.shape[:2]
        left, top, right, bottom = alignment.prealigned_box(w, h)
        points = self._landmarker.points(pixels, left, top, right, bottom)
        chip = alignment.prealigned_chip(pixels)
        # the mesh is cropped around the face's box inside the chip (as around a detector's box),
        # not around the whole padded chip, where the face would be a third smaller than it was trained on
        return self._face(pixels, chip, (0.0, 0.0, float(w), float(h)), points, 100.0, "prealigned",
                          mesh_box=(left, top, right - left, bottom - top))

    def _face(self, pixels, reference, box, points, confidence, detector, *, mesh_box=None, mesh=_UNSET) -> Face:
        """Quality is measured on dlib's chip whatever the model, so a floor means the same for all;
        pose on the face mesh (quality.mesh_pose), or on the 5 points when the mesh is off.
        ``mesh``: the face's ``_mesh_points`` when already found (detect_many)."""
        h, w = pixels.shape[:2]
        left, top, width, height = box
        highlight, shadow = quality.exposure(reference)
        chip = self._model_chip(pixels, points, reference)
        if mesh is _UNSET:
            mesh = self._mesh_points(pixels, mesh_box or box, points)
        q = Quality(
            brightness=quality.brightness(reference),
            sharpness=quality.sharpness(reference),
            highlight=highlight,
            shadow=shadow,
            pose=quality.pose(points) if mesh is None else quality.mesh_pose(mesh),
            face_size=min(width, height),
            confidence=confidence,
        )
        marks = tuple(Landmark(t, float(x) / w, float(y) / h) for t, (x, y) in zip(LANDMARK_TYPES, points))
        face_marks = () if mesh is None else tuple(
            Landmark(t, float(x) / w, float(y) / h) for t, (x, y) in landmarks_mod.landmark_points(mesh[:, :2]).items())
        return Face(BoundingBox(left / w, top / h, width / w, height / h), confidence, marks, q, detector, chip,
                    face_marks)

    # --- templates -------------------------------------------------------------------------------

    def embed(
        self,
        image: ImageSource,
        *,
        prealigned: bool = False,
        max_faces: int | None = None,
        quality_filter: QualityFilter | str = QualityFilter.NONE,
    ) -> list[EmbeddedFace]:
        """A template for each face that passes ``quality_filter``, largest face first."""
        faces = self.detect(image, prealigned=prealigned, max_faces=max_faces).faces
        faces = [f for f in faces if not quality.reasons(f.quality, quality_filter)]
        return self.embed_faces(faces)

    def embed_faces(self, faces: Sequence[Face]) -> list[EmbeddedFace]:
        with self._lock:
            vectors = self._embedder.embed([f.chip for f in faces])
        return [EmbeddedFace(f, Template(v, self.model)) for f, v in zip(faces, vectors)]

    def similarity(self, a: Template, b: Template) -> float:
        """0-100; raises ModelMismatchError for templates of different models."""
        return self.to_similarity(cosine(a, b))

    def to_similarity(self, cos: float) -> float:
        """This engine's model's map from cosine to the 0-100 similarity scale."""
        return to_similarity(cos, self.model.name)

    # --- 1:1 comparison --------------------------------------------------------------------------

    def compare(
        self,
        source: ImageSource,
        target: ImageSource,
        threshold: float = 80.0,
        *,
        quality_filter: QualityFilter | str = QualityFilter.NONE,
        source_prealigned: bool = False,
        target_prealigned: bool = False,
        similarity: Callable[[float], float] | None = None,
        score: Callable[[np.ndarray, np.ndarray], float] | None = None,
        before_comparing: Callable[[Face, list[Face]], None] | None = None,
    ) -> CompareResult:
        """The largest face of ``source`` against every face of ``target``, as CompareFaces does.
        ``score``: two templates' vectors -> the score (default: their cosine); ``similarity``:
        the map from that score to 0-100 (the service passes the calibrated ones);
        ``before_comparing(source face, target faces)``: called once the faces are found and before
        any template is made, to refuse the comparison (the service's policy check)."""
        to_sim = similarity or self.to_similarity
        if not 0.0 <= float(threshold) <= 100.0:
            raise InvalidParameterError(f"threshold must be between 0 and 100, not {threshold}")
        quality_filter = QualityFilter.parse(quality_filter)
        src = self.detect(source, prealigned=source_prealigned, max_faces=1)
        if not src.faces:
            raise NoFaceError("no face was found in the source image; use a clearer, frontal photo")
        source_face = src.faces[0]
        if quality.reasons(source_face.quality, quality_filter):
            raise NoFaceError(
                f"the source face fails the {quality_filter.value} quality filter "
                f"({', '.join(quality.reasons(source_face.quality, quality_filter))})"
            )
        tgt = self.detect(target, prealigned=target_prealigned)
        targets = [f for f in tgt.faces if not quality.reasons(f.quality, quality_filter)]
        if before_comparing is not None:
            before_comparing(source_face, targets)
        embedded = self.embed_faces([source_face, *targets])
        probe = embedded[0].template
        matches: list[CompareMatch] = []
        unmatched: list[CompareMatch] = []
        for e in embedded[1:]:
            sc = score(probe.vector, e.template.vector) if score else cosine(probe, e.template)
            m = CompareMatch(e.face, to_sim(sc), sc)
            (matches if m.similarity >= threshold else unmatched).append(m)
        matches.sort(key=lambda m: -m.similarity)
        unmatched.sort(key=lambda m: -m.similarity)
        return CompareResult(source_face, float(threshold), matches, unmatched, src.orientation, tgt.orientation)
