"""Face quality: brightness, sharpness, pose and size, and the filter levels built on them.

All measures are taken on the aligned 150x150 chip, so they do not depend on the image's
resolution, except face size, which is the detector box's shorter side in original pixels, and
pose, which is read off the face mesh's 3-D points (``mesh_pose``; the 5 points when there is no
mesh). docs/quality.md gives the formulas and the cut-offs with what they reject on LFW, and why
each measure is built so that it does not follow skin tone or face shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np

from faceledger.errors import InvalidParameterError

#: Variance of the Laplacian of sqrt(luma) at which sharpness reads 50 (LFW chips: median 0.107
#: -> sharpness 60, 5th percentile 0.041 -> 37; FairFace median 0.233 -> 77; a Gaussian blur of
#: radius 4 brings every LFW chip under 0.007 -> 9).
SHARPNESS_HALF = 0.07
#: Depth of the nose base in front of the eye corners, in half inter-ocular distances.
_NOSE_DEPTH = 0.55
#: Frontal ratio of (nose drop below the eye line) to (yaw-corrected inter-ocular distance):
#: the median over 299 LFW people (IQR 0.64-0.78, so pitch from 5 points is good to ~15 degrees).
_FRONTAL_DROP = 0.72


@dataclass(frozen=True)
class Pose:
    roll: float  # degrees, positive = face turned clockwise in the image
    yaw: float  # degrees, positive = nose toward the image's right
    pitch: float  # degrees, positive = face tilted down


@dataclass(frozen=True)
class Quality:
    brightness: float  # 0-100, mean luma: what the cloud API reports; depends on skin tone
    sharpness: float  # 0-100
    highlight: float  # 0-100, 99th-percentile luma: low only when the photo is underexposed
    shadow: float  # 0-100, 1st-percentile luma: high only when the photo is washed out
    pose: Pose
    face_size: float  # pixels, shorter side of the detector box
    confidence: float  # 0-100, the detector's


def brightness(chip: np.ndarray) -> float:
    """Mean Rec. 601 luma of the chip's inner face region, 0 (black) to 100 (white)."""
    luma = _luma(_inner(chip))
    return float(luma.mean() / 255.0 * 100.0)


def exposure(chip: np.ndarray) -> tuple[float, float]:
    """(highlight, shadow): the 99th and 1st percentile luma of the inner face, on 0-100.

    The quality filter judges exposure by these rather than by mean brightness, because mean
    brightness mostly measures skin tone: on FairFace, filtering on it rejected faces annotated
    Black six times as often as faces annotated White. Eye whites and specular highlights stay
    bright in a well-exposed photo of anyone, and pupils and nostrils stay dark.
    """
    luma = _luma(_inner(chip))
    p1, p99 = percentiles(luma, (1, 99))
    return float(p99 / 255.0 * 100.0), float(p1 / 255.0 * 100.0)


def percentiles(values: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """``np.percentile(values, qs)`` of float64 values without NaN, computed as NumPy computes its
    default (linear) method, to the last bit: order statistics by partition, then NumPy's
    interpolation. NumPy's own calls np.unique, whose first use imports numpy.ma (~9 ms of every
    one-off `faceledger compare`, issue 25); tests/test_startup.py holds the two equal."""
    a = np.asarray(values, np.float64).ravel()
    n = a.size
    where = []
    for q in qs:
        v = (n - 1) * (q / 100)  # NumPy's virtual index for 'linear'
        below = math.floor(v)
        where.append((v, below) if v < n - 1 else (v, -1))
    kth = sorted({k for _, b in where for k in ((b, b + 1) if b >= 0 else (n - 1,))})
    part = np.partition(a, kth)
    out = []
    for v, below in where:
        if below < 0:  # at or past the last value: the largest
            out.append(float(part[n - 1]))
            continue
        lo, hi, t = float(part[below]), float(part[below + 1]), v - below
        d = hi - lo
        out.append(hi - d * (1 - t) if t >= 0.5 else lo + d * t)  # NumPy's _lerp, both branches
    return out


def sharpness(chip: np.ndarray) -> float:
    """100 * v / (v + SHARPNESS_HALF), v = variance of the 4-neighbour Laplacian of sqrt(luma) of
    the inner face.

    The square root is what makes this measure focus rather than skin tone: the Laplacian of luma
    itself scales with the skin's reflectance, so darker skin read as blur (on 2,800 FairFace faces,
    a floor of 30 on it refused 8.0% of the darkest third by mean brightness, 2.9% of the middle
    and 2.0% of the brightest). On sqrt(luma) a reflectance factor a scales the variance by a
    rather than a^2, and photon noise has about the same variance at every level: the same floor
    refuses 2.7%, 2.6% and 3.2%, and a Gaussian blur of radius 4 still brings every LFW chip
    under 9.
    """
    luma = _luma(_inner(chip))
    g = np.sqrt(luma)
    lap = g[1:-1, :-2] + g[1:-1, 2:] + g[:-2, 1:-1] + g[2:, 1:-1] - 4.0 * g[1:-1, 1:-1]
    # Pure black is the fill where the chip runs off the photo (or clipped shadow): its edge is
    # not detail, and counting it made a blurred face near the frame read as sharp.
    black = luma <= 0.0
    touches = black[1:-1, 1:-1] | black[1:-1, :-2] | black[1:-1, 2:] | black[:-2, 1:-1] | black[2:, 1:-1]
    lap = lap[~touches]
    v = float(lap.var()) if lap.size > 100 else 0.0
    return 100.0 * v / (v + SHARPNESS_HALF)


def pose(landmarks: np.ndarray) -> Pose:
    """Rough head pose from dlib's 5 points (eye corners, nose base): used only when the engine
    runs without the face mesh (``landmark_model = "none"``); ``mesh_pose`` otherwise.

    Good to a degree or two in roll, ~10 degrees in yaw and ~15 in pitch (faces differ in nose
    length more than a small nod changes it).

    Roll is the angle of the eye line. In the frame where that line is level, the nose base's
    sideways offset from the eye midpoint, r (in half inter-ocular distances), gives
    yaw = atan(r / d) for a nose depth d; its drop below the eye line, against the frontal ratio,
    gives pitch.
    """
    pts = np.asarray(landmarks, dtype=np.float64)
    eye_a, eye_b = pts[0:2].mean(axis=0), pts[2:4].mean(axis=0)
    left_eye, right_eye = (eye_a, eye_b) if eye_a[0] < eye_b[0] else (eye_b, eye_a)
    nose = pts[4]
    d = right_eye - left_eye
    iod = float(np.hypot(*d))
    if iod < 1e-6:
        return Pose(0.0, 0.0, 0.0)
    roll = math.degrees(math.atan2(d[1], d[0]))
    c, s = d[0] / iod, d[1] / iod
    rel = nose - (left_eye + right_eye) / 2.0
    along, across = rel[0] * c + rel[1] * s, -rel[0] * s + rel[1] * c
    yaw = math.degrees(math.atan((along / (iod / 2.0)) / _NOSE_DEPTH))
    # The apparent eye distance shrinks with cos(yaw); undo that before reading the drop.
    frontal_iod = iod / max(math.cos(math.radians(yaw)), 0.2)
    drop = across / frontal_iod
    depth = _NOSE_DEPTH / 2.0
    radius = math.hypot(_FRONTAL_DROP, depth)
    alpha = math.atan2(depth, _FRONTAL_DROP)
    pitch = math.degrees(alpha - math.acos(max(-1.0, min(1.0, drop / radius))))
    return Pose(roll, yaw, pitch)


#: Mirror pairs of MediaPipe's face mesh vertices (image-left, image-right on a frontal face): eye
#: corners and lids, brows, nose wings, mouth corners, jaw. Every R - L points along the head's
#: own left-right axis whatever the face's shape, so their mean direction gives yaw and roll.
MESH_PAIRS = ((33, 263), (133, 362), (159, 386), (145, 374), (70, 300), (107, 336), (105, 334),
              (98, 327), (61, 291), (234, 454), (172, 397))
_MESH_EYES = (33, 263, 133, 362)
_MESH_MOUTH = (61, 291)
#: The eye-to-mouth line's tilt out of the image plane on a level head, in degrees: the median of
#: the raw mesh pitch over 300 LFW faces (one per person, mostly frontal), the zero of ``mesh_pose``'s pitch.
_MESH_LEVEL_PITCH = -1.9


def mesh_pose(mesh: np.ndarray) -> Pose:
    """Head pose from the face mesh's 3-D points ((468, 3): image x, y in pixels and depth z in the
    same unit, smaller = nearer the camera).

    The 5-point estimate turns a nose offset into yaw through one nose depth for everyone, so it
    reads a longer or more prominent nose as a turned head (the ratio of its tan(yaw) to this one
    ranges from 1.22 to 1.65 across FairFace's race x gender groups) and mistakes smiles and tilts
    for yaw. Here the head's left-right axis is the mean direction of the mesh's mirror pairs in
    3-D: yaw is that axis's turn out of the image plane, roll its angle in the image. Pitch is the
    eye-to-mouth line's tilt out of the image plane, once the left-right axis is removed, less its
    value on a level head. No constant of face shape enters yaw or roll. The mesh's depth is on the
    scale of x: the face's 3-D width it gives stays within 3% from frontal to 45 degrees of yaw.
    """
    m = np.asarray(mesh, dtype=np.float64)
    left, right = m[[a for a, _ in MESH_PAIRS]], m[[b for _, b in MESH_PAIRS]]
    v = right - left
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-9)
    ex = v.mean(axis=0)
    ex /= max(float(np.linalg.norm(ex)), 1e-9)
    yaw = math.degrees(math.atan2(ex[2], ex[0]))
    roll = math.degrees(math.atan2(ex[1], math.hypot(ex[0], ex[2])))
    up = m[list(_MESH_EYES)].mean(axis=0) - m[list(_MESH_MOUTH)].mean(axis=0)
    up -= float(up @ ex) * ex
    pitch = math.degrees(math.atan2(-up[2], -up[1])) - _MESH_LEVEL_PITCH
    return Pose(roll, yaw, pitch)


def _inner(chip: np.ndarray) -> np.ndarray:
    """The central face region of a padded chip (drops the 0.25 padding band)."""
    h, w = chip.shape[:2]
    return chip[h // 6 : h - h // 6, w // 6 : w - w // 6]


def _luma(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.float64)
    return 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]


# --- the quality filter --------------------------------------------------------------------------


class QualityFilter(str, Enum):
    NONE = "NONE"
    AUTO = "AUTO"
    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"

    @classmethod
    def parse(cls, value: "str | QualityFilter") -> "QualityFilter":
        try:
            return cls(str(value.value if isinstance(value, QualityFilter) else value).upper())
        except ValueError:
            raise InvalidParameterError(
                f"QualityFilter must be one of {', '.join(m.value for m in cls)}, not {value!r}"
            ) from None


@dataclass(frozen=True)
class Cutoffs:
    min_highlight: float
    max_shadow: float
    min_sharpness: float
    max_yaw: float
    max_pitch: float
    max_roll: float
    min_face_size: float
    min_confidence: float


#: Documented in docs/quality.md with the share of LFW faces each level rejects.
CUTOFFS: dict[QualityFilter, Cutoffs] = {
    QualityFilter.LOW: Cutoffs(12, 85, 10, 70, 60, 60, 20, 50),
    QualityFilter.MEDIUM: Cutoffs(25, 70, 25, 50, 40, 45, 40, 70),
    QualityFilter.HIGH: Cutoffs(35, 60, 40, 30, 25, 30, 60, 90),
}
CUTOFFS[QualityFilter.AUTO] = CUTOFFS[QualityFilter.MEDIUM]


def reasons(q: Quality, level: "QualityFilter | str") -> list[str]:
    """Why a face fails ``level``, as the cloud API's UnindexedFaces reason codes ([] = passes)."""
    level = QualityFilter.parse(level)
    if level is QualityFilter.NONE:
        return []
    c = CUTOFFS[level]
    out: list[str] = []
    if abs(q.pose.yaw) > c.max_yaw or abs(q.pose.pitch) > c.max_pitch or abs(q.pose.roll) > c.max_roll:
        out.append("EXTREME_POSE")
    if q.highlight < c.min_highlight or q.shadow > c.max_shadow:
        out.append("LOW_BRIGHTNESS")
    if q.sharpness < c.min_sharpness:
        out.append("LOW_SHARPNESS")
    if q.confidence < c.min_confidence:
        out.append("LOW_CONFIDENCE")
    if q.face_size < c.min_face_size:
        out.append("SMALL_BOUNDING_BOX")
    return out


@dataclass(frozen=True)
class QualityFloor:
    """A policy's minimum probe quality. Exposure is judged by ``min_highlight`` / ``max_shadow``
    / ``min_contrast`` (the inner face's 99th and 1st percentile luma and their difference):
    an under-exposed photo has no bright eye whites or speculars left, whatever the skin tone.
    ``min_brightness`` (mean luma) is kept for old policy files only: it mostly measures skin
    tone (on FairFace a floor of 25 refused 30% of Black faces against 7% of White)."""

    min_sharpness: float = 0.0
    min_brightness: float = 0.0
    min_highlight: float = 0.0
    max_shadow: float = 100.0
    min_contrast: float = 0.0
    max_abs_yaw: float = 90.0
    max_abs_pitch: float = 90.0
    max_abs_roll: float = 180.0
    min_face_size: float = 0.0  # pixels, the shorter side of the box

    def failures(self, q) -> list[str]:
        """Why a probe's quality (Quality) is under the floor; empty if it is not."""
        out = []
        if q.sharpness < self.min_sharpness:
            out.append(f"sharpness {q.sharpness:.0f} < {self.min_sharpness:g}")
        if q.brightness < self.min_brightness:
            out.append(f"brightness {q.brightness:.0f} < {self.min_brightness:g}")
        if q.highlight < self.min_highlight:
            out.append(f"under-exposed: highlights {q.highlight:.0f} < {self.min_highlight:g}")
        if q.shadow > self.max_shadow:
            out.append(f"washed out: shadows {q.shadow:.0f} > {self.max_shadow:g}")
        if q.highlight - q.shadow < self.min_contrast:
            out.append(f"flat exposure: contrast {q.highlight - q.shadow:.0f} < {self.min_contrast:g}")
        if abs(q.pose.yaw) > self.max_abs_yaw:
            out.append(f"yaw {q.pose.yaw:.0f} beyond +-{self.max_abs_yaw:g}")
        if abs(q.pose.pitch) > self.max_abs_pitch:
            out.append(f"pitch {q.pose.pitch:.0f} beyond +-{self.max_abs_pitch:g}")
        if abs(q.pose.roll) > self.max_abs_roll:
            out.append(f"roll {q.pose.roll:.0f} beyond +-{self.max_abs_roll:g}")
        if q.face_size < self.min_face_size:
            out.append(f"face {q.face_size:.0f} px < {self.min_face_size:g} px")
        return out
