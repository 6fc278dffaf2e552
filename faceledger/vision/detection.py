"""Pixels -> faces: boxes, confidences and 5 landmarks, from interchangeable detectors.

A detector only proposes boxes with a score. ``FaceFinder`` owns everything around it: the
downscale of large images, mapping boxes back, the minimum face size, the fallback detector and
the landmarks, so each detector stays a few lines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, Sequence

import dlib
import numpy as np

from faceledger.models import files as models
from faceledger.errors import InvalidParameterError

#: dlib 5-point order, named as the cloud API names landmarks (left/right as seen in the image).
LANDMARK_TYPES = ("rightEyeRight", "rightEyeLeft", "leftEyeLeft", "leftEyeRight", "nose")


@dataclass(frozen=True)
class Candidate:
    """A detector's proposal in the pixel frame of the image it was given."""

    left: float
    top: float
    right: float
    bottom: float
    score: float  # the detector's raw margin; 0 is its own decision threshold
    #: (left, top, right, bottom) for the 5-point predictor when it should not be the reported box
    #: (BlazeFace: placed from its keypoints, vision/blazeface.py); None: the box above.
    seed: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class DetectedFace:
    """A face in original-image pixels."""

    left: float
    top: float
    width: float
    height: float
    confidence: float  # 0-100, see score_to_confidence
    landmarks: np.ndarray  # (5, 2) float pixel coordinates, LANDMARK_TYPES order
    detector: str

    @property
    def size(self) -> float:
        return min(self.width, self.height)


def score_to_confidence(score: float) -> float:
    """Map a detector margin to 0-100: a logistic, 50 at the decision threshold, 98.2 at margin 1.

    Both dlib detectors are max-margin (SVM-style) scorers whose threshold is 0 and whose
    clear faces score about 1; the logistic keeps the ordering and bounds it, it is not a
    probability.
    """
    return 100.0 / (1.0 + math.exp(-4.0 * score))


class Detector(Protocol):
    name: str

    def propose(self, pixels: np.ndarray) -> list[Candidate]: ...


class HogDetector:
    name = "hog"

    def __init__(self, upsample: int = 1, cache_dir=None) -> None:
        self._detector = _frontal_face_detector(cache_dir)
        self.upsample = upsample

    def propose(self, pixels: np.ndarray) -> list[Candidate]:
        rects, scores, _ = self._detector.run(pixels, self.upsample, 0.0)
        return [
            Candidate(r.left(), r.top(), r.right() + 1, r.bottom() + 1, float(s))
            for r, s in zip(rects, scores)
        ]


def _frontal_face_detector(cache_dir=None):
    """dlib's HOG face detector. ``get_frontal_face_detector`` decodes the model dlib embeds as text
    (~0.2-0.4 s here, paid by every command); its own binary serialisation loads in ~1 ms. So it
    is saved once into ``<cache_dir>/hog`` (named by dlib's version) and loaded from there."""
    if cache_dir is None:
        return dlib.get_frontal_face_detector()
    import os
    import tempfile
    from pathlib import Path

    path = Path(cache_dir) / "hog" / f"frontal_face_detector-dlib-{dlib.__version__}.svm"
    if path.is_file():
        try:
            return dlib.fhog_object_detector(str(path))
        except RuntimeError:  # a damaged file: made again below
            pass
    detector = dlib.get_frontal_face_detector()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".hog-")
        os.close(fd)
        detector.save(tmp)
        os.replace(tmp, path)
    except OSError:  # a read-only cache: decode it each time, as before
        pass
    return detector


class MmodDetector:
    name = "mmod"

    def __init__(self, upsample: int = 0) -> None:
        self._detector = dlib.cnn_face_detection_model_v1(str(models.model_path(models.MMOD)))
        self.upsample = upsample

    def propose(self, pixels: np.ndarray) -> list[Candidate]:
        found = self._detector(pixels, self.upsample)
        return [
            Candidate(d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1, float(d.confidence))
            for d in found
        ]


class LazyDetector:
    """A detector made on its first proposal: the fallback runs only when the primary finds nothing,
    so a process that never needs it (most `faceledger compare` runs) never loads it."""

    def __init__(self, name: str, make) -> None:
        self.name = name
        self._make = make
        self._detector: Detector | None = None

    def propose(self, pixels: np.ndarray) -> list[Candidate]:
        if self._detector is None:
            self._detector = self._make()
        return self._detector.propose(pixels)


DETECTORS = ("hog", "mmod", "blazeface")


def make_detector(name: str, *, hog_upsample: int = 1, mmod_upsample: int = 0, mmod_backend: str = "onnx",
                  cache_dir=None, threads: int = 0, package_cache=None, allow_download: bool = True) -> Detector:
    """``mmod_backend``: ``onnx`` (the network on ONNX Runtime, same boxes and scores; upsampling
    is dlib's own, so upsample > 0 uses dlib) or ``dlib``. ``blazeface``: MediaPipe's BlazeFace
    (vision/blazeface.py), converted from the pinned package in ``package_cache`` on first use."""
    if name == "blazeface":
        from faceledger.vision.blazeface import BlazeFaceDetector

        return BlazeFaceDetector(package_cache or cache_dir, cache_dir, allow_download=allow_download, threads=threads)
    if name == "hog":
        return HogDetector(hog_upsample, cache_dir)
    if name == "mmod":
        if mmod_backend not in ("onnx", "dlib"):
            raise InvalidParameterError(f"mmod_backend must be onnx or dlib, not {mmod_backend!r}")
        if mmod_backend == "onnx" and mmod_upsample == 0:
            from faceledger.vision.mmod import OnnxMmodDetector

            return OnnxMmodDetector(cache_dir, threads)
        return MmodDetector(mmod_upsample)
    raise InvalidParameterError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")


class Landmarker:
    """dlib's 5-point shape predictor, run on the full-resolution image.

    dlib's loader decodes the model in ~0.2 s of CPU, a fifth of a whole `faceledger compare`
    (issue 25). With a ``cache_dir``, a process's first ``quick`` faces are placed by the same trees
    evaluated in numpy from a cached table (models/dlib/shape_predictor.py: dlib's points exactly,
    ~2-4x slower a face), and dlib's own predictor is loaded only for the faces after them, so a
    one-off command never loads it and a server or an index run pays it once."""

    quick = 8

    def __init__(self, cache_dir=None) -> None:
        self._predictor = None
        self._trees = None
        self._placed = 0
        if cache_dir is not None:
            from faceledger.models.dlib import shape_predictor

            try:
                self._trees = shape_predictor.RegressionTrees(
                    shape_predictor.cached(models.model_path(models.SHAPE_5), cache_dir))
            except OSError:  # a cache that cannot be written: dlib's own, as before
                self._trees = None
        if self._trees is None:
            self._predictor = self._dlib()

    @staticmethod
    def _dlib():
        return dlib.shape_predictor(str(models.model_path(models.SHAPE_5)))

    def points(self, pixels: np.ndarray, left: float, top: float, right: float, bottom: float) -> np.ndarray:
        box = int(round(left)), int(round(top)), int(round(right)) - 1, int(round(bottom)) - 1
        if self._predictor is None and self._placed >= self.quick:
            self._predictor = self._dlib()
        self._placed += 1
        if self._predictor is None:
            return self._trees.points(np.ascontiguousarray(pixels), *box)
        shape = self._predictor(pixels, dlib.rectangle(*box))
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


class FaceFinder:
    """Runs the primary detector over a pyramid of copies, coarse to fine, then the fallback.

    Detection cost grows with the pixels scanned, not with the faces: HOG on a 1-megapixel photo
    (upsampled once) was ~98% of a comparison (issue 25). When the caller needs only the largest
    face (a CompareFaces source, a one-face template), the primary detector first runs on a copy
    whose longest side is ``max_side``; only when it finds no face there does it run on a copy twice
    as large, and so on up to ``pyramid_max_side`` (never above the image's own size): the largest
    face is the one a coarse copy shows first. When the caller needs every face (DetectFaces,
    IndexFaces, a CompareFaces target, a search probe and the faces beside it), small faces beside a
    large one must not be lost, so the primary detector runs once on the finest copy, as before
    the pyramid. The fallback detectors run on the finest copy searched. Landmarks, chips and
    quality always come from the full-resolution image. An image no larger than ``max_side`` is
    searched exactly as before (one level), so datasets of small photos (LFW, FairFace) detect the
    same faces either way."""

    def __init__(
        self,
        detectors: Sequence[Detector],
        landmarker: Landmarker,
        *,
        max_side: int = 1024,
        min_face_size: int = 20,
        pyramid_max_side: int | None = None,
    ) -> None:
        if not detectors:
            raise InvalidParameterError("at least one detector is needed")
        if max_side < MIN_DETECT_SIDE or (pyramid_max_side is not None and pyramid_max_side < MIN_DETECT_SIDE):
            raise InvalidParameterError(f"detect_max_side and detect_pyramid_max_side must be at least {MIN_DETECT_SIDE}")
        self.detectors = list(detectors)
        self.landmarker = landmarker
        self.max_side = max_side
        self.pyramid_max_side = max(max_side, pyramid_max_side or max_side)
        self.min_face_size = min_face_size

    def levels(self, longest: int) -> list[int]:
        """The longest side of each copy searched, coarse to fine, for an image of ``longest``."""
        top = min(longest, self.pyramid_max_side)
        sides, side = [], self.max_side
        while side < top:
            sides.append(side)
            side *= 2
        return sides + [top]

    def find(self, pixels: np.ndarray, *, largest_only: bool = False) -> list[DetectedFace]:
        """Faces of at least min_face_size, largest first; none in an image too small to hold one (a
        side under min_face_size, or under MIN_DETECT_SIDE once downscaled: the MMOD network rejects
        such inputs). ``largest_only``: the caller uses only the first face, so the coarse-to-fine
        pyramid may stop at the first level that shows one."""
        if min(pixels.shape[:2]) < self.min_face_size:
            return []
        primary, *fallbacks = self.detectors
        small, scale = pixels, 1.0
        levels = self.levels(max(pixels.shape[:2]))
        for side in (levels if largest_only else levels[-1:]):
            small, scale = downscale(pixels, side)
            if min(small.shape[:2]) < MIN_DETECT_SIDE:
                continue
            faces = self._found(pixels, primary, small, scale)
            if faces:
                return faces
        if min(small.shape[:2]) < MIN_DETECT_SIDE:
            return []
        for detector in fallbacks:  # on the finest copy
            faces = self._found(pixels, detector, small, scale)
            if faces:
                return faces
        return []

    def find_many(self, images: Sequence[np.ndarray]) -> list[list[DetectedFace]]:
        """``find`` (every face) for several images, each step run over all of them before the next:
        the primary detector on every image, then the landmarks of every face. The same faces as
        ``find`` one image at a time; less CPU, because each model's tables stay in the cache
        between its calls instead of being evicted by the others'. dlib's predictor, whose 7,500
        trees' leaves are scattered over megabytes, measured (LFW, CPU a face): 0.17 ms for one face
        placed again and again, ~1.2 ms between ONNX runs, ~0.8 ms in this order; not an image
        conversion (a read-only, a cropped or a 1000x1000 array cost the same)."""
        primary, *fallbacks = self.detectors
        proposed = []
        for pixels in images:  # the same single level as find's when every face is wanted
            if min(pixels.shape[:2]) < self.min_face_size:
                proposed.append(None)
                continue
            small, scale = downscale(pixels, self.levels(max(pixels.shape[:2]))[-1])
            proposed.append(None if min(small.shape[:2]) < MIN_DETECT_SIDE else (small, scale, primary.propose(small)))
        found = []
        for pixels, p in zip(images, proposed):
            faces = [] if p is None else self._kept(pixels, p[2], p[1], primary.name)
            for detector in (fallbacks if p is not None and not faces else ()):  # on the finest copy, as find
                faces = self._found(pixels, detector, p[0], p[1])
                if faces:
                    break
            found.append(faces)
        return found

    def _found(self, pixels: np.ndarray, detector: Detector, small: np.ndarray, scale: float) -> list[DetectedFace]:
        return self._kept(pixels, detector.propose(small), scale, detector.name)

    def _kept(self, pixels: np.ndarray, candidates: list[Candidate], scale: float, detector: str) -> list[DetectedFace]:
        faces = [self._finish(pixels, c, scale, detector) for c in candidates]
        faces = [f for f in faces if f.size >= self.min_face_size]
        return sorted(faces, key=lambda f: -f.width * f.height)

    def _finish(self, pixels: np.ndarray, c: Candidate, scale: float, detector: str) -> DetectedFace:
        h, w = pixels.shape[:2]
        left, top = max(0.0, c.left / scale), max(0.0, c.top / scale)
        right, bottom = min(float(w), c.right / scale), min(float(h), c.bottom / scale)
        # Landmarks come from the unclipped box (or the detector's seed for them): the predictor
        # was trained on detector boxes.
        sl, st, sr, sb = c.seed if c.seed is not None else (c.left, c.top, c.right, c.bottom)
        points = self.landmarker.points(pixels, sl / scale, st / scale, sr / scale, sb / scale)
        return DetectedFace(
            left, top, right - left, bottom - top, score_to_confidence(c.score), points, detector
        )


#: The smallest side the detectors accept (the MMOD network's convolutions fail under ~10 pixels).
MIN_DETECT_SIDE = 16


def downscale(pixels: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Shrink so the longest side is at most ``max_side``; return the image and the scale used."""
    h, w = pixels.shape[:2]
    longest = max(h, w)
    if longest <= max_side:
        return pixels, 1.0
    scale = max_side / longest
    return dlib.resize_image(pixels, max(1, round(h * scale)), max(1, round(w * scale))), scale
