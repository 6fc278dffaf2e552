"""dlib's MMOD CNN face detector with its network on ONNX Runtime and the rest in numpy.

What dlib's ``cnn_face_detection_model_v1`` does around the network, restated (dlib's
input_rgb_image_pyramid, image_pyramid.h, loss_mmod_):
1. the image, normalised as (pixel - mean) / 256, and its pyramid_down<6> levels (each 5/6 of the
   last, bilinearly resized, down to 5 rows) are tiled into one zero-filled canvas: a first column
   of levels, then the smaller ones back up the right side, 10 pixels apart, 11 around;
2. the network scores every position of the canvas at 1/8 resolution;
3. every position scoring above 0 becomes an 80x80 window centred on the input point it maps to,
   mapped back from the pyramid level whose tile is nearest to its centre (x 6/5 + 0.3 per level);
4. windows are kept best first unless they overlap a kept one (intersection over the bounding
   box of both above 0.338, dlib's ``test_box_overlap``).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from faceledger.models import files as models
from faceledger.vision.detection import Candidate
from faceledger.models.dlib.dat_format import Layer

RATE = 5.0 / 6.0  # pyramid_down<6>
MIN_LEVEL_ROWS = 5


def tiled_rects(nr: int, nc: int, padding: int, outer: int) -> tuple[list[tuple[int, int, int, int]], int, int]:
    """Where each pyramid level goes in the canvas: (left, top, right, bottom), inclusive, and
    the canvas's rows and columns (dlib's compute_tiled_image_pyramid_details)."""
    sizes = [(nc, nr)]
    while True:
        nr, nc = math.floor(RATE * nr), math.floor(RATE * nc)
        if nr * nc == 0 or nr < MIN_LEVEL_ROWS:
            break
        sizes.append((nc, nr))
    w0, h0 = sizes[0]
    total = sum(h + padding for _, h in sizes) - 2 * padding
    height, prev_width = 0, 0
    for w, h in sizes:
        if w <= w0 - prev_width - padding and (height - h0) * 2 >= (total - h0):
            break
        height += h + padding
        prev_width = w
    height -= padding
    rows, cols = height + 2 * outer, w0 + 2 * outer
    rects: list[tuple[int, int, int, int]] = []
    y, i = outer, 0
    while y < height + outer and i < len(sizes):
        w, h = sizes[i]
        rects.append((outer, y, outer + w - 1, y + h - 1))
        y += h + padding
        i += 1
    y -= padding
    while i < len(sizes):
        w, h = sizes[i]
        right, bottom = outer + w0 - 1, y - 1
        rect = (right - (w - 1), bottom - (h - 1), right, bottom)
        first = rects[0]
        if not (rect[2] < first[0] or rect[0] > first[2] or rect[3] < first[1] or rect[1] > first[3]):
            break  # it would overlap the full-size image
        rects.append(rect)
        y -= h + padding
        i += 1
    return rects, rows, cols


def resize_bilinear(src: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(C, H, W) -> (C, rows, cols), corners aligned, edges clamped (dlib's resize_image)."""
    h, w = src.shape[1:]
    ys = np.arange(rows) * ((h - 1) / max(rows - 1, 1))
    xs = np.arange(cols) * ((w - 1) / max(cols - 1, 1))
    top = np.floor(ys).astype(np.int64)
    left = np.floor(xs).astype(np.int64)
    bottom, right = np.minimum(top + 1, h - 1), np.minimum(left + 1, w - 1)
    fy, fx = (ys - top)[:, None], (xs - left)[None, :]
    s = src.astype(np.float64)
    tl, tr = s[:, top][:, :, left], s[:, top][:, :, right]
    bl, br = s[:, bottom][:, :, left], s[:, bottom][:, :, right]
    out = (1 - fy) * ((1 - fx) * tl + fx * tr) + fy * ((1 - fx) * bl + fx * br)
    return out.astype(np.float32)


def tiled_pyramid(pixels: np.ndarray, mean, padding: int, outer: int):
    """The normalised canvas (3, rows, cols) and the level rectangles."""
    nr, nc = pixels.shape[:2]
    rects, rows, cols = tiled_rects(nr, nc, padding, outer)
    canvas = np.zeros((3, rows, cols), np.float32)
    image = ((pixels.astype(np.float32) - np.asarray(mean, np.float32)) / np.float32(256.0)).transpose(2, 0, 1)
    l, t, r, b = rects[0]
    canvas[:, t : b + 1, l : r + 1] = image
    for (pl, pt, pr, pb), (l, t, r, b) in zip(rects, rects[1:]):
        canvas[:, t : b + 1, l : r + 1] = resize_bilinear(canvas[:, pt : pb + 1, pl : pr + 1], b - t + 1, r - l + 1)
    return canvas, rects


def output_to_input(layers: list[Layer]):
    """(scale, offset): an output position p maps to input position scale * p + offset, composing
    every convolution's map_output_to_input (p * stride - padding + size / 2) from the top."""
    scale, offset = 1, 0
    for layer in reversed(layers):
        if layer.kind == "con_4":
            p = layer.params
            scale, offset = scale * p["stride_y"], offset * p["stride_y"] - p["padding_y"] + p["nr"] // 2
    return scale, offset


def _nearest(rects, x: float, y: float) -> int:
    best, index = math.inf, 0
    for i, (l, t, r, b) in enumerate(rects):
        dx, dy = max(l - x, 0.0, x - r), max(t - y, 0.0, y - b)
        d = math.hypot(dx, dy)
        if d < best:
            best, index = d, i
    return index


def _overlaps(a, b, iou: float) -> bool:
    """dlib's test_box_overlap on integer rectangles: intersection over the bounding box of both."""
    il, it, ir, ib = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    if ir < il or ib < it:
        return False
    inner = (ir - il + 1) * (ib - it + 1)
    outer = (max(a[2], b[2]) - min(a[0], b[0]) + 1) * (max(a[3], b[3]) - min(a[1], b[1]) + 1)
    return inner / outer > iou


class OnnxMmodDetector:
    """A drop-in for detection.MmodDetector (upsample 0), about an order of magnitude faster."""

    name = "mmod"

    def __init__(self, cache_dir: Path | None = None, threads: int = 0) -> None:
        import onnxruntime as ort

        from faceledger.models.dlib import dat_format as dlib_format
        from faceledger.models.dlib.onnx_export import converted_model

        dat = models.model_path(models.MMOD)
        net = dlib_format.read(dat)
        self.mean = net.input_params["avg"]
        self.padding, self.outer = net.input_params["pyramid_padding"], net.input_params["pyramid_outer_padding"]
        window = net.loss_params["detector_windows"][0]
        self.window = (window["width"], window["height"])
        self.nms_iou = net.loss_params["overlaps_nms"]["iou_thresh"]
        self.scale, self.offset = output_to_input(net.layers)
        from faceledger.models.threads import session_options

        options = session_options(threads)
        self._session = ort.InferenceSession(str(converted_model(dat, cache_dir)), options,
                                             providers=["CPUExecutionProvider"])

    def detections(self, pixels: np.ndarray, threshold: float = 0.0) -> list[tuple[tuple[int, int, int, int], float]]:
        """(left, top, right, bottom) inclusive integer boxes with their scores, best first."""
        if min(pixels.shape[:2]) < 12:  # under ~10 pixels a side its convolutions reject the input
            return []
        canvas, rects = tiled_pyramid(pixels, self.mean, self.padding, self.outer)
        scores = self._session.run(None, {"x": canvas[None]})[0][0, 0]
        rows, cols = np.nonzero(scores > threshold)
        found = []
        half_w, half_h = (self.window[0] - 1) / 2, (self.window[1] - 1) / 2
        for r, c in zip(rows.tolist(), cols.tolist()):
            x, y = self.scale * c + self.offset, self.scale * r + self.offset
            level = _nearest(rects, x, y)
            box = [x - half_w - rects[level][0], y - half_h - rects[level][1],
                   x + half_w - rects[level][0], y + half_h - rects[level][1]]
            for _ in range(level):  # pyramid_down<6>::point_up, once per level
                box = [v * (6.0 / 5.0) + 0.3 for v in box]
            found.append((float(scores[r, c]), box))
        found.sort(key=lambda d: -d[0])
        kept: list[tuple[tuple[int, int, int, int], float]] = []
        for score, box in found:
            rect = tuple(int(math.floor(v + 0.5)) for v in box)  # half away from zero, as C++ round
            if any(_overlaps(k, rect, self.nms_iou) for k, _ in kept):
                continue
            kept.append((rect, score))  # type: ignore[arg-type]
        return kept

    def propose(self, pixels: np.ndarray) -> list[Candidate]:
        return [Candidate(l, t, r + 1, b + 1, s) for (l, t, r, b), s in self.detections(pixels)]
