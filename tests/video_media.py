"""Test videos made at test time from LFW photos, so the truth is known.

Each person in a script appears at ``t_in`` (cut in, fully in frame), moves in a straight line
while growing or shrinking, and leaves at ``t_out``, over a textured background. Encoded with the
PyAV wheel's own libx264 in MP4 or MOV, with jittered presentation timestamps (a variable frame
rate) and, optionally, a display matrix (the pixels stored turned, as phones store portrait video).
Written only to temporary folders: never committed.
"""

from __future__ import annotations

import fractions
from functools import lru_cache
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Appearance:
    name: str
    photo: Path
    t_in: float  # seconds
    t_out: float
    start: tuple[float, float]  # centre of the face, as fractions of width and height
    end: tuple[float, float]
    size: tuple[float, float]  # face patch side in pixels, at t_in and at t_out


def background(width: int, height: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([60 + 80 * x / width, 90 + 60 * y / height, 120 + 40 * np.sin(x / 37.0)], axis=-1)
    for _ in range(12):  # a few flat boxes: furniture, not faces
        x0, y0 = rng.integers(0, width - 40), rng.integers(0, height - 40)
        img[y0:y0 + rng.integers(20, 80), x0:x0 + rng.integers(20, 120)] = rng.integers(30, 220, 3)
    return np.clip(img, 0, 255).astype(np.uint8)


@lru_cache(maxsize=256)
def _patch(photo: Path, side: int) -> np.ndarray:
    """The LFW photo's central region (the face with some hair and background), resized."""
    img = Image.open(photo).convert("RGB").crop((45, 35, 205, 215))  # 160x180 around the face
    return np.asarray(img.resize((side, int(side * 180 / 160)), Image.BILINEAR))


def render(script: list[Appearance], t: float, width: int, height: int, bg: np.ndarray) -> np.ndarray:
    frame = bg.copy()
    for a in script:
        if not a.t_in <= t < a.t_out:
            continue
        u = (t - a.t_in) / (a.t_out - a.t_in)
        cx = (a.start[0] + u * (a.end[0] - a.start[0])) * width
        cy = (a.start[1] + u * (a.end[1] - a.start[1])) * height
        side = int(a.size[0] + u * (a.size[1] - a.size[0]))
        p = _patch(a.photo, side)
        ph, pw = p.shape[:2]
        x0, y0 = int(cx - pw / 2), int(cy - ph / 2)
        xs, ys = max(0, x0), max(0, y0)
        xe, ye = min(width, x0 + pw), min(height, y0 + ph)
        if xe > xs and ye > ys:
            frame[ys:ye, xs:xe] = p[ys - y0:ye - y0, xs - x0:xe - x0]
    return frame


def write_video(path: Path, script: list[Appearance], *, width: int = 480, height: int = 320, duration: float = 6.0,
                fps: float = 25.0, rotate: int = 0, jitter_ms: float = 12.0, seed: int = 0) -> Path:
    """Encode the script as H.264 (libx264) in MP4 or MOV by ``path``'s suffix. ``rotate``:
    store the pixels turned clockwise by this many degrees, with a display matrix that turns them
    back (what a phone writes)."""
    import av

    rng = np.random.default_rng(seed)
    bg = background(width, height, seed)
    stored_w, stored_h = (height, width) if rotate % 180 else (width, height)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=int(fps), options={"preset": "ultrafast", "crf": "20"})
        stream.width, stream.height, stream.pix_fmt = stored_w, stored_h, "yuv420p"
        stream.codec_context.time_base = fractions.Fraction(1, 1000)
        if rotate:
            stream.set_display_rotation(rotate)  # counter-clockwise: undoes the clockwise turn below
        last = -1
        for i in range(int(duration * fps)):
            pts = max(last + 1, int(round(i * 1000 / fps + rng.uniform(-jitter_ms, jitter_ms)))) if i else 0
            last = pts
            img = render(script, pts / 1000.0, width, height, bg)
            if rotate:
                img = np.ascontiguousarray(np.rot90(img, -(rotate // 90)))
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = pts, fractions.Fraction(1, 1000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path
