"""The detector-side networks (BlazeFace, the face mesh) in the variants issue 25 weighed, on real
inputs, 1 thread, in alternating blocks: BlazeFace as converted, as shipped (channels padded to the
CPU's blocked layout, models/graph_edits.pad_channels) and int8; the face mesh as converted (its
PReLUs), as shipped (PReLUs spelt as ReLUs, graph_edits.prelu_as_relus) and int8. Then how far
each variant's output moves from the converted graphs' on LFW (end to end through the engine:
boxes, BlazeFace keypoints, mesh pose), and with ``--pipeline N`` the index pipeline's CPU per
image, converted vs shipped graphs.

int8 here is ONNX Runtime's static QDQ quantization (per-channel int8 weights, uint8 activations),
its activation ranges fitted by MinMax on the networks' inputs recorded from FairFace training
images (never LFW, which is what the agreement is measured on).

    .venv/bin/python bench/bench_detector_nets.py [--lfw 300] [--calibration 300] [--blocks 5] [--pipeline 600]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from blocks import alternate, load, mmm, ratio_text
from faceledger import FaceEngine, Settings
from faceledger.evaluation.datasets import LFW, FairFace
from faceledger.models import blazeface, facemesh


class Recorder:
    """Stands in for a session: keeps each input, runs the real session."""

    def __init__(self, session) -> None:
        self.session, self.inputs = session, []

    def run(self, names, feeds):
        self.inputs.append(np.array(feeds["input"]))
        return self.session.run(names, feeds)


def mosaic(paths, n: int) -> np.ndarray:
    canvas = Image.new("RGB", (224 * n, 224 * n))
    for i, p in enumerate(paths[: n * n]):
        canvas.paste(Image.open(p).convert("RGB").resize((224, 224)), ((i % n) * 224, (i // n) * 224))
    return np.asarray(canvas)


def record(engine: FaceEngine, images) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The (BlazeFace, mesh) session inputs the engine makes for ``images``."""
    net, mesh = engine._finder.detectors[0]._net, engine.face_mesh
    real = net._session, mesh._session
    net._session, mesh._session = Recorder(real[0]), Recorder(real[1])
    try:
        for im in images:
            engine.detect(im)
        return net._session.inputs, mesh._session.inputs
    finally:
        net._session, mesh._session = real


def quantize(source: Path, inputs: list[np.ndarray], target: Path) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(inputs)

        def get_next(self):
            x = next(self.it, None)
            return None if x is None else {"input": x}

    quantize_static(str(source), str(target), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                    op_types_to_quantize=["Conv", "Add", "MaxPool", "Pad", "Relu"])
    return target


def session(path: Path):
    import onnxruntime as ort

    from faceledger.models.threads import session_options

    return ort.InferenceSession(str(path), session_options(1), providers=["CPUExecutionProvider"])


def agreement(engine: FaceEngine, paths, blaze: dict, mesh: dict, reference: tuple[str, str]) -> None:
    """Per variant pair (BlazeFace, mesh) against ``reference``: the largest face's box (px) and
    pose (degrees), and BlazeFace's raw rows (box + 6 keypoints, px) of the largest detection."""
    net, detector = engine._finder.detectors[0]._net, engine._finder.detectors[0]
    engine.face_mesh  # made
    results: dict[tuple[str, str], list] = {}
    configs = [reference] + [(b, reference[1]) for b in blaze if b != reference[0]] + \
              [(reference[0], m) for m in mesh if m != reference[1]]
    for cfg in configs:
        net._session, engine._mesh._session = blaze[cfg[0]], mesh[cfg[1]]
        out = []
        for p in paths:
            px = engine.load(str(p)).pixels
            faces = engine.detect(px).faces
            rows = detector.rows(px)
            out.append((faces[0] if faces else None, rows[0][0] if rows else None, len(rows), px.shape[:2]))
        results[cfg] = out
    ref = results[reference]
    for cfg, out in results.items():
        if cfg == reference:
            continue
        box, pose, raw, differ = [], [], [], 0
        for (fa, ra, na, (h, w)), (fb, rb, nb, _) in zip(ref, out):
            differ += (fa is None) != (fb is None) or na != nb
            if fa is not None and fb is not None:
                ba, bb = fa.bounding_box, fb.bounding_box
                box.append(max(abs(ba.left - bb.left) * w, abs(ba.top - bb.top) * h, abs(ba.width - bb.width) * w,
                               abs(ba.height - bb.height) * h))
                pose.append(max(abs(fa.quality.pose.yaw - fb.quality.pose.yaw), abs(fa.quality.pose.pitch - fb.quality.pose.pitch),
                                abs(fa.quality.pose.roll - fb.quality.pose.roll)))
            if ra is not None and rb is not None:
                raw.append(np.abs(np.asarray(ra) - np.asarray(rb)))
        raw = np.array(raw) if raw else np.zeros((1, 16))
        print(f"  BlazeFace {cfg[0]}, mesh {cfg[1]} vs {reference[0]}, {reference[1]}: {differ} of {len(paths)} images "
              f"differ in faces found; largest face's box max-side diff mean {np.mean(box):.3f} / max {np.max(box):.3f} px; "
              f"pose (max of yaw, pitch, roll) mean {np.mean(pose):.4f} / max {np.max(pose):.4f} deg; BlazeFace raw "
              f"box mean {raw[:, :4].mean():.3f} / max {raw[:, :4].max():.3f} px, keypoints mean {raw[:, 4:].mean():.3f} / "
              f"max {raw[:, 4:].max():.3f} px", flush=True)
    net._session, engine._mesh._session = blaze[reference[0]], mesh[reference[1]]


def pipeline(settings: Settings, paths, variants: dict, blocks: int) -> None:
    """CPU (process_time) per image of service.operations.prepare_index_many, batches of 8, one
    engine, its BlazeFace and mesh sessions swapped per variant ({name: (blazeface, mesh)}),
    variants alternating by block."""
    from faceledger.service.operations import prepare_index_many

    engine = FaceEngine(settings.replace(threads=1))
    engine.face_mesh
    sessions = {k: (session(b), session(m)) for k, (b, m) in variants.items()}
    net = engine._finder.detectors[0]._net
    chunks = [paths[i::blocks] for i in range(blocks)]
    cpu = {k: [] for k in sessions}
    prepare_index_many(engine, paths[:8])  # warm
    for b, chunk in enumerate(chunks):
        names = list(sessions)[b % len(sessions):] + list(sessions)[: b % len(sessions)]
        for k in names:
            net._session, engine._mesh._session = sessions[k]
            t = time.process_time()
            for i in range(0, len(chunk), 8):
                prepare_index_many(engine, chunk[i:i + 8])
            cpu[k].append((time.process_time() - t) / len(chunk))
    base = list(sessions)[0]
    for k, v in cpu.items():
        print(f"  {k} graphs: {mmm(v)} CPU an image over {blocks} blocks of ~{len(chunks[0])} LFW images"
              + ("" if k == base else f"; {base} / {k}: {ratio_text(cpu[base], v, 1)}"), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lfw", type=int, default=300, help="LFW images for timing inputs and agreement")
    ap.add_argument("--calibration", type=int, default=300, help="FairFace training images for int8 ranges")
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--no-int8", action="store_true", help="skip the int8 variants")
    ap.add_argument("--pipeline", type=int, default=0, help="also: index-pipeline CPU per image on N LFW images")
    args = ap.parse_args()
    settings = Settings.load().replace(threads=1, detector="blazeface", fallback_detector="none", landmark_model="facemesh")
    pc, cache = settings.package_cache or settings.cache_dir, settings.cache_dir
    engine = FaceEngine(settings)
    rng = np.random.default_rng(0)
    lfw = LFW.locate(settings).images()
    lfw = [lfw[i] for i in sorted(rng.choice(len(lfw), args.lfw, replace=False))]
    print(f"{load()}; ONNX Runtime 1 thread; {len(lfw)} LFW images (seed 0)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        blaze_paths = {"converted": facemesh.converted(pc, cache, "blazeface-back", blazeface.GRAPH, blazeface.OUTPUTS,
                                                       f"{sorted(blazeface.OUTPUTS.items())}/any-batch",
                                                       allow_download=False, edit=blazeface._any_batch),
                       "padded": blazeface.onnx_file(pc, cache, allow_download=False)}
        mesh_paths = {"prelu": facemesh.converted(pc, cache, "facemesh", facemesh.GRAPH, facemesh.OUTPUT_NODE,
                                                  facemesh.OUTPUT_NODE, allow_download=False),
                      "relus": facemesh.onnx_file(pc, cache, allow_download=False)}
        if not args.no_int8:
            train = [r.path for r in FairFace.locate(settings).records() if r.path.parent.name == "train"]
            cal = [train[i] for i in sorted(np.random.default_rng(1).choice(len(train), args.calibration, replace=False))]
            thirds = np.array_split(np.array(cal, dtype=object), 3)
            images = [str(p) for p in thirds[0]] + [mosaic(list(thirds[1][i:i + 4]), 2) for i in range(0, len(thirds[1]) - 3, 4)] \
                + [mosaic(list(thirds[2][i:i + 16]), 4) for i in range(0, len(thirds[2]) - 15, 16)]
            b_in, m_in = record(engine, images)
            print(f"int8 ranges from {len(cal)} FairFace training images: {sum(map(len, b_in))} BlazeFace inputs, "
                  f"{len(m_in)} mesh crops", flush=True)
            blaze_paths["int8"] = quantize(blaze_paths["converted"], b_in, Path(tmp) / "blazeface-int8.onnx")
            mesh_paths["int8"] = quantize(mesh_paths["relus"], [np.asarray(m, np.float32) for m in m_in],
                                          Path(tmp) / "facemesh-int8.onnx")
        b_lfw, m_lfw = record(engine, [str(p) for p in lfw])
        m_lfw = [np.asarray(m, np.float32) for m in m_lfw]
        blaze = {k: session(p) for k, p in blaze_paths.items()}
        mesh = {k: session(p) for k, p in mesh_paths.items()}
        b_n, m_n = sum(map(len, b_lfw)), len(m_lfw)

        def runs(sess, inputs):
            return lambda: [sess.run(None, {"input": x}) for x in inputs]

        per_block = 1
        tb = alternate({k: runs(s, b_lfw) for k, s in blaze.items()}, blocks=args.blocks, per_block=per_block)
        print(f"BlazeFace, {len(b_lfw)} runs ({b_n} inputs of 256x256) per call; ms an LFW image:", flush=True)
        for k, v in tb.items():
            print(f"  {k}: {mmm([x / len(b_lfw) for x in v])}" + ("" if k == "converted" else
                  f"; converted / {k}: {ratio_text(tb['converted'], v, per_block)}"), flush=True)
        tm = alternate({k: runs(s, m_lfw) for k, s in mesh.items()}, blocks=args.blocks, per_block=per_block)
        print(f"face mesh, {m_n} crops of 192x192, one a run; ms a face:", flush=True)
        for k, v in tm.items():
            print(f"  {k}: {mmm([x / m_n for x in v])}" + ("" if k == "prelu" else
                  f"; prelu / {k}: {ratio_text(tm['prelu'], v, per_block)}"), flush=True)
        print(f"agreement with the converted graphs (BlazeFace converted, mesh prelu), end to end, {len(lfw)} LFW images:",
              flush=True)
        agreement(engine, lfw, blaze, mesh, ("converted", "prelu"))
        if args.pipeline:
            pl = LFW.locate(settings).images()
            pl = [pl[i] for i in sorted(np.random.default_rng(2).choice(len(pl), args.pipeline, replace=False))]
            print(f"index pipeline (prepare_index_many, batches of 8, default settings, 1 thread), {len(pl)} LFW images "
                  f"(seed 2); {load()}:", flush=True)
            pipeline(Settings.load(), [str(p) for p in pl], {"converted": (blaze_paths["converted"], mesh_paths["prelu"]),
                                                               "shipped": (blaze_paths["padded"], mesh_paths["relus"])},
                     args.blocks)
    print(load())


if __name__ == "__main__":
    main()
