"""Faces -> chips: dlib's 150x150 chip (what quality is measured on, and what dlib's recognizer was trained
to see), or the template a model declares (dlib's chip at another size, or the ArcFace template)."""

from __future__ import annotations

import dlib
import numpy as np

CHIP_SIZE = 150
CHIP_PADDING = 0.25


def align(pixels: np.ndarray, landmarks: np.ndarray, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> np.ndarray:
    """Rotate, scale and crop the face so its 5 landmarks sit where dlib's template puts them."""
    xs, ys = landmarks[:, 0], landmarks[:, 1]
    rect = dlib.rectangle(int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    parts = [dlib.point(int(round(x)), int(round(y))) for x, y in landmarks]
    shape = dlib.full_object_detection(rect, parts)
    return dlib.get_face_chip(pixels, shape, size=size, padding=padding)


def prealigned_chip(pixels: np.ndarray, size: int = CHIP_SIZE) -> np.ndarray:
    """A whole image that already is a dlib face chip (padding 0.25), resized to ``size``.

    FairFace's images were cut with ``get_face_chip`` at padding 0.25, so resizing them gives the
    chip alignment would have produced, with no detector in the loop.
    """
    if pixels.shape[0] == size and pixels.shape[1] == size:
        return pixels
    return dlib.resize_image(pixels, size, size)


def prealigned_box(width: int, height: int, padding: float = CHIP_PADDING) -> tuple[float, float, float, float]:
    """Where a detector's box would lie in a padded chip: the unpadded square in its middle."""
    inner_x, inner_y = width * padding / (1 + 2 * padding), height * padding / (1 + 2 * padding)
    return inner_x, inner_y, width - inner_x, height - inner_y


#: The 112x112 five-point template of ArcFace-family models (insightface's ``arcface_dst``): the
#: image-left eye, image-right eye, nose tip, and the two mouth corners.
ARCFACE_112 = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                        [41.5493, 92.3655], [70.7299, 92.2041]], np.float64)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2x3 least-squares similarity (rotation, uniform scale, shift) taking src points to dst
    (Umeyama 1991, without reflection)."""
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    cov = b.T @ a / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
    rot = u @ d @ vt
    scale = float(np.trace(np.diag(sig) @ d) / a.var(0).sum())
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = md - scale * rot @ ms
    return m


#: Where dlib's nose point (the base of the nose, not the tip) lies in the 112 template: its median
#: over LFW faces aligned by the eyes (the template's nose tip is 56.03, 71.74).
NOSE_BASE_112 = (56.10, 78.57)


def arcface_points(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """dlib's 5 points (eye corners, base of the nose) and where they go on the ArcFace template:
    each eye's centre to the template's eye, the nose base to its median place. dlib has no mouth
    corners, so the fit rests on three points (LFW: mobileface 92.8% this way, 91.3% by the eyes
    alone; docs/models.md)."""
    p = np.asarray(landmarks, np.float64)
    e1, e2 = p[0:2].mean(0), p[2:4].mean(0)
    image_left, image_right = (e1, e2) if e1[0] < e2[0] else (e2, e1)  # the template's first eye is image-left
    src = np.array([image_left, image_right, p[4]])
    dst = np.array([ARCFACE_112[0], ARCFACE_112[1], NOSE_BASE_112])
    return src, dst


def align_arcface(pixels: np.ndarray, landmarks: np.ndarray, size: tuple[int, int], scale: float = 1.0) -> np.ndarray:
    """The face warped onto the ArcFace template, scaled to ``size`` (height, width); ``scale`` < 1
    shows more of the head (the template shrinks about the chip's centre)."""
    from PIL import Image

    h, w = size
    src, dst = arcface_points(landmarks)
    dst = (dst - 56.0) * scale + 56.0
    dst = dst * np.array([w / 112.0, h / 112.0])
    m = similarity_transform(src, dst)
    # Pillow maps each output pixel back to the input, in pixel-corner coordinates: shift the
    # transform (pixel centres) by half a pixel on both sides
    half = np.array([[1, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])
    inv = (half @ np.linalg.inv(np.vstack([m, [0, 0, 1]])) @ np.linalg.inv(half))[:2]
    img = Image.fromarray(np.ascontiguousarray(pixels))
    out = img.transform((w, h), Image.Transform.AFFINE, inv.ravel().tolist(), resample=Image.Resampling.BILINEAR)
    return np.asarray(out)


def chip_for(pixels: np.ndarray, landmarks: np.ndarray, template: str, size: tuple[int, int], padding: float,
             scale: float = 1.0) -> np.ndarray:
    """The chip a model declares (models.manifest.Alignment) for a face with dlib's 5 landmarks."""
    if template == "dlib-chip":
        return align(pixels, landmarks, size=size[0], padding=padding)
    return align_arcface(pixels, landmarks, size, scale)
