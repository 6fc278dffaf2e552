"""Faces -> 150x150 chips, exactly as dlib's recognizer was trained to see them."""

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
