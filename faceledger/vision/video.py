"""Stored video -> sampled upright frames -> faces tracked across frames.

Decoding is PyAV (FFmpeg's libraries, from its PyPI wheel). Only what the cloud API accepts is
read: H.264 in an MPEG-4 or QuickTime (MOV) container. Frames are streamed: one decoded frame at a
time is converted and handed on, so memory does not grow with the video's length.

- Timestamps come from each frame's presentation timestamp (pts), never from a frame count, so a
  variable-frame-rate video (phones write them) is timed right.
- Rotation metadata (the container's display matrix, as phones write portrait video) is applied:
  faces are found in the frame as it is shown, not as it is stored.
- Frames are sampled at ``DEFAULT_SAMPLE_FPS`` (5 a second: a face on screen for 0.2 s is seen
  at least once) by timestamp: the first frame at or after each 200 ms tick.
- ``Tracker`` links the faces of successive samples into tracks (one continuous appearance of one
  person: the cloud API's PersonIndex) by box overlap and template similarity; a track ends when
  its face has not been seen for ``max_gap_ms``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from faceledger.errors import InvalidParameterError, VideoTooLargeError
from faceledger.vision.engine import BoundingBox

#: Frames looked at per second of video (docs/video.md).
DEFAULT_SAMPLE_FPS = 5.0
#: What the cloud API accepts: H.264 in MPEG-4 or MOV (FFmpeg names the demuxer of both "mov,mp4,...").
ACCEPTED_CODECS = frozenset({"h264"})
ACCEPTED_CONTAINER = "mov"
#: The cloud API's limits for stored video: 10 GB and 6 hours.
MAX_VIDEO_BYTES = 10 * 1024 ** 3
MAX_DURATION_MS = 6 * 3600 * 1000
#: Largest frame decoded (8K): a header claiming more is refused before any frame is decoded.
MAX_FRAME_PIXELS = 7680 * 4320


@dataclass(frozen=True)
class VideoInfo:
    """The cloud API's VideoMetadata, plus the rotation applied (degrees counter-clockwise)."""

    codec: str
    format: str
    duration_millis: int
    frame_rate: float
    frame_width: int  # as shown (after rotation)
    frame_height: int
    color_range: str  # FULL or LIMITED
    rotation: int = 0
    origin_ms: float = 0.0  # the first frame's presentation time: timestamps count from it


@dataclass(frozen=True, eq=False)
class SampledFrame:
    timestamp_ms: int
    pixels: np.ndarray  # (height, width, 3) uint8 RGB, upright


def _av():
    import av  # imported here: only video needs FFmpeg's libraries

    return av


def _open(path: Path):
    av = _av()
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise InvalidParameterError(f"cannot read the video {path.name!r}: {exc.strerror or exc}") from None
    if size > MAX_VIDEO_BYTES:
        raise VideoTooLargeError(f"the video is {size:,} bytes; the limit is {MAX_VIDEO_BYTES:,}")
    try:
        container = av.open(str(path), "r")
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise InvalidParameterError(f"{path.name!r} is not a video FFmpeg can read ({exc}); send H.264 in MP4 or MOV") from None
    if not container.streams.video:
        container.close()
        raise InvalidParameterError(f"{path.name!r} has no video stream")
    return container


def probe(path: Path) -> VideoInfo:
    """The video's metadata from its headers; refuses what the cloud API would refuse."""
    with _open(path) as container:
        return _info(container, Path(path).name)


def _info(container, name: str) -> VideoInfo:
    stream = container.streams.video[0]
    ctx = stream.codec_context
    if ACCEPTED_CONTAINER not in container.format.name.split(",") or ctx.name not in ACCEPTED_CODECS:
        raise InvalidParameterError(
            f"{name!r} is {ctx.name} in {container.format.name.split(',')[0]}: faceledger reads H.264 in MP4 or MOV, "
            "as the cloud API does (re-encode with: ffmpeg -i IN -c:v libx264 OUT.mp4)")
    if not ctx.width or not ctx.height or ctx.width * ctx.height > MAX_FRAME_PIXELS:
        raise VideoTooLargeError(f"{name!r}: frames of {ctx.width}x{ctx.height} are over the {MAX_FRAME_PIXELS:,}-pixel limit")
    if stream.duration is not None and stream.time_base:
        duration = int(stream.duration * stream.time_base * 1000)
    else:
        duration = int((container.duration or 0) / 1000)  # microseconds
    if duration > MAX_DURATION_MS:
        raise VideoTooLargeError(f"{name!r} lasts {duration / 3.6e6:.1f} h; the limit is 6 h")
    rate = stream.average_rate or stream.guessed_rate or 0
    rotation, origin = _first_frame(stream)
    w, h = (ctx.height, ctx.width) if rotation % 180 else (ctx.width, ctx.height)
    color = "FULL" if int(getattr(ctx, "color_range", 0) or 0) == 2 else "LIMITED"  # AVCOL_RANGE_JPEG: full range
    return VideoInfo(ctx.name, container.format.long_name, duration, float(rate), w, h, color, rotation, origin)


def _first_frame(stream) -> tuple[int, float]:
    """The display matrix's rotation (counter-clockwise degrees, a multiple of 90) and the
    presentation time (ms) of the first frame; the container is rewound."""
    container = stream.container
    try:
        for frame in container.decode(stream):
            if frame.pts is not None:
                return int(round((frame.rotation or 0) / 90.0)) * 90 % 360, float(frame.pts * stream.time_base * 1000)
    finally:
        container.seek(0)
    return 0, 0.0


def _upright(pixels: np.ndarray, rotation: int) -> np.ndarray:
    """The frame as displayed: the display matrix says how far to turn it counter-clockwise."""
    k = (rotation // 90) % 4
    return np.ascontiguousarray(np.rot90(pixels, k)) if k else pixels


def sample_frames(path: Path, fps: float = DEFAULT_SAMPLE_FPS, *, start_ms: float = 0.0,
                  end_ms: float | None = None) -> Iterator[SampledFrame]:
    """Upright RGB frames, one per 1/fps seconds of presentation time (streamed, one at a time):
    the first frame at or after each tick. ``start_ms``/``end_ms`` (ticks): a segment, for jobs
    split across workers; segments that tile the video yield exactly the frames the whole does."""
    if not 0 < fps <= 60:
        raise InvalidParameterError(f"the sampling rate is in (0, 60] frames a second, not {fps}")
    interval = 1000.0 / fps
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # FFmpeg's frame threads: decoding keeps up with the detector
        info = _info(container, Path(path).name)
        next_tick = math.ceil(start_ms / interval - 1e-9) * interval
        if start_ms > 0:  # to the keyframe at or before the segment; frames before it are decoded, not kept
            container.seek(int((info.origin_ms + start_ms) / 1000 / stream.time_base), stream=stream, backward=True)
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            t = float(frame.pts * stream.time_base * 1000) - info.origin_ms
            if end_ms is not None and t + 1e-6 >= end_ms:
                break
            if t + 1e-6 < next_tick:
                continue  # decoded (later frames depend on it) but not converted: the cheap path
            next_tick = (math.floor(t / interval + 1e-9) + 1) * interval
            rotation = int(round((frame.rotation or 0) / 90.0)) * 90 % 360
            yield SampledFrame(int(round(t)), _upright(frame.to_ndarray(format="rgb24"), rotation))


def decode_only(path: Path) -> tuple[int, float]:
    """Decode every frame and convert none: (frames, seconds of video). The bound on throughput."""
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames, first, last = 0, None, 0.0
        for frame in container.decode(stream):
            frames += 1
            if frame.pts is not None:
                t = float(frame.pts * stream.time_base)
                first = t if first is None else first
                last = t
        return frames, last - (first or 0.0)


# --- tracking ------------------------------------------------------------------------------------


def iou(a: BoundingBox, b: BoundingBox) -> float:
    x1, y1 = max(a.left, b.left), max(a.top, b.top)
    x2, y2 = min(a.left + a.width, b.left + b.width), min(a.top + a.height, b.top + b.height)
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = a.width * a.height + b.width * b.height - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    """One continuous appearance: its index (the PersonIndex), its span, and its best faces."""

    index: int
    first_ms: int
    last_ms: int
    box: BoundingBox
    vector: np.ndarray  # the latest template: what the next sample is compared with
    best: list = field(default_factory=list)  # (rank, timestamp_ms, payload, vector), best first, at most keep_best
    seen: int = 0


@dataclass
class Tracker:
    """Links faces across samples. A face joins the active track it overlaps (IoU >= ``min_iou``)
    and resembles (score >= ``link_overlapping``), or, failing overlap (fast motion, a missed
    sample), the track it resembles strongly (score >= ``link_anywhere``); otherwise it opens a
    track. ``score(probe, gallery)`` and both bars are the model's (the service sets them from its
    calibration: a rate of strangers, not a raw cosine). Greedy, best pair first; one face per
    track per sample. A track not seen for ``max_gap_ms`` is closed: seen again later, the person
    is a new appearance and a new index."""

    score: Callable[[np.ndarray, np.ndarray], np.ndarray]
    link_overlapping: float
    link_anywhere: float
    max_gap_ms: int = 1000
    min_iou: float = 0.2
    keep_best: int = 3
    active: list[Track] = field(default_factory=list)
    next_index: int = 0

    def update(self, timestamp_ms: int, boxes: list[BoundingBox], vectors: np.ndarray,
               ranks: list[float], payloads: list) -> tuple[list[int], list[Track]]:
        """Assign this sample's faces to tracks: (each face's track index, the tracks closed now)."""
        closed = [t for t in self.active if timestamp_ms - t.last_ms > self.max_gap_ms]
        self.active = [t for t in self.active if t not in closed]
        pairs = []
        if boxes and self.active:
            previous = np.stack([t.vector for t in self.active])
            for i, box in enumerate(boxes):
                for j, (t, sim) in enumerate(zip(self.active, self.score(vectors[i], previous))):
                    sim = float(sim)
                    if (iou(box, t.box) >= self.min_iou and sim >= self.link_overlapping) or sim >= self.link_anywhere:
                        pairs.append((sim, i, j))
        taken_faces, taken_tracks, assigned = set(), set(), [-1] * len(boxes)
        for cos, i, j in sorted(pairs, reverse=True):
            if i in taken_faces or j in taken_tracks:
                continue
            taken_faces.add(i)
            taken_tracks.add(j)
            assigned[i] = j
        out = []
        for i, box in enumerate(boxes):
            if assigned[i] >= 0:
                t = self.active[assigned[i]]
            else:
                t = Track(self.next_index, timestamp_ms, timestamp_ms, box, vectors[i])
                self.next_index += 1
                self.active.append(t)
            t.last_ms, t.box, t.vector, t.seen = timestamp_ms, box, vectors[i], t.seen + 1
            t.best = sorted([*t.best, (ranks[i], timestamp_ms, payloads[i], vectors[i])],
                            key=lambda x: -x[0])[:self.keep_best]
            out.append(t.index)
        return out, closed

    def finish(self) -> list[Track]:
        closed, self.active = self.active, []
        return closed
