"""The cloud API's landmark types, read off MediaPipe's 468-point face mesh (models/facemesh.py).

Names follow the cloud API and are from the image's point of view, as dlib's 5 points here
are (``eyeLeft`` is the eye on the image's left). The face is cropped upright around its box
(rotated by the eye line of dlib's 5 points, 1.5 x the box's side, as the mesh was trained on),
the mesh is run, and its points are mapped back into the image. ``leftPupil``/``rightPupil`` are
the eye centres (this mesh has no iris points). dlib's 5 points stay what alignment uses.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

#: Each type's mesh vertices (their mean is the landmark). MediaPipe numbers the subject's
#: right eye 33 (outer) .. 133 (inner), which is the eye on the image's left.
MESH_POINTS: dict[str, tuple[int, ...]] = {
    # nose: vertex 4 (the tip as 2-D annotations place it), not 1 (the tip in depth): 4.1% of the
    # inter-ocular distance from dlib's 68-point nose tip against 11.3% for 1, on 120 LFW faces
    # apart from bench/bench_landmarks.py's
    "eyeLeft": (33, 133, 159, 145), "eyeRight": (263, 362, 386, 374), "nose": (4,),
    "mouthLeft": (61,), "mouthRight": (291,),
    "leftEyeBrowLeft": (70,), "leftEyeBrowRight": (107,), "leftEyeBrowUp": (105,),
    "rightEyeBrowLeft": (336,), "rightEyeBrowRight": (300,), "rightEyeBrowUp": (334,),
    "leftEyeLeft": (33,), "leftEyeRight": (133,), "leftEyeUp": (159,), "leftEyeDown": (145,),
    "rightEyeLeft": (362,), "rightEyeRight": (263,), "rightEyeUp": (386,), "rightEyeDown": (374,),
    "noseLeft": (98,), "noseRight": (327,), "mouthUp": (0,), "mouthDown": (17,),
    "leftPupil": (33, 133, 159, 145), "rightPupil": (263, 362, 386, 374),
    "upperJawlineLeft": (234,), "midJawlineLeft": (172,), "chinBottom": (152,), "midJawlineRight": (397,),
    "upperJawlineRight": (454,),
}
#: DetectFaces with Attributes DEFAULT: the cloud API's five.
DEFAULT_TYPES = ("eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight")
#: With ALL: every type the cloud API's model lists (LandmarkType), in its order.
ALL_TYPES = tuple(MESH_POINTS)
CROP_SCALE = 1.5


def crop_geometry(box: tuple[float, float, float, float], points5: np.ndarray) -> tuple[float, float, float, float]:
    """(centre x, centre y, side, angle) of the upright square crop around a face: its box's
    centre, 1.5 x its longer side, turned by the line from the image-left to the image-right eye
    (dlib's 5 points: 0, 1 the image-right eye; 2, 3 the image-left one)."""
    left, top, width, height = box
    p = np.asarray(points5, np.float64)
    right_eye, left_eye = p[0:2].mean(0), p[2:4].mean(0)
    angle = float(np.arctan2(right_eye[1] - left_eye[1], right_eye[0] - left_eye[0]))
    return left + width / 2, top + height / 2, CROP_SCALE * max(width, height), angle


def _affine(cx: float, cy: float, side: float, angle: float, size: int) -> np.ndarray:
    """2x3 map from crop pixels (u, v) to image pixels (x, y)."""
    c, s, k = np.cos(angle), np.sin(angle), side / size
    return np.array([[c * k, -s * k, cx - (c - s) * side / 2], [s * k, c * k, cy - (s + c) * side / 2]])


def crop(pixels: np.ndarray, geometry: tuple[float, float, float, float], size: int) -> np.ndarray:
    m = _affine(*geometry, size)
    image = Image.fromarray(pixels)
    out = image.transform((size, size), Image.AFFINE, tuple(m.ravel()), resample=Image.BILINEAR)
    return np.asarray(out)


def to_image(mesh: np.ndarray, geometry: tuple[float, float, float, float], size: int) -> np.ndarray:
    """Mesh points (468, >=2) in crop pixels -> (468, 2) image pixels."""
    m = _affine(*geometry, size)
    uv = np.c_[np.asarray(mesh)[:, :2], np.ones(len(mesh))]
    return uv @ m.T


def to_image_3d(mesh: np.ndarray, geometry: tuple[float, float, float, float], size: int) -> np.ndarray:
    """Mesh points (468, 3) in crop pixels -> (468, 3): image x, y, and depth scaled as x and y
    are (the crop's rotation is about the depth axis, so depth needs only the scale)."""
    return np.c_[to_image(mesh, geometry, size), np.asarray(mesh)[:, 2] * geometry[2] / size]


def _averaging() -> np.ndarray:
    """(types, 468): row t averages type t's mesh points, so every type is one matrix product."""
    w = np.zeros((len(MESH_POINTS), 468))
    for row, ix in enumerate(MESH_POINTS.values()):
        w[row, list(ix)] = 1.0 / len(ix)
    return w


_AVERAGING = _averaging()


def landmark_points(mesh_in_image: np.ndarray) -> dict[str, tuple[float, float]]:
    """Every type's (x, y) in image pixels: the mean of its mesh points (one product for all
    types; a mean per type was ~0.6 ms a face, on every face bulk indexing stores)."""
    points = _AVERAGING @ np.asarray(mesh_in_image, np.float64)[:, :2]
    return dict(zip(MESH_POINTS, map(tuple, points.tolist())))
