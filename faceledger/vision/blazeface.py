"""BlazeFace as a Detector: anchors, box decoding, weighted NMS, and tiles for small faces.

Decoding, as MediaPipe's face detection graph does it (SSD anchors with a fixed anchor size 1,
reverse output order, x/y/w/h scales equal to the input size): anchor centres sit at the middle of
each cell, ((col + 0.5) / cells, (row + 0.5) / cells), 2 per cell at stride 16 and 6 per cell at
stride 32; a regression (dx, dy, w, h, 6 x (kx, ky)) in input pixels gives the box centre anchor +
d / 256 and size w / 256, h / 256; the score is the logistic of the logit. Overlapping detections
(IoU > 0.3) are merged by MediaPipe's weighted NMS: the score-weighted mean of the cluster's boxes,
scored by its best member.

Tiles: the network sees 256 x 256, and finds faces down to ~16 px of that. A whole 1024-px photo
shrunk to 256 keeps faces from ~64 px; HOG with one upsampling at 1024 finds them from ~40 px. So
beside the whole image, a larger image is also searched in overlapping tiles of ``tile`` px (512:
faces from ~32 px), all in one batch. A tile's detections that touch an inner tile edge or are
larger than a third of the tile are dropped (the neighbouring tile or the whole image sees them
whole), then everything is merged by the weighted NMS.

Boxes: dlib's shape predictor (which gives the alignment landmarks) was trained on dlib's own
detector boxes. The reported box is BlazeFace's head box mapped to the box HOG would give the same
face (``TO_DLIB_BOX``, a shift and scale fitted on LFW). The predictor is seeded differently: on a
turned head the head box's centre sits beside the face, and dlib's points drift with it (LFW View
2 cost 0.27 points), so its box is placed from BlazeFace's own keypoints (``KEYPOINT_BOX``):
centred on the midpoint of the eyes' midpoint and the mouth, the head box's width wide. The
keypoints are decoded for every view (tiles map back like boxes) and averaged by the weighted NMS
with their boxes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from faceledger.models.blazeface import INPUT_SIZE, BlazeFaceNet
from faceledger.vision.detection import Candidate

#: (dx, dy, scale): dlib-like box = blaze box shifted by (dx, dy) x its size and scaled about its
#: centre by ``scale``: medians over 298 of 300 LFW faces both found (bench/bench_blazeface.py --fit 300).
TO_DLIB_BOX = (-0.024, -0.038, 1.0)
#: (dx, dy) x the head box's width: the predictor's square box (side: the head box's width) is
#: centred this far from the midpoint of the eyes' midpoint and the mouth keypoint. Medians of
#: HOG's box centre minus that midpoint over 298 of 300 LFW faces both found, IQR 0.023 / 0.025
#: (bench/fit_blazeface_keypoints.py, seed 0).
KEYPOINT_BOX = (-0.034, -0.035)
#: Bump when what BlazeFace's detector hands on changes (boxes or predictor seeds): it is part of
#: the evaluation template cache's recipe, so templates made by older code are not reused.
OUTPUT_VERSION = 2
NMS_IOU = 0.3
EDGE_MARGIN = 2.0  # px of the network input: a box this close to an inner tile edge is cut off


def anchors(size: int = INPUT_SIZE) -> np.ndarray:
    """(896, 2) anchor centres in [0, 1], in the network's output order."""
    out = []
    for stride, per_cell in ((16, 2), (32, 6)):
        cells = size // stride
        ys, xs = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        centres = np.stack([(xs.ravel() + 0.5) / cells, (ys.ravel() + 0.5) / cells], axis=1)
        out.append(np.repeat(centres, per_cell, axis=0))
    return np.concatenate(out).astype(np.float32)


def decode_rows(logits: np.ndarray, raw: np.ndarray, anchor: np.ndarray, threshold: float,
                size: int = INPUT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """One input's detections above ``threshold``: rows (K, 16), the box (left, top, right,
    bottom) then the 6 keypoints as x0, y0, ..., x5, y5 (right eye, left eye, nose tip, mouth,
    right ear, left ear), all in [0, 1] of the network input; and scores (K,)."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits, -80.0, 80.0)))
    keep = scores > threshold
    r, a = raw[keep], anchor[keep]
    cx, cy = r[:, 0] / size + a[:, 0], r[:, 1] / size + a[:, 1]
    w, h = r[:, 2] / size, r[:, 3] / size
    points = r[:, 4:16] / size + np.tile(a, 6)
    rows = np.concatenate([np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1), points], axis=1)
    return rows, scores[keep]


def decode(logits: np.ndarray, raw: np.ndarray, anchor: np.ndarray, threshold: float,
           size: int = INPUT_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (K, 4) only, as ``decode_rows``."""
    rows, scores = decode_rows(logits, raw, anchor, threshold, size)
    return rows[:, :4], scores


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    l, t = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    r, b = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(r - l, 0, None) * np.clip(b - t, 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-12)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU) -> list[tuple[np.ndarray, float]]:
    """MediaPipe's weighted NMS: best first, each cluster (IoU > ``iou`` of its rows' first 4
    columns, the box, with its best box) becomes its score-weighted mean row with the best score;
    further columns (keypoints) are averaged with the box."""
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    alive = np.ones(len(boxes), bool)
    out = []
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        members = alive & (_iou(boxes[i, :4], boxes[:, :4]) > iou)
        members[i] = True
        w = scores[members]
        out.append(((boxes[members] * w[:, None]).sum(0) / w.sum(), float(scores[i])))
        alive &= ~members
    return out


def tiles(height: int, width: int, tile: int) -> list[tuple[int, int, int]]:
    """(left, top, side) squares covering the image, overlapping by a quarter: none when the image
    is not much larger than one tile (the whole image, searched anyway, is then fine enough)."""
    if max(height, width) <= tile * 1.25:
        return []
    step = tile * 3 // 4

    def starts(n: int) -> list[int]:
        if n <= tile:
            return [0]
        count = math.ceil((n - tile) / step) + 1
        return [2 * round(i * (n - tile) / (count - 1) / 2) for i in range(count)]  # even: see _inputs

    return [(x, y, tile) for y in starts(height) for x in starts(width)]


class BlazeFaceDetector:
    """A Detector (detection.Detector): candidates in the pixels of the image it is given; the
    score is the logit's margin over the threshold, so 0 is the detector's own decision point,
    as for the dlib detectors (detection.score_to_confidence)."""

    name = "blazeface"

    def __init__(self, package_cache: Path, cache_dir: Path, *, allow_download: bool = True, threads: int = 0,
                 threshold: float = 0.5, tile: int = 512) -> None:
        self._net = BlazeFaceNet(package_cache, cache_dir, allow_download=allow_download, threads=threads)
        self.threshold = threshold
        self.tile = tile
        self._anchors = anchors()

    def _inputs(self, pixels: np.ndarray) -> tuple[np.ndarray, list[tuple[float, float, float, bool]]]:
        """The batch (whole image letterboxed, then tiles) and, per input, (left, top, side in image
        pixels, is a tile).

        Every tile is shrunk by exactly 2 (``tile`` px to the network's 256), so one half-size copy
        (a 2x2 mean, ``Image.reduce``) serves them all as plain crops, tile origins rounded to even
        pixels, and the whole view is shrunk from it too: resizing each tile from the full image
        cost ~17 ms of a 1 MP photo's ~48 ms in detection (issue 25). The batch is filled as bytes
        and scaled to [-1, 1] once."""
        from PIL import Image

        h, w = pixels.shape[:2]
        image = Image.fromarray(pixels)
        grid = tiles(h, w, self.tile)
        views = [(0, 0, max(h, w), False)] + [(x, y, s, True) for x, y, s in grid]
        batch = np.zeros((len(views), INPUT_SIZE, INPUT_SIZE, 3), np.uint8)  # black padding
        half = self.tile == 2 * INPUT_SIZE and bool(grid)
        if half:
            image = image.reduce(2)  # the half copy: (w + 1) // 2 x (h + 1) // 2 pixels
            small = np.asarray(image)
            for i, (x, y, side, _) in enumerate(views[1:], 1):
                crop = small[y // 2 : y // 2 + INPUT_SIZE, x // 2 : x // 2 + INPUT_SIZE]
                batch[i, : crop.shape[0], : crop.shape[1]] = crop
        else:
            for i, (x, y, side, _) in enumerate(views[1:], 1):
                crop = image.crop((x, y, min(w, x + side), min(h, y + side)))
                k = INPUT_SIZE / side
                crop = crop.resize((max(1, round(crop.width * k)), max(1, round(crop.height * k))), Image.BILINEAR)
                batch[i, : crop.height, : crop.width] = np.asarray(crop)
        k = INPUT_SIZE / max(image.width, image.height)
        whole = image.resize((max(1, round(image.width * k)), max(1, round(image.height * k))), Image.BILINEAR)
        batch[0, : whole.height, : whole.width] = np.asarray(whole)
        if half:  # the half copy's side covers 2 x its pixels of the image
            views[0] = (0, 0, 2 * max(image.width, image.height), False)
        scaled = np.empty(batch.shape, np.float32)
        np.multiply(batch, np.float32(1 / 127.5), out=scaled)
        scaled -= 1.0
        return scaled, views

    def detections(self, pixels: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """(box (left, top, right, bottom) in image pixels, probability), best first."""
        return [(row[:4], p) for row, p in self.rows(pixels)]

    def rows(self, pixels: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """(row, probability), best first: the row is the box then the 6 keypoints (decode_rows),
        in image pixels."""
        h, w = pixels.shape[:2]
        batch, views = self._inputs(np.ascontiguousarray(pixels[..., :3], dtype=np.uint8))
        logits, raw = self._net.run(batch)
        all_rows, all_scores = [], []
        for i, (x, y, side, is_tile) in enumerate(views):
            rows, scores = decode_rows(logits[i], raw[i], self._anchors, self.threshold)
            if is_tile and len(rows):
                m = EDGE_MARGIN / INPUT_SIZE
                inner = ((rows[:, 0] < m) & (x > 0)) | ((rows[:, 1] < m) & (y > 0)) \
                    | ((rows[:, 2] > 1 - m) & (x + side < w)) | ((rows[:, 3] > 1 - m) & (y + side < h))
                big = (rows[:, 2] - rows[:, 0]) > 1 / 3
                rows, scores = rows[~inner & ~big], scores[~inner & ~big]
            all_rows.append(rows * side + np.array([x, y] * 8, np.float32))
            all_scores.append(scores)
        rows, scores = np.concatenate(all_rows), np.concatenate(all_scores)
        if not len(rows):
            return []
        return weighted_nms(rows, scores)

    def propose(self, pixels: np.ndarray) -> list[Candidate]:
        """The reported box is the head box mapped by ``TO_DLIB_BOX``; the predictor's seed is the
        keypoint-placed box (``KEYPOINT_BOX``)."""
        dx, dy, scale = TO_DLIB_BOX
        kdx, kdy = KEYPOINT_BOX
        found = []
        logit0 = math.log(self.threshold / (1 - self.threshold))
        for row, p in self.rows(pixels):
            l, t, r, b = (float(v) for v in row[:4])
            bw, bh = r - l, b - t
            cx, cy = (l + r) / 2 + dx * bw, (t + b) / 2 + dy * bh
            side_w, side_h = bw * scale / 2, bh * scale / 2
            fx, fy = keypoint_centre(row)
            sx, sy = fx + kdx * bw, fy + kdy * bw
            logit = math.log(max(p, 1e-9) / max(1 - p, 1e-9))
            found.append(Candidate(float(cx - side_w), float(cy - side_h), float(cx + side_w), float(cy + side_h),
                                   logit - logit0, seed=(sx - bw / 2, sy - bw / 2, sx + bw / 2, sy + bw / 2)))
        return found


def keypoint_centre(row: np.ndarray) -> tuple[float, float]:
    """The midpoint of the eyes' midpoint and the mouth keypoint, of a ``rows`` row."""
    k = row[4:16].reshape(6, 2)
    eyes = (k[0] + k[1]) / 2
    return float((eyes[0] + k[3, 0]) / 2), float((eyes[1] + k[3, 1]) / 2)
