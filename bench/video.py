"""Stored video: seconds of video processed per wall-clock second, against decoding alone, and
the peak memory of a long 1080p video (frames are streamed, not held).

Videos are generated from LFW photos (tests/video_media.py: people entering, moving, resized,
over a background; H.264 by the PyAV wheel's libx264) in a temporary folder. For each of 720p
and 1080p, in the same run:

- decode: every frame decoded, none converted: the bound, what FFmpeg alone costs (best of 3);
- sample: decoding plus the 5 fps samples converted to upright RGB (best of 3);
- detection job: StartFaceDetection's work (detect and describe every face of every sample);
- search job: StartFaceSearch's work (detect, embed, track, search each track) on a collection
  of the video's people.

Then a detection job on a long 1080p video in a child process, its peak resident set (ru_maxrss)
(VmHWM, reset once the engine is loaded) against its resident set then, in 1080p RGB frames (6.2 MB each).

    python bench/video.py [--seconds 10] [--long-minutes 10] [--long-fps 1]

Figures are in docs/video.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.video_media import Appearance, write_video  # noqa: E402

FRAME_1080 = 1920 * 1080 * 3


def script(lfw, width: int, duration: float) -> tuple[list[Appearance], dict]:
    everyone = lfw.people()
    names = sorted(n for n, ps in everyone.items() if len(ps) >= 4)[:3]
    scale = width / 640
    out, t = [], 0.0
    while t < duration:  # people keep entering and leaving for the whole video
        for i, name in enumerate(names):
            t_in = t + i * 1.5
            if t_in >= duration:
                break
            out.append(Appearance(name, everyone[name][0], t_in, min(duration, t_in + 4.0), (0.2 + 0.3 * i, 0.5),
                                  (0.3 + 0.3 * i, 0.45), (140 * scale, 120 * scale)))
        t += 6.0
    return out, {n: everyone[n][1:3] for n in names}


def services(settings, home: Path):
    from faceledger.governance.app import open_service

    s = settings.replace(store=home / "store.sqlite", ledger=home / "ledger.sqlite")
    return open_service(s)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_job(svc, operation: str, path: Path, collection: str | None = None) -> None:
    jobs = svc.video_jobs
    if operation == "StartFaceDetection":
        job_id = svc.start_face_detection(path).job_id
    else:
        job_id = svc.start_face_search(path, collection).job_id
    done = jobs.run(jobs.claim(job_id))
    if done.status != "SUCCEEDED":
        raise SystemExit(f"{operation} failed: {done.status_message}")


def long_child(path: str, store: str) -> None:
    """In a child: load the engine, note RSS, run a detection job on the long video, print peak RSS."""
    from faceledger.settings import Settings

    import numpy as np

    svc = services(Settings.load(), Path(store))
    svc.engine.detect(np.zeros((64, 64, 3), np.uint8))  # the detector loaded before the baseline
    loaded = _rss_now()
    fps = float(os.environ["BENCH_LONG_FPS"])
    svc.video_jobs.sample_fps = fps
    _reset_peak()  # the engine's loading had its own transient peak: measure from here on
    peak = lambda: _status_bytes("VmHWM")  # noqa: E731
    from faceledger.vision import video

    video.decode_only(Path(path))
    after_decode = peak()
    sum(1 for _ in video.sample_frames(Path(path), fps))
    after_sample = peak()
    start = time.perf_counter()
    run_job(svc, "StartFaceDetection", Path(path))
    print(json.dumps({"loaded_rss": loaded, "decode_peak": after_decode, "sample_peak": after_sample,
                      "peak_rss": peak(), "wall": time.perf_counter() - start}))


def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _rss_now() -> int:
    return _status_bytes("VmRSS")


def _reset_peak() -> None:
    """Linux: writing 5 to clear_refs resets the peak resident set (VmHWM) to the current one."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of the 720p and 1080p videos")
    ap.add_argument("--long-minutes", type=float, default=10.0, help="length of the long 1080p video (0: skip)")
    ap.add_argument("--long-fps", type=float, default=1.0, help="sampling rate of the long video's job (decoding is all frames)")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return long_child(*args.child)

    from faceledger.evaluation.datasets import LFW
    from faceledger.settings import Settings
    from faceledger.vision import video

    settings = Settings.load()
    lfw = LFW.locate(settings)
    tmp = Path(tempfile.mkdtemp(prefix="faceledger-bench-video-"))
    svc = services(settings, tmp)
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; PyAV {__import__('av').__version__}; sampling {video.DEFAULT_SAMPLE_FPS} fps")
    rows = []
    for width, height in ((1280, 720), (1920, 1080)):
        sc, gallery = script(lfw, width, args.seconds)
        path = write_video(tmp / f"v{height}.mp4", sc, width=width, height=height, duration=args.seconds)
        collection = f"c{height}"
        svc.create_collection(collection)
        for photos in gallery.values():
            for p in photos:
                svc.index_faces(collection, p, max_faces=1)
        seconds = args.seconds
        video.decode_only(path)  # warm: the file in the page cache, the codec loaded
        t_decode = min(timed(lambda: video.decode_only(path)) for _ in range(3))  # cheap: best of 3 against noise
        t_sample = min(timed(lambda: sum(1 for _ in video.sample_frames(path))) for _ in range(3))
        t_detect = timed(lambda: run_job(svc, "StartFaceDetection", path))
        t_search = timed(lambda: run_job(svc, "StartFaceSearch", path, collection))
        for what, t in (("decode (bound)", t_decode), ("sample 5 fps", t_sample), ("detection job", t_detect),
                        ("search job", t_search)):
            rows.append((f"{height}p", what, seconds / t, t / t_decode))
    print(f"\n{'video':6} {'work':16} {'video s / wall s':>17} {'x decode time':>14}")
    for res, what, rate, ratio in rows:
        print(f"{res:6} {what:16} {rate:17.2f} {ratio:14.1f}")
    if args.long_minutes > 0:
        duration = args.long_minutes * 60
        sc, _ = script(lfw, 1920, duration)
        t0 = time.perf_counter()
        long_path = write_video(tmp / "long1080.mp4", sc, width=1920, height=1080, duration=duration)
        print(f"\nlong video: {args.long_minutes:g} min 1080p, {long_path.stat().st_size / 1e6:.0f} MB, "
              f"generated in {time.perf_counter() - t0:.0f} s")
        home = tmp / "long"
        home.mkdir()
        env = {**os.environ, "BENCH_LONG_FPS": str(args.long_fps), "PYTHONPATH": str(ROOT)}
        res = subprocess.run([sys.executable, __file__, "--child", str(long_path), str(home)], env=env,
                             capture_output=True, text=True, check=True)
        r = json.loads(res.stdout.strip().splitlines()[-1])
        base = r["loaded_rss"]
        print(f"RSS with the engine loaded: {base / 2**20:.0f} MiB (the whole video decoded would be "
              f"{duration * 25 * FRAME_1080 / 2**30:.0f} GiB of RGB frames)")
        for what, key in (("decoding every frame", "decode_peak"), (f"+ sampling at {args.long_fps:g} fps", "sample_peak"),
                          ("+ the detection job", "peak_rss")):
            rise = r[key] - base
            print(f"  peak after {what:24}: {r[key] / 2**20:6.0f} MiB, +{rise / 2**20:5.0f} MiB = "
                  f"{rise / FRAME_1080:5.1f} 1080p RGB frames")
        print(f"  detection job at {args.long_fps:g} fps: {duration / r['wall']:.2f} video s / wall s")
    print(f"\n(videos in {tmp}; remove when done)")


if __name__ == "__main__":
    main()
