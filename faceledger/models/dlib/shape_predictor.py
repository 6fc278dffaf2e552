"""dlib's 5-point shape predictor (an ensemble of regression trees, Kazemi & Sullivan 2014) read from
its ``.dat`` file and evaluated with numpy, giving dlib's own points.

Why: ``dlib.shape_predictor`` decodes the 9 MB file (15 cascades x 500 trees, every number in
dlib's portable integer encoding) in ~0.2 s of CPU, which `faceledger compare` paid in full to
place two or three faces (issue 25). Read once into arrays (a few seconds, like the ONNX
conversions, on first use) and cached as ``.npz``, the model loads in a few ms. Evaluating it in numpy is slower
per face than dlib (~2-4x), so the engine uses it for a process's first faces only
(vision/detection.Landmarker).

The evaluation restates dlib's (shape_predictor.h): the shape starts at the mean shape; in each
cascade the 800 feature pixels are the anchors' positions in the current shape plus the deltas
turned by the similarity transform from the mean shape to the current one (Umeyama, in closed
form for 2-D), mapped into the box (its corners as dlib's inclusive rectangle) and rounded; a
pixel's value is the integer mean of R, G and B, 0 outside the image; each tree goes left where
value[idx1] - value[idx2] > threshold, and the leaves are added to the shape one tree after
another in float32, as dlib does (a pairwise sum moved ~2% of the points by a pixel). Final points
are rounded to whole pixels, as dlib's ``point``s are.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from faceledger.models.dlib.dat_format import DlibFormatError

FOLDER = "landmarks"


def read(dat: Path) -> dict[str, np.ndarray]:
    """The predictor's arrays: mean shape (2P,), split pixel indices (C, T, S, 2) and thresholds
    (C, T, S), leaves (C, T, S + 1, 2P), anchors (C, F) and deltas (C, F, 2).

    dlib's primitives (dat_format.py): an integer is a control byte (bit 7: sign, low 4 bits: byte
    count) and that many little-endian bytes; a float is an integer mantissa and exponent. Read
    here in one tight loop (~2 million numbers) rather than through dat_format's checked reader."""
    data = Path(dat).read_bytes()
    pos = 0
    end = len(data)
    from_bytes = int.from_bytes
    ldexp = math.ldexp

    def number() -> int:
        nonlocal pos
        if pos >= end:
            raise DlibFormatError(f"{dat}: truncated at byte {pos}")
        control = data[pos]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise DlibFormatError(f"{dat}: not an integer at byte {pos} (control byte {control:#x})")
        value = from_bytes(data[pos + 1 : pos + 1 + size], "little")
        pos += 1 + size
        return -value if control & 0x80 else value

    def real() -> float:
        mantissa = number()
        return ldexp(mantissa, number())

    def column() -> list[float]:
        rows, cols = abs(number()), abs(number())
        return [real() for _ in range(rows * cols)]

    if number() != 1:
        raise DlibFormatError(f"{dat}: not a version 1 shape predictor")
    mean = column()
    splits, leaves = [], []
    for _ in range(number()):
        cascade_splits, cascade_leaves = [], []
        for _ in range(number()):
            cascade_splits.append([(number(), number(), real()) for _ in range(number())])
            cascade_leaves.append([column() for _ in range(number())])
        splits.append(cascade_splits)
        leaves.append(cascade_leaves)
    anchors = [[number() for _ in range(number())] for _ in range(number())]
    deltas = [[(real(), real()) for _ in range(number())] for _ in range(number())]
    if pos != end:
        raise DlibFormatError(f"{dat}: {end - pos} bytes after the shape predictor")
    s = np.array(splits, np.float64)
    return {"mean": np.array(mean, np.float32), "idx": s[..., :2].astype(np.int32), "thresh": s[..., 2].astype(np.float32),
            "leaves": np.array(leaves, np.float32), "anchors": np.array(anchors, np.int32),
            "deltas": np.array(deltas, np.float32)}


def cached(dat: Path, cache_dir: Path) -> dict[str, np.ndarray]:
    """:func:`read`, once: kept in ``<cache_dir>/landmarks`` under a name made from the file's path,
    size and modification time (a replaced file is read again)."""
    st = dat.stat()
    key = hashlib.sha256(f"{dat.resolve()}\n{st.st_size}\n{st.st_mtime_ns}".encode()).hexdigest()[:16]
    path = Path(cache_dir) / FOLDER / f"{dat.stem}-{key}.npz"
    if path.is_file():
        try:
            with np.load(path) as z:
                return {k: z[k] for k in z.files}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # a damaged copy: read again below
            pass
    arrays = read(dat)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".sp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return arrays


class RegressionTrees:
    """``points(pixels, left, top, right, bottom)``: dlib's points for a box given as dlib's
    inclusive rectangle, as a (P, 2) float array of whole pixels."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.mean = arrays["mean"]
        cascades, trees, splits = arrays["idx"].shape[:3]
        self._idx1 = arrays["idx"][..., 0].reshape(cascades, -1).astype(np.intp)
        self._idx2 = arrays["idx"][..., 1].reshape(cascades, -1).astype(np.intp)
        self._thresh = arrays["thresh"].reshape(cascades, -1)
        self._leaves = arrays["leaves"].reshape(cascades, trees * (splits + 1), -1)
        self._anchors = arrays["anchors"].astype(np.intp)
        self._deltas = arrays["deltas"]
        self._rows = np.arange(trees) * splits  # each tree's first split, in the flattened splits
        self._leaf0 = np.arange(trees) * (splits + 1) - splits  # node index -> its leaf, flattened
        self._depth = int(np.log2(splits + 1))
        mean = self.mean.reshape(-1, 2).astype(np.float64)
        self._centred = mean - mean.mean(0)
        self._spread = float((self._centred ** 2).sum(1).mean())

    def _similarity(self, shape: np.ndarray) -> np.ndarray:
        """The 2x2 part of the similarity transform taking the mean shape onto ``shape`` (dlib's
        find_similarity_transform)."""
        cov = (shape - shape.mean(0)).T @ self._centred / len(shape)
        if cov[0, 0] * cov[1, 1] - cov[0, 1] * cov[1, 0] > 0:  # a rotation and scale: Umeyama in closed form
            a = (cov[0, 0] + cov[1, 1]) / self._spread
            b = (cov[1, 0] - cov[0, 1]) / self._spread
            return np.array([[a, -b], [b, a]])
        u, d, vt = np.linalg.svd(cov)
        s = np.ones(2)
        if np.linalg.det(cov) < 0 or (np.linalg.det(cov) == 0 and np.linalg.det(u) * np.linalg.det(vt) < 0):
            s[1 if d[1] < d[0] else 0] = -1
        return ((d * s).sum() / self._spread if self._spread else 1.0) * ((u * s) @ vt)

    def points(self, pixels: np.ndarray, left: int, top: int, right: int, bottom: int) -> np.ndarray:
        h, w = pixels.shape[:2]
        flat = pixels.reshape(h * w, -1)
        sx, sy = float(right - left), float(bottom - top)
        shape = self.mean.copy()
        for c in range(len(self._anchors)):
            current = shape.reshape(-1, 2)
            turn = self._similarity(current.astype(np.float64)).astype(np.float32)
            at = (self._deltas[c] @ turn.T + current[self._anchors[c]]).astype(np.float64)
            x = np.floor(left + at[:, 0] * sx + 0.5).astype(np.intp)
            y = np.floor(top + at[:, 1] * sy + 0.5).astype(np.intp)
            inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
            grey = flat.take(np.where(inside, y * w + x, 0), axis=0).sum(1, dtype=np.int32)[:, None] // 3 \
                if flat.shape[1] == 3 else flat.take(np.where(inside, y * w + x, 0), axis=0).astype(np.int32)
            value = np.where(inside, grey[:, 0], 0).astype(np.float32)
            left_of = (value.take(self._idx1[c]) - value.take(self._idx2[c])) > self._thresh[c]
            node = np.zeros(len(self._rows), np.intp)
            for _ in range(self._depth):
                node = 2 * node + 2 - left_of.take(self._rows + node)
            steps = self._leaves[c].take(self._leaf0 + node, axis=0)
            shape = np.cumsum(np.vstack([shape[None], steps]), axis=0, dtype=np.float32)[-1]  # tree by tree, as dlib
        current = shape.reshape(-1, 2).astype(np.float64)
        return np.floor(np.stack([left + current[:, 0] * sx, top + current[:, 1] * sy], axis=1) + 0.5)
